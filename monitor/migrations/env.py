"""Alembic environment: runs on a connection handed in by monitor.migrations, or on a URL."""

from alembic import context
from sqlalchemy import text

from monitor.migrations import VERSION_TABLE

config = context.config
_LOCK_ID = 7_301_905  # PostgreSQL advisory lock: one migrator at a time


def _migrate(connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
        context.run_migrations()


def _url() -> str:
    from monitor.database import database_url

    return database_url(context.get_x_argument(as_dictionary=True).get("url")
                        or config.get_main_option("sqlalchemy.url"))


if context.is_offline_mode():  # `alembic ... upgrade head --sql`: print the DDL
    context.configure(url=_url(), version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _migrate(config.attributes["connection"])
else:
    from monitor.database import create_store_engine

    engine = create_store_engine(_url())
    try:
        with engine.connect() as connection:
            _migrate(connection)
            connection.commit()
    finally:
        engine.dispose()
