"""Engines for the results store: one place that knows SQLite and PostgreSQL quirks.

`postgresql://` URLs get the psycopg 3 driver (the one driftline depends on); PostgreSQL
sessions run in UTC so naive-UTC timestamps mean the same thing on both backends.
"""

from __future__ import annotations

import contextlib
import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ConfigError, DriftlineError


class StoreUnavailableError(DriftlineError):
    """The results store cannot be opened: no such driver, a folder that is missing or not
    writable, a database that refuses the connection. The message names the redacted URL."""


def database_url(url: str) -> str:
    """Normalise a store URL: a bare `postgresql://` uses psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigError(f"store.url: not a database URL ({type(exc).__name__})") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


@contextlib.contextmanager
def store_errors(url: str):
    """Turn a failure to reach the store into one line naming the (redacted) URL."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        raise StoreUnavailableError(f"store.url {redacted(url)}: {type(exc).__name__}: {first[:300]}") from exc


def _sqlite_folder_problem(url: str) -> str | None:
    """Why a file-backed SQLite URL cannot hold a database (a missing or unwritable folder)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    if not os.path.exists(database) and not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def create_store_engine(url: str) -> Engine:
    url = database_url(url)
    with store_errors(url):
        if url.startswith("postgresql"):
            engine = create_engine(url, future=True, pool_pre_ping=True,
                                   connect_args={"options": "-c timezone=UTC"})
        else:
            engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        problem = _sqlite_folder_problem(url)
        if problem:
            engine.dispose()
            raise StoreUnavailableError(f"store.url {redacted(url)}: {problem}")
        event.listen(engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the store or the filesystem failed, not our input or our code."""
    if isinstance(exc, DriftlineError):
        return False
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))
