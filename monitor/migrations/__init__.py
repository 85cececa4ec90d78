"""Alembic migrations: the one source of the results store's schema.

`ResultsStore` brings a database to head on open (`ensure_schema`); `driftline db upgrade`
does the same explicitly; `driftline serve` refuses to start on a store that is not at
head (`check_current`), so a long-running service never writes through a stale schema.
APScheduler's `apscheduler_jobs` table, beside ours, is the library's own: its job store
creates it and owns its layout.

New revision (developers): `.venv/bin/alembic -c monitor/migrations/alembic.ini revision
-m "what" --rev-id 0003` with `-x url=sqlite:///scratch.db`, then write the operations by
hand; `tests/test_store_backends.py` fails while the migrated schema and the SQLAlchemy
tables disagree. Never edit a committed revision (stores already at it would never see
the change): add a new one, as 0003 does for the ledger's `revision` column.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from monitor.database import create_store_engine, redacted
from core.errors import DriftlineError

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "driftline_alembic_version"
# Tables that existed before the store was versioned; such a database is stamped at the
# first revision instead of failing on "table already exists".
_BASELINE = ("0001", "driftline_runs")


class SchemaVersionError(DriftlineError):
    """The store's schema is not the one this driftline version expects."""


def alembic_config(url: str | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        # '%' is interpolation syntax in the ini-style options.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.lru_cache(maxsize=1)
def head() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:  # a branch left unmerged in monitor/migrations/versions
        raise SchemaVersionError(f"migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def _run(engine: Engine, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def upgrade(target: str | Engine, revision: str = "head") -> str:
    """Apply migrations up to `revision` on a URL or engine; return the revision reached."""
    engine = create_store_engine(target) if isinstance(target, str) else target
    try:
        if current(engine) is None and inspect(engine).has_table(_BASELINE[1]):
            _run(engine, "stamp", _BASELINE[0])
        _run(engine, "upgrade", revision)
        return current(engine)
    finally:
        if isinstance(target, str):
            engine.dispose()


def downgrade(engine: Engine, revision: str) -> str | None:
    """Undo migrations down to `revision` ("base": drop every store table)."""
    _run(engine, "downgrade", revision)
    return current(engine)


def check_current(engine: Engine) -> str:
    """Raise SchemaVersionError unless the store is at head (what `serve` checks at start)."""
    found, expected = current(engine), head()
    if found == expected:
        return found
    where = redacted(str(engine.url.render_as_string(hide_password=False)))
    if found is None:
        raise SchemaVersionError(f"{where}: the results store has no schema yet; run `driftline db upgrade`")
    raise SchemaVersionError(
        f"{where}: the results store is at revision {found}, this driftline expects {expected}; "
        "run `driftline db upgrade`"
    )


def schema_diff(engine: Engine, metadatas, ignore_tables: tuple[str, ...] = ()) -> list:
    """Differences between the migrated database and the SQLAlchemy tables (empty: in sync)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    combined = MetaData()
    for metadata in metadatas:
        for table in metadata.tables.values():
            table.to_metadata(combined)

    def include(obj, name, type_, _reflected, _compare_to):
        return not (type_ == "table" and name in ignore_tables)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "version_table": VERSION_TABLE, "compare_type": True, "include_object": include})
        return compare_metadata(context, combined)


def ensure_schema(engine: Engine) -> None:
    """Bring the store to head if it is behind (cheap when it is already there)."""
    if current(engine) == head():
        return
    try:
        upgrade(engine)
    except Exception:
        # Another process may have migrated it concurrently (SQLite has no advisory lock).
        if current(engine) != head():
            raise
