"""The YAML configuration: pydantic v2 models, read with yaml.safe_load.

Unknown keys and bad values are errors that name the key path, e.g.
`models.offer-ctr.checks.data_drift.threshold: Extra inputs are not permitted`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.settings import Duration, SourceConfig, parse_duration  # noqa: F401  (parse_duration re-exported)
from core.settings import StrictModel as _Strict
from retrain.settings import GatesConfig, PushConfig, check_cron  # light: pydantic only

MAX_SLICES = 10_000  # profile_granularity slices in one window (each is a stored profile)


def _short(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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


class ChecksConfig(_Strict):
    """`models.<name>.checks`: one entry per registered check (built-in or plug-in), each
    validated by that check's own parameter model. The fields are filled in from the check
    registry by `checks_config_model()`; this base only carries the helpers."""

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data):
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown check {unknown[0]!r} (known: {', '.join(sorted(cls.model_fields))})")
        return data

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


def checks_catalog():
    from monitor.catalog import load_checks

    return load_checks()


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
    # `security: none` with a username and password sends them readable (AUTH PLAIN): refused
    # unless the route says so here (a relay on the same host, say).
    allow_plaintext_auth: bool = False

    @model_validator(mode="after")
    def _no_clear_text_password(self):
        if self.security == "none" and self.username and (self.password_env or self.password_file) \
                and not self.allow_plaintext_auth:
            raise ValueError("security: none would send the SMTP password in clear text; use starttls or ssl, "
                             "or set email.allow_plaintext_auth: true")
        return self


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
        from core.engines import SparkSettings

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


_CONFIG_MODELS: dict[tuple[str, ...], type[Config]] = {}


def config_model() -> type[Config]:
    """`Config` whose `models.*.checks` schema is built from the check registry: every known
    check (built-in or plug-in) is a field typed by its own parameter model, defaulting to that
    model's defaults. Built once per set of registered checks."""
    from pydantic import create_model

    specs = checks_catalog().specs
    key = tuple(sorted(specs))
    built = _CONFIG_MODELS.get(key)
    if built is None:
        fields = {name: (spec.params, Field(default_factory=spec.params)) for name, spec in sorted(specs.items())}
        checks = create_model("ChecksConfig", __base__=ChecksConfig, **fields)
        model = create_model("ModelConfig", __base__=ModelConfig,
                             checks=(checks, Field(default_factory=checks)))
        built = create_model("Config", __base__=Config, models=(list[model], Field(min_length=1)))
        _CONFIG_MODELS[key] = built
    return built


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
        config = config_model().model_validate({**data, "base_dir": base_dir or Path(".")})
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
