"""Run configured checks for a window: profile once, evaluate every check, store idempotently.

The reference is read twice (a bounded sample to fix bin edges, then a full pass in
chunks whose spread gives learned thresholds) and cached in the store under a
fingerprint of its files. Serving data is profiled slice by slice (e.g. hourly) when a
granularity is configured; stored slices are merged into the window without reading
rows again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from checks.base import CheckResult
from checks.registry import get_check
from monitor.config import Config, ModelConfig
from monitor.engines import get_engine
from monitor.errors import DriftlineError
from monitor.profile import DatasetProfile, ProfileSpec, empty_profile
from monitor.reference import (
    REPORT_SAMPLE_ROWS,
    Reference,
    build_reference,
    combine_references,
    source_fingerprint,
    spec_key,
)
from monitor.reports import report_wanted  # light: Evidently is imported only to render
from monitor.sources import Limits, Source
from monitor.store import ResultsStore

log = logging.getLogger("driftline.runner")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DRIFT_CHECKS = ("data_drift", "prediction_drift")


@dataclass
class WindowContext:
    """What a row-reading check (checks.base.WindowCheck) gets for one window."""

    runner: "ModelRunner"
    start: datetime
    end: datetime
    result_context: dict  # model, window_start, window_end: pass to CheckResult(**result_context)
    now: datetime | None = None  # the run's clock (label maturity); None: the wall clock

    @property
    def model(self) -> ModelConfig:
        return self.runner.model

    @property
    def store(self) -> ResultsStore:
        return self.runner.store

    def serving_source(self) -> Source:
        """The serving logs as the model's engine reads them (a SparkSource on Spark)."""
        return self.runner.engine_source("serving")

    def reference_source(self) -> Source:
        return self.runner.engine_source("reference")

    def serving_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        return self.serving_source().batches(columns, self.start, self.end)

    def report_path(self, check: str, suffix: str = "html") -> Path:
        return self.runner.config.reports_dir() / self.model.name / check / (
            f"{self.start:%Y%m%dT%H%M}_{self.end:%Y%m%dT%H%M}.{suffix}"
        )


