"""The YAML configuration: pydantic v2 models, read with yaml.safe_load.

Unknown keys and bad values are errors that name the key path, e.g.
`models.offer-ctr.checks.data_drift.threshold: Extra inputs are not permitted`.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value) -> timedelta:
    """'30m', '6h', '1d', '2w' (or a number of seconds) to a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30m, 6h, 1d, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


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
    report: bool = True

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


class ChecksConfig(_Strict):
    data_drift: DriftCheckConfig = DriftCheckConfig()
    prediction_drift: DriftCheckConfig = DriftCheckConfig()

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


class ScheduleConfig(_Strict):
    check: str
    cron: str | None = None
    interval: Duration | None = None
    window: Duration = timedelta(days=1)
    timezone: str = "UTC"
    max_backfill_windows: int = Field(default=24, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self):
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron or interval")
        return self


class AlertRouteConfig(_Strict):
    sink: str
    min_severity: Literal["warn", "alert"] = "alert"
    url: str | None = None
    secret_env: str | None = None
    cooldown: Duration = timedelta(hours=1)


class RetrainConfig(_Strict):
    trainer: str = "lightgbm"
    training_window: Duration = timedelta(days=14)
    params: dict = {}
    on_sustained_alert: bool = False


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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def feature_kinds(self) -> dict[str, str]:
        return {f.name: f.kind for f in self.model_schema.features}


class StoreConfig(_Strict):
    url: str = "sqlite:///driftline.db"
    reports_dir: str = "reports"


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
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if isinstance(data, dict) and "base_dir" in data:
        raise ConfigError(f"{path}: base_dir: Extra inputs are not permitted")
    return parse_config(data, str(path), path.parent.resolve())


def example_config_text() -> str:
    return (Path(__file__).parent / "templates" / "config.example.yaml").read_text()
