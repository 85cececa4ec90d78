"""The results store: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

Runs are keyed by (model, check, window_start, window_end) and written as idempotent
upserts; a run's result and the window's profile go in one transaction, so a killed
run leaves nothing half-written and a re-run replaces its own rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Engine

from core.results import CheckResult

metadata = MetaData()

runs = Table(
    "driftline_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("status", String(32), nullable=False),
    Column("partial", Boolean, nullable=False, default=False),
    Column("result_json", Text, nullable=False),
    Column("report_path", Text),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "check_name", "window_start", "window_end", name="uq_run_key"),
)

profiles = Table(
    "driftline_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("role", String(32), nullable=False),  # "serving" or "reference"
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("spec_key", String(64), nullable=False),  # hash of the spec the profile was computed with
    Column("rows", Integer, nullable=False),
    Column("partial", Boolean, nullable=False, default=False),
    Column("profile_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "role", "window_start", "window_end", "spec_key", name="uq_profile_key"),
)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _naive_utc(moment: datetime) -> datetime:
    # SQLite drops offsets; store naive UTC everywhere so keys compare equal on both backends.
    return _utc(moment).replace(tzinfo=None)


@dataclass(frozen=True)
class StoredSlice:
    profile: dict
    bad_files: list[tuple[str, str]]  # (path, why), as ScanReport.bad_files


class ResultsStore:
    def __init__(self, url: str) -> None:
        self.url = url
        from monitor.database import create_store_engine, store_errors
        from monitor.migrations import ensure_schema

        self.engine: Engine = create_store_engine(url)
        try:
            with store_errors(url):  # the first connection: a refused or unopenable store is one line
                # Alembic migrations are the one schema source (monitor/migrations); no create_all.
                ensure_schema(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def _insert(self, table: Table):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _upsert(self, connection, table: Table, row: dict, key: list[str]) -> None:
        statement = self._insert(table).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=key, set_={k: v for k, v in row.items() if k not in key}
        )
        connection.execute(statement)

    def save_run(
        self,
        model: str,
        result: CheckResult,
        window_start: datetime,
        window_end: datetime,
        profile: tuple[str, dict] | None = None,
    ) -> None:
        """Upsert a result (and optionally the window's profile) in one transaction."""
        now = datetime.now(timezone.utc)
        with self.engine.begin() as connection:
            if profile is not None:
                spec_key, profile_dict = profile
                self._upsert_profile(connection, model, "serving", window_start, window_end, spec_key,
                                     profile_dict, result.partial, now)
            self._upsert(
                connection,
                runs,
                {
                    "model": model,
                    "check_name": result.check,
                    "window_start": _naive_utc(window_start),
                    "window_end": _naive_utc(window_end),
                    "status": result.status,
                    "partial": result.partial,
                    "result_json": json.dumps(result.to_dict(), allow_nan=False, default=_json_default),
                    "report_path": result.report_path,
                    "finished_at": _naive_utc(now),
                },
                ["model", "check_name", "window_start", "window_end"],
            )

    def _upsert_profile(self, connection, model, role, start, end, spec_key, profile_dict, partial, now) -> None:
        self._upsert(
            connection,
            profiles,
            {
                "model": model,
                "role": role,
                "window_start": _naive_utc(start),
                "window_end": _naive_utc(end),
                "spec_key": spec_key,
                "rows": int(profile_dict.get("rows", 0)),
                "partial": partial,
                "profile_json": json.dumps(profile_dict, allow_nan=False, default=_json_default),
                "created_at": _naive_utc(now),
            },
            ["model", "role", "window_start", "window_end", "spec_key"],
        )

    def save_profile(self, model: str, role: str, start: datetime, end: datetime, spec_key: str,
                     profile_dict: dict, partial: bool = False) -> None:
        with self.engine.begin() as connection:
            self._upsert_profile(connection, model, role, start, end, spec_key, profile_dict, partial,
                                 datetime.now(timezone.utc))

    def load_profile(self, model: str, role: str, start: datetime, end: datetime, spec_key: str) -> dict | None:
        query = select(profiles.c.profile_json).where(
            profiles.c.model == model,
            profiles.c.role == role,
            profiles.c.window_start == _naive_utc(start),
            profiles.c.window_end == _naive_utc(end),
            profiles.c.spec_key == spec_key,
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else json.loads(row[0])

    def load_slice(self, model: str, start: datetime, end: datetime, spec_key: str,
                   role: str = "serving") -> StoredSlice | None:
        """A stored slice profile of the window (serving features, or labels) with the unreadable
        files met when it was computed."""
        query = select(profiles.c.profile_json, profiles.c.partial).where(
            profiles.c.model == model,
            profiles.c.role == role,
            profiles.c.window_start == _naive_utc(start),
            profiles.c.window_end == _naive_utc(end),
            profiles.c.spec_key == spec_key,
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        profile = json.loads(row[0])
        bad = [tuple(b) for b in profile.pop("bad_files", None) or []]
        if row[1] and not bad:  # stored before the list was kept: the flag alone survives
            bad = [(f"{_utc(start).isoformat()}/{_utc(end).isoformat()}", "unreadable file(s) when first profiled")]
        return StoredSlice(profile, bad)

    def get_result(self, model: str, check: str, start: datetime, end: datetime) -> CheckResult | None:
        query = select(runs.c.result_json).where(
            runs.c.model == model,
            runs.c.check_name == check,
            runs.c.window_start == _naive_utc(start),
            runs.c.window_end == _naive_utc(end),
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else CheckResult.from_dict(json.loads(row[0]))

    def results(self, model: str | None = None, check: str | None = None) -> Iterator[CheckResult]:
        query = select(runs.c.result_json).order_by(runs.c.window_start, runs.c.check_name)
        if model:
            query = query.where(runs.c.model == model)
        if check:
            query = query.where(runs.c.check_name == check)
        with self.engine.connect() as connection:
            for (text,) in connection.execute(query):
                yield CheckResult.from_dict(json.loads(text))

    def count_runs(self, **filters: Any) -> int:
        query = select(runs.c.id)
        for name, value in filters.items():
            query = query.where(runs.c[name] == value)
        with self.engine.connect() as connection:
            return len(connection.execute(query).all())

    def close(self) -> None:
        self.engine.dispose()


def _json_default(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")