class ModelRunner:
    """Everything needed to run one model's checks; reuses the reference across windows."""

    def __init__(self, config: Config, model: ModelConfig, store: ResultsStore,
                 progress: Callable[[str], None] | None = None,
                 clock: Callable[[], datetime] | None = None, engine: str | None = None) -> None:
        self.config = config
        self.model = model
        self.store = store
        self.progress = progress or (lambda message: None)
        self.clock = clock  # injected "now" for label checks (pending until labels mature)
        self._reference: Reference | None = None
        # Where windows are read and profiled (`engine:` in the config, or --engine).
        self.engine = get_engine(engine or model.engine, model.spark.settings())
        schema = model.model_schema
        self.features: dict[str, str] = dict(model.feature_kinds)
        for column in schema.predictions:
            self.features.setdefault(column, "numeric")

    def _source(self, role: str) -> Source:
        if role == "prediction_reference" and self.model.prediction_reference is None:
            role = "reference"
        cfg = getattr(self.model, role)
        limits = Limits(cfg.limits.max_bytes, cfg.limits.max_rows)
        timestamp = self.model.model_schema.timestamp if role == "serving" else None
        return Source(cfg.resolved(self.config.base_dir), cfg.format, timestamp, limits)

    def engine_source(self, role: str):
        """The source as the engine reads it: a Source, or a SparkSource on Spark (also what window
        checks get from WindowContext: rows they need come through Spark, projected and filtered)."""
        if self.engine.name == "local":
            return self._source(role)
        if role == "prediction_reference" and self.model.prediction_reference is None:
            role = "reference"
        cfg = getattr(self.model, role)
        timestamp = self.model.model_schema.timestamp if role == "serving" else None
        return self.engine.source(cfg.resolved(self.config.base_dir), cfg.format, timestamp,
                                  Limits(cfg.limits.max_bytes, cfg.limits.max_rows))

    def _build_reference(self, source, kinds: dict[str, str]) -> Reference:
        max_categories = self.model.reference.limits.max_categories
        if self.engine.name == "local":
            return build_reference(source, kinds, max_categories=max_categories)
        return self.engine.reference(source, kinds, max_categories=max_categories)

    def reference(self) -> Reference:
        """Profile of the reference (features) joined with that of the prediction reference (scores)."""
        if self._reference is not None:
            return self._reference
        source = self.engine_source("reference")
        kinds = dict(self.features)
        predictions = [p for p in self.model.model_schema.predictions if p not in source.schema.names]
        parts = [(source, {k: v for k, v in kinds.items() if k not in predictions})]
        if predictions and self.model.prediction_reference is not None:
            parts.append((self.engine_source("prediction_reference"), {p: "numeric" for p in predictions}))
        fingerprint = "".join(source_fingerprint(s) for s, _ in parts)
        key = hashlib.sha256((fingerprint + json.dumps(kinds, sort_keys=True)).encode()).hexdigest()[:32]
        cached = self.store.load_profile(self.model.name, "reference", _EPOCH, _EPOCH, key)
        if cached is not None:
            self._reference = Reference(
                ProfileSpec.from_dict(cached["spec"]),
                DatasetProfile.from_dict(cached["profile"]),
                [DatasetProfile.from_dict(c) for c in cached["chunks"]],
            )
            return self._reference
        built = []
        for part_source, part_kinds in parts:
            self.progress(f"profiling reference {part_source.location}")
            built.append(self._build_reference(part_source, part_kinds))
        self._reference = built[0] if len(built) == 1 else combine_references(built[0], built[1])
        payload = {
            "rows": self._reference.profile.rows,
            "spec": self._reference.spec.to_dict(),
            "profile": self._reference.profile.to_dict(),
            "chunks": [c.to_dict() for c in self._reference.chunks],
        }
        self.store.save_profile(self.model.name, "reference", _EPOCH, _EPOCH, key, payload)
        return self._reference

    def window_profile(self, start: datetime, end: datetime) -> tuple[DatasetProfile, Source]:
        """Profile [start, end); with a granularity, reuse stored slices and store new ones."""
        reference = self.reference()
        source = self.engine_source("serving")
        columns = list(self.features)
        step = self.model.profile_granularity
        if step is None:
            return self.engine.profile(source, columns, reference.spec, start, end), source
        key = spec_key(reference.spec)
        profile = empty_profile(reference.spec)
        cursor = start
        while cursor < end:
            upper = min(cursor + step, end)
            stored = self.store.load_slice(self.model.name, cursor, upper, key)
            if stored is None:
                before = len(source.report.bad_files)
                piece = self.engine.profile(source, columns, reference.spec, cursor, upper)
                bad = source.report.bad_files[before:]  # kept with the slice: a reuse still says partial
                self.store.save_profile(self.model.name, "serving", cursor, upper, key,
                                        {**piece.to_dict(), "bad_files": [list(b) for b in bad]}, bool(bad))
            else:
                piece = DatasetProfile.from_dict(stored.profile)
                source.report.bad_files.extend(b for b in stored.bad_files if b not in source.report.bad_files)
            profile = profile.merge(piece)
            cursor = upper
        return profile, source

    def run(self, start: datetime, end: datetime, checks: list[str] | None = None,
            report: bool = True) -> list[CheckResult]:
        self.model.check_window(start, end)  # unbounded work from one argument is refused, not started
        names = checks or self.model.checks.enabled()
        unknown = [n for n in names if n not in DRIFT_CHECKS]
        for name in unknown:
            get_check(name)  # an unknown name fails here, listing the known ones
        self.progress(f"{self.model.name} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}")
        context = dict(model=self.model.name, window_start=start.isoformat(), window_end=end.isoformat())
        try:
            profile, source = self.window_profile(start, end)
        except DriftlineError as exc:
            results = [CheckResult(check=n, status="error", details={"error": str(exc)}, **context) for n in names]
            for result in results:
                self.store.save_run(self.model.name, result, start, end)
            return results
        results = []
        for name in names:
            if name in DRIFT_CHECKS:
                results.append(self._run_check(name, profile, source, start, end, context, report))
            else:
                results.append(self._run_window_check(name, start, end, context))
        return results

    def _run_window_check(self, name: str, start: datetime, end: datetime, context: dict) -> CheckResult:
        cfg = getattr(self.model.checks, name, None)
        try:
            check = get_check(name)(self.model, cfg)
            now = self.clock() if self.clock is not None else None
            result = check.run(WindowContext(self, start, end, context, now))
        except DriftlineError as exc:
            result = CheckResult(check=name, status="error", details={"error": str(exc)}, **context)
        self.store.save_run(self.model.name, result, start, end)
        return result

    def _run_check(self, name, profile, source, start, end, context, report) -> CheckResult:
        reference = self.reference()
        cfg = getattr(self.model.checks, name, None)
        try:
            params = cfg.check_params() if cfg is not None else {}
            if name == "prediction_drift":
                params["features"] = tuple(self.model.model_schema.predictions) or None
                if params["features"] is None:
                    raise DriftlineError("prediction_drift: the schema lists no prediction columns")
            elif name == "data_drift" and params.get("features") is None:
                params["features"] = tuple(self.model.feature_kinds)
            fitted = get_check(name)(**params).fit(reference.profile, reference.chunks)
            bad = tuple(dict.fromkeys(f"{path}: {why}" for path, why in source.report.bad_files))
            result = fitted.evaluate(profile, partial=bool(bad), bad_files=bad, **context)
        except DriftlineError as exc:
            result = CheckResult(check=name, status="error", details={"error": str(exc)}, **context)
        if report and cfg is not None and getattr(cfg, "report", False) and name == "data_drift" \
                and result.status != "error" and profile.rows and report_wanted(result.status, cfg.report_on):
            result = self._with_report(result, source, start, end)
        self.store.save_run(self.model.name, result, start, end)
        return result

    def _with_report(self, result: CheckResult, source: Source, start, end) -> CheckResult:
        from monitor.reports import render_drift_report

        reference = self.reference()
        kinds = self.model.feature_kinds
        try:
            reference_sample = reference.sample or self.engine_source("reference").sample(REPORT_SAMPLE_ROWS,
                                                                                          list(kinds))
            current = source.sample(REPORT_SAMPLE_ROWS, list(kinds), 1, start, end)
            path = self.config.reports_dir() / self.model.name / result.check / (
                f"{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M}.html"
            )
            columns = [c for c in kinds if c in current.schema.names and c in reference_sample.schema.names]
            render_drift_report(
                reference_sample.slice(0, REPORT_SAMPLE_ROWS).select(columns).to_pandas(),
                current.select(columns).to_pandas(),
                path,
                numeric=[c for c in columns if kinds[c] == "numeric"],
                categorical=[c for c in columns if kinds[c] == "categorical"],
                title=f"{self.model.name} {result.check} {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}",
            )
            return result.with_updates(report_path=str(path))
        except Exception as exc:  # a report is a convenience: never lose the result over it
            log.warning("report for %s %s failed: %s", self.model.name, result.check, exc)
            return result.with_updates(details={**result.details, "report_error": str(exc)[:300]})


def windows(start: datetime, end: datetime, step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        yield cursor, min(cursor + step, end)
        cursor += step


def run_config(config: Config, model_name: str | None, start: datetime, end: datetime,
               checks: list[str] | None = None, progress=None, engine: str | None = None) -> list[CheckResult]:
    store = ResultsStore(config.store_url())
    try:
        runner = ModelRunner(config, config.model(model_name), store, progress, engine=engine)
        return runner.run(start, end, checks)
    finally:
        store.close()


def report_dir_for(config: Config) -> Path:
    return config.reports_dir()
