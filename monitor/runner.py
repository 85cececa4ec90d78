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
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from core.checks import CheckSpec, FittedCheck, StateCache
from core.engines import get_engine
from core.errors import ConfigError, DriftlineError
from core.profile import DatasetProfile, ProfileSpec, empty_profile
from core.reference import (
    REPORT_SAMPLE_ROWS,
    Reference,
    combine_references,
    source_fingerprint,
    spec_key,
)
from core.results import CheckResult, window_text
from core.sources import Limits, Source
from monitor.catalog import get_check
from monitor.config import Config, ModelConfig
from monitor.database import is_transient
from monitor.store import ResultsStore

log = logging.getLogger("driftline.runner")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class ReferenceView:
    """What `Check.fit` gets: the model's reference, profiled (and cached) on first use."""

    runner: "ModelRunner"

    @property
    def profile(self) -> DatasetProfile:
        return self.runner.reference().profile

    @property
    def chunks(self) -> list[DatasetProfile]:
        return self.runner.reference().chunks

    def source(self, role: str = "reference"):
        return self.runner.engine_source(role)


@dataclass
class WindowContext:
    """What `FittedCheck.evaluate` gets for one window: the profile (computed once, on first
    use), the sources as the engine reads them, samples, the runner's state and where reports go."""

    runner: "ModelRunner"
    start: datetime
    end: datetime
    result_context: dict  # model, window_start, window_end: pass to CheckResult(**result_context)
    now: datetime | None = None  # the run's clock (label maturity); None: the wall clock
    reports_wanted: bool = True
    _profile: tuple[DatasetProfile, Source] | None = None
    _label_profiles: dict = field(default_factory=dict)

    @property
    def model(self) -> ModelConfig:
        return self.runner.model

    @property
    def store(self) -> ResultsStore:
        return self.runner.store

    @property
    def state(self) -> StateCache:
        """Values a check reuses across windows (owned by the runner: bounded and locked)."""
        return self.runner.state

    def profile(self) -> DatasetProfile:
        if self._profile is None:
            self._profile = self.runner.window_profile(self.start, self.end)
        return self._profile[0]

    def label_profile(self, spec) -> tuple:
        """(the window's label profile for `spec` (core.label_profile), its unreadable files); computed
        once per spec by the engine (no rows come back), from stored slices with a granularity."""
        from monitor.label_slices import window_label_profile

        if spec not in self._label_profiles:
            self._label_profiles[spec] = window_label_profile(self.runner, spec, self.start, self.end)
        return self._label_profiles[spec]

    def bad_files(self) -> tuple[str, ...]:
        """Files of the window that could not be read (the profile was computed without them)."""
        self.profile()
        return tuple(dict.fromkeys(f"{path}: {why}" for path, why in self._profile[1].report.bad_files))

    def sample(self, columns: list[str], rows: int = REPORT_SAMPLE_ROWS) -> pa.Table:
        """A reproducible uniform sample of the window's rows of `columns`."""
        return self.serving_source().sample(rows, columns, 1, self.start, self.end)

    def reference_sample(self, columns: list[str], rows: int = REPORT_SAMPLE_ROWS) -> pa.Table:
        """A uniform sample of the reference: the one its bin edges came from, when built here."""
        sample = self.runner.reference().sample
        if sample is not None and all(c in sample.schema.names for c in columns):
            return sample
        return self.reference_source().sample(rows, columns)

    def title(self, check: str) -> str:
        return f"{self.model.name} {check} {window_text(self.start, self.end)}"

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
        self._reference_lock = threading.RLock()
        # Whatever checks keep between windows (fitted checks, scored reference rows, derived
        # suites): bounded, locked, and gone with the runner (one long-lived runner per model).
        self.state = StateCache(max_entries=64)
        # Where windows are read and profiled (`engine:` in the config, or --engine).
        self.engine = get_engine(engine or model.engine, model.spark.settings())
        schema = model.model_schema
        self.features: dict[str, str] = dict(model.feature_kinds)
        for column in schema.predictions:
            self.features.setdefault(column, "numeric")

    def engine_source(self, role: str):
        """The source as the engine reads it: a Source, or a SparkSource on Spark (also what window
        checks get from WindowContext: rows they need come through Spark, projected and filtered)."""
        if role == "prediction_reference" and self.model.prediction_reference is None:
            role = "reference"
        cfg = getattr(self.model, role)
        timestamp = self.model.model_schema.timestamp if role == "serving" else None
        return self.engine.source(cfg.resolved(self.config.base_dir), cfg.format, timestamp,
                                  Limits(cfg.limits.max_bytes, cfg.limits.max_rows))

    def reference(self) -> Reference:
        """Profile of the reference (features) joined with that of the prediction reference (scores);
        built or loaded once per runner, under a lock (windows of one model may run in parallel).
        A reference that cannot be read is a config error naming the key that fixes it (the run stops)."""
        with self._reference_lock:
            if self._reference is None:
                self._reading = "reference"  # the config key being read, for the error
                try:
                    self._reference = self._load_reference()
                except ConfigError:
                    raise
                except DriftlineError as exc:
                    raise ConfigError(f"models.{self.model.name}.{self._reading}.path: {exc}") from exc
            return self._reference

    def _load_reference(self) -> Reference:
        source = self.engine_source("reference")
        kinds = dict(self.features)
        predictions = [p for p in self.model.model_schema.predictions if p not in source.schema.names]
        parts = [(source, {k: v for k, v in kinds.items() if k not in predictions})]
        if predictions and self.model.prediction_reference is not None:
            self._reading = "prediction_reference"
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
        for (part_source, part_kinds), role in zip(parts, ("reference", "prediction_reference")):
            self._reading = role
            self.progress(f"profiling reference {part_source.location}")
            built.append(self.engine.reference(part_source, part_kinds, max_categories=self.model.reference.limits.max_categories))
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
        profile = self.merged_slices("serving", spec_key(reference.spec), start, end, source,
                                     empty_profile(reference.spec), DatasetProfile.from_dict,
                                     lambda lo, hi: self.engine.profile(source, columns, reference.spec, lo, hi))
        return profile, source

    def merged_slices(self, role: str, key: str, start: datetime, end: datetime, source, empty, from_dict,
                      compute):
        """[start, end) in profile_granularity slices, merged: a stored slice is reused, a missing one
        is `compute(lo, hi)` and stored. A slice keeps the unreadable files met when it was computed,
        and a reuse adds them to `source.report`, so a window merged from stored slices is still partial."""
        step = self.model.profile_granularity
        profile, cursor = empty, start
        while cursor < end:
            upper = min(cursor + step, end)
            stored = self.store.load_slice(self.model.name, cursor, upper, key, role=role)
            if stored is None:
                before = len(source.report.bad_files)
                piece = compute(cursor, upper)
                bad = source.report.bad_files[before:]
                self.store.save_profile(self.model.name, role, cursor, upper, key,
                                        {**piece.to_dict(), "bad_files": [list(b) for b in bad]}, bool(bad))
            else:
                piece = from_dict(stored.profile)
                source.report.bad_files.extend(b for b in stored.bad_files if b not in source.report.bad_files)
            profile = profile.merge(piece)
            cursor = upper
        return profile

    def run(self, start: datetime, end: datetime, checks: list[str] | None = None,
            report: bool = True) -> list[CheckResult]:
        """Every check alike: fit once per runner, evaluate on the window, store. An exception in
        one check becomes that check's `error` result; the other checks of the window still run."""
        self.model.check_window(start, end)  # unbounded work from one argument is refused, not started
        specs = [get_check(name) for name in (checks or self.model.checks.enabled())]  # unknown: listed
        self.progress(f"{self.model.name} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}")
        result_context = dict(model=self.model.name, window_start=start.isoformat(), window_end=end.isoformat())
        now = self.clock() if self.clock is not None else None
        window = WindowContext(self, start, end, result_context, now, reports_wanted=report)
        self.reference()  # an unreadable reference fails the run (ConfigError naming the key), not the window
        try:
            window.profile()  # read once; stored slices are what later windows and checks reuse
        except DriftlineError as exc:
            results = [CheckResult(check=s.name, status="error", details={"error": str(exc)}, **result_context)
                       for s in specs]
            for result in results:
                self.store.save_run(self.model.name, result, start, end)
            return results
        return [self._run_check(spec, window) for spec in specs]

    def _run_check(self, spec: CheckSpec, window: WindowContext) -> CheckResult:
        try:
            result = self.fitted(spec).evaluate(window)
        except DriftlineError as exc:
            result = CheckResult(check=spec.name, status="error", details={"error": str(exc)},
                                 **window.result_context)
        except Exception as exc:  # a bug or an outside library's failure costs this check only
            if is_transient(exc):
                raise  # the store or the filesystem failed: the run ledger retries the window
            log.exception("check %s of %s failed", spec.name, self.model.name)
            result = CheckResult(check=spec.name, status="error",
                                 details={"error": f"{type(exc).__name__}: {exc}"[:500]}, **window.result_context)
        self.store.save_run(self.model.name, result, window.start, window.end)
        return result

    def params(self, spec: CheckSpec):
        """The check's parameters from `models.<name>.checks.<check>`, else its defaults."""
        return getattr(self.model.checks, spec.name, None) or spec.params()

    def fitted(self, spec: CheckSpec) -> FittedCheck:
        """The check built from its parameters and fitted on the reference, once per runner."""
        params = self.params(spec)
        key = ("fitted", spec.name, params.model_dump_json())
        return self.state.get_or_create(key, lambda: spec.build(self.model, params).fit(ReferenceView(self)))


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
