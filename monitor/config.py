"""The YAML configuration: pydantic v2 models, read with yaml.safe_load.

Unknown keys and bad values are errors that name the key path, e.g.
`models.offer-ctr.checks.data_drift.threshold: Extra inputs are not permitted`.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from checks.settings import (  # light: pydantic only
    CalibrationCheckConfig,
    ConceptCheckConfig,
    PerformanceCheckConfig,
    QualityCheckConfig,
)
from explain.config import AttributionDriftConfig  # light: pydantic only
from monitor.errors import ConfigError
from monitor.reports import ReportOn  # light: Evidently is imported only to render
from retrain.settings import GatesConfig, PushConfig, check_cron  # light: pydantic only

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value) -> timedelta:
    """'30m', '6h', '1d', '2w' (or a number of seconds) to a timedelta. ValueError (which pydantic
    reports under the key's path) for anything else, infinite or beyond timedelta's ~2.7 million years."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not value >= 0:  # also NaN
                raise ValueError
            return timedelta(seconds=value)
        match = _DURATION.match(str(value))
        if match:
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except (OverflowError, ValueError):
        pass
    raise ValueError(f"expected a duration such as 30m, 6h, 1d (at most {timedelta.max.days}d), got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
MAX_SLICES = 10_000  # profile_granularity slices in one window (each is a stored profile)


def _short(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    max_bytes: int | None = Field(default=None, gt=0)
    max_rows: int | None = Field(default=None, gt=0)
    max_categories: int = Field(default=10_000, gt=0)


class SourceConfig(_Strict):
    path: str = Field(description="file, directory, glob or object-store URI")
    format: Literal["parquet", "csv", "json", "jsonl"] | None = None
    limits: LimitsConfig = LimitsConfig()

    def resolved(self, base: Path) -> str:
        if "://" in self.path or os.path.isabs(self.path):
            return self.path
        return str((base / self.path).resolve())


class FeatureConfig(_Strict):
    name: str
    kind: Literal["numeric", "categorical"]
    method: Literal["wasserstein", "psi", "jensenshannon", "linf"] | None = None


class LabelConfig(_Strict):
    name: str
    delay: Duration = timedelta(0)


class SchemaConfig(_Strict):
    example_id: str | None = None
    timestamp: str
    model_version: str | None = None
    features: list[FeatureConfig] = Field(min_length=1)
    predictions: list[str] = []
    labels: list[LabelConfig] = []
    segments: list[str] = []

    @model_validator(mode="after")
    def _unique_names(self):
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature '{duplicated[0]}' is listed twice")
        return self


Pair = tuple[float, float]


class DriftCheckConfig(_Strict):
    enabled: bool = True
    features: list[str] | None = None
    methods: dict[str, Literal["wasserstein", "psi", "jensenshannon", "linf"]] = {}
    thresholds: dict[Literal["wasserstein", "psi", "jensenshannon", "linf"], Pair] = {}
    threshold_mode: Literal["static", "learned"] = "static"
    min_samples: int = Field(default=1000, ge=1)
    null_rate_thresholds: Pair = (0.05, 0.1)
    unseen_share_thresholds: Pair = (0.02, 0.05)
    report: bool = True  # data_drift only: an Evidently drill-down report (HTML)
    report_on: ReportOn = "warn"  # which windows get one: warn (warn or alert), alert, always

    def check_params(self) -> dict:
        return {
            "features": tuple(self.features) if self.features else None,
            "methods": dict(self.methods),
            "thresholds": dict(self.thresholds),
            "threshold_mode": self.threshold_mode,
            "min_samples": self.min_samples,
            "null_rate_thresholds": self.null_rate_thresholds,
            "unseen_share_thresholds": self.unseen_share_thresholds,
        }


class TrainServeSkewConfig(_Strict):
    """`checks.train_serve_skew` (skew/scheduled.py): serving logs vs the training examples of the same events."""

    enabled: bool = False
    training: SourceConfig | None = None  # training examples generated for the served events
    key: str | None = None  # default: schema.example_id
    features: list[str] | None = None  # default: the schema's features
    serving_absent: list[str] = []  # absent at serving by design, beyond the labels
    segments: list[str] | None = None  # default: the schema's segments
    thresholds: dict[str, Pair] = {}  # distribution [warn, alert] per feature
    min_samples: int = Field(default=1000, ge=1)
    null_rate_thresholds: Pair = (0.05, 0.1)
    tolerance: float = Field(default=1e-9, ge=0)
    relative_tolerance: float = Field(default=1e-9, ge=0)
    decimals: dict[str, int] = {}  # compare these numerics rounded instead
    value_mismatch_thresholds: Pair = (0.001, 0.01)
    join_thresholds: Pair = (0.01, 0.05)
    model_path: str | None = None  # LightGBM text model replayed on the logged features
    model_paths: dict[str, str] = {}  # per logged model version
    vocabulary_path: str | None = None
    prediction_tolerance: float = Field(default=1e-6, ge=0)
    prediction_thresholds: Pair = (0.001, 0.01)
    max_examples: int = Field(default=5, ge=0, le=100)
    memory_limit: str = Field(default="1.5GB", pattern=r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B)\s*$")
    threads: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _training_given(self):
        if self.enabled and self.training is None:
            raise ValueError("training is required when train_serve_skew is enabled")
        return self


class ChecksConfig(_Strict):
    data_drift: DriftCheckConfig = DriftCheckConfig()
    prediction_drift: DriftCheckConfig = DriftCheckConfig()
    attribution_drift: AttributionDriftConfig = AttributionDriftConfig()  # explain/check.py
    # checks/quality.py, calibration.py, performance.py, concept.py (off unless enabled).
    data_quality: QualityCheckConfig = QualityCheckConfig()
    calibration: CalibrationCheckConfig = CalibrationCheckConfig()
    performance: PerformanceCheckConfig = PerformanceCheckConfig()
    concept_drift: ConceptCheckConfig = ConceptCheckConfig()
    train_serve_skew: TrainServeSkewConfig = TrainServeSkewConfig()  # skew/scheduled.py

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


class ScheduleConfig(_Strict):
    check: str
    cron: str | None = None
    interval: Duration | None = None
    window: Duration = timedelta(days=1)
    timezone: str = "UTC"
    max_backfill_windows: int = Field(default=24, ge=0)
    # Service settings (monitor/scheduling.py, monitor/service.py). Windows outside [start, end]
    # are never scheduled; a window is due `delay` after it closes (e.g. for labels to mature).
    start: datetime | None = None
    end: datetime | None = None
    delay: Duration = timedelta(0)
    timeout: Duration = timedelta(hours=1)
    retries: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="after")
    def _one_trigger(self):
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron or interval")
        if self.interval is not None and self.interval.total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        return self


class EmailConfig(_Strict):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    sender: str
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # TLS always verifies the server's certificate and name; a private CA goes here (PEM).
    ca_file: str | None = None


class AlertRouteConfig(_Strict):
    sink: str
    min_severity: Literal["warn", "alert"] = "alert"
    url: str | None = None
    secret_env: str | None = None
    cooldown: Duration = timedelta(hours=1)
    # monitor/alerts: secrets (signing secret, Slack URL, SMTP password) come from env or files only.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url_env: str | None = None
    url_file: str | None = None
    secret_file: str | None = None
    allow_private: bool = False  # let the URL resolve to loopback/private addresses (SSRF guard)
    max_attempts: int = Field(default=8, ge=1, le=50)
    email: EmailConfig | None = None


class RetrainConfig(_Strict):
    trainer: str = "lightgbm"
    training_window: Duration = timedelta(days=14)
    params: dict = {}
    on_sustained_alert: bool = False
    # Retraining (retrain/pipeline.py); see the README's "Retraining" section.
    registry: str = Field(default="models", description="model registry directory (relative to the config file)")
    labels: list[str] = Field(default=[], description="label columns, primary first; default: the schema's first")
    sources: list[Literal["reference", "serving"]] = Field(default=["serving"], min_length=1)
    holdout: Duration = Field(default=timedelta(days=1), description="the window's last stretch, scored by both models")
    holdout_fraction: float | None = Field(default=None, gt=0, lt=1, description="instead: the latest share of rows")
    validation_fraction: float = Field(default=0.1, gt=0, lt=1, description="latest share of training, for early stopping")
    max_rows: int | None = Field(default=2_000_000, gt=0, description="uniform sample of the window beyond this")
    exclude: list[str] = Field(default=[], description="START/END windows left out (known-bad data, e.g. incidents)")
    gates: GatesConfig = GatesConfig()
    infra_sample_rows: int = Field(default=1000, ge=1)
    push: PushConfig = PushConfig()
    schedule: str | None = Field(default=None, description="cron expression (UTC) for scheduled retraining")
    sustained_windows: int = Field(default=3, ge=1, description="consecutive alerting windows that trigger retraining")
    alert_checks: list[str] = ["data_drift", "prediction_drift", "calibration"]
    cooldown: Duration = timedelta(days=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value)


class SparkConfig(_Strict):
    """Where the `spark` engine runs: any Spark master, and Spark conf keys passed through."""

    master: str = Field(default="local[2]", description="local[N], spark://host:7077, yarn, k8s://...")
    app_name: str = "driftline"
    conf: dict[str, str] = Field(default_factory=dict, description="spark.* settings, e.g. spark.executor.memory")

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, conf):
        for key in conf:
            if not key.startswith("spark."):
                raise ValueError(f"conf key '{key}' is not a Spark setting (spark.*)")
        return conf

    def settings(self):
        from monitor.engines import SparkSettings

        return SparkSettings(self.master, self.app_name, dict(self.conf))


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    reference: SourceConfig
    serving: SourceConfig
    prediction_reference: SourceConfig | None = Field(
        default=None,
        description="the model's scores on held-out reference data, when the reference has no prediction columns",
    )
    model_schema: SchemaConfig = Field(alias="schema")
    checks: ChecksConfig = ChecksConfig()
    profile_granularity: Duration | None = Field(
        default=None, description="profile serving data in slices of this length, stored and merged into windows"
    )
    schedules: list[ScheduleConfig] = []
    alerts: list[AlertRouteConfig] = []
    retrain: RetrainConfig = RetrainConfig()
    engine: Literal["local", "spark"] = Field(
        default="local", description="where windows are read and profiled: in this process, or on Spark"
    )
    spark: SparkConfig = SparkConfig()
    max_window: Duration = Field(
        default=timedelta(days=90), description="longest window one run (or one scheduled window) may cover"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _windows_bounded(self):
        for schedule in self.schedules:
            if schedule.window > self.max_window:
                raise ValueError(f"schedule window {_short(schedule.window)} of {schedule.check} is longer than "
                                 f"max_window ({_short(self.max_window)})")
        return self

    def check_window(self, start: datetime, end: datetime) -> None:
        """Refuse a window longer than max_window (or sliced into too many profiles) before any work."""
        span = end - start
        if span > self.max_window:
            raise ConfigError(f"window {start.isoformat()}/{end.isoformat()} is {_short(span)}, longer than "
                              f"models.{self.name}.max_window ({_short(self.max_window)}); split it or raise "
                              "max_window")
        step = self.profile_granularity
        if step and span / step > MAX_SLICES:
            raise ConfigError(f"window {start.isoformat()}/{end.isoformat()} makes {span // step:,} "
                              f"slices of models.{self.name}.profile_granularity ({_short(step)}); at most "
                              f"{MAX_SLICES:,}")

    @property
    def feature_kinds(self) -> dict[str, str]:
        return {f.name: f.kind for f in self.model_schema.features}


class RetentionConfig(_Strict):
    """Ages beyond which the store prunes (monitor/retention.py); null keeps forever."""

    results: Duration | None = None
    profiles: Duration | None = None
    outbox: Duration | None = timedelta(days=30)
    job_events: Duration | None = timedelta(days=90)

    def policy(self):
        from monitor.retention import Retention

        return Retention(self.results, self.profiles, self.outbox, self.job_events)


class StoreConfig(_Strict):
    url: str = "sqlite:///driftline.db"
    reports_dir: str = "reports"
    retention: RetentionConfig = RetentionConfig()


class Config(_Strict):
    version: Literal[1] = 1
    store: StoreConfig = StoreConfig()
    models: list[ModelConfig] = Field(min_length=1)
    base_dir: Path = Path(".")

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models):
        names = [m.name for m in models]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"model '{name}' is defined twice")
        return models

    def model(self, name: str | None) -> ModelConfig:
        if name is None:
            if len(self.models) > 1:
                raise ConfigError(f"several models are configured; choose one with --model ({self._names()})")
            return self.models[0]
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"unknown model {name!r} (configured: {self._names()})")

    def _names(self) -> str:
        return ", ".join(m.name for m in self.models)

    def store_url(self) -> str:
        url = os.environ.get("DRIFTLINE_STORE_URL", self.store.url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            relative = url.removeprefix("sqlite:///")
            if relative and relative != ":memory:":
                return "sqlite:///" + str((self.base_dir / relative).resolve())
        return url

    def reports_dir(self) -> Path:
        path = Path(self.store.reports_dir)
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def _key_path(error: dict, data: dict) -> str:
    parts: list[str] = []
    node = data
    for part in error["loc"]:
        # Name models by their name, not their index, when we can.
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            parts.append(str(item.get("name", part)) if isinstance(item, dict) else str(part))
            node = item
        else:
            parts.append(str(part))
            node = node.get(part, {}) if isinstance(node, dict) else {}
    return ".".join(parts)


def parse_config(data: dict, source: str = "config", base_dir: Path | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        config = Config.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: {_key_path(first, data)}: {first['msg']}") from exc
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from exc
    try:
        data = yaml.safe_load(text)
        if isinstance(data, dict) and "base_dir" in data:
            raise ConfigError(f"{path}: base_dir: Extra inputs are not permitted")
        return parse_config(data, str(path), path.parent.resolve())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except RecursionError as exc:  # yaml and pydantic both recurse per nesting level
        raise ConfigError(f"{path}: nested too deeply to be a driftline config") from exc


def example_config_text() -> str:
    return (Path(__file__).parent / "templates" / "config.example.yaml").read_text()
