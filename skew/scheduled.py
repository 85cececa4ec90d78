"""The configured `train_serve_skew` check: one window of serving logs against the training
examples generated for the same events (`checks.train_serve_skew` in the config).

Both sources are cut to the window by the schema's timestamp (and `dt=` partitions); a
training source without that column is read whole, so its `training_only` count then
covers every example outside the window too. The result is stored like any other check's
(one FeatureDrift per feature, the join, schema, prediction and segment findings in
`details`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.checks import CheckParams, WindowCheck, register_check
from core.metric_points import with_points
from core.settings import Pair, SourceConfig
from core.results import CheckResult
from core.errors import ConfigError, DriftlineError
from core.sources import Limits
from skew.results import CHECK_NAME


class TrainServeSkewConfig(CheckParams):
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


def _resolve(path: str, base: Path) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


class TrainServeSkewCheck(WindowCheck):
    name = CHECK_NAME

    def __init__(self, model_config, check_config) -> None:
        if check_config is None or check_config.training is None:
            raise ConfigError(f"models.{model_config.name}.checks.train_serve_skew.training: "
                              "the training examples of the served events are not configured")
        self.model_config = model_config
        self.config = check_config

    def build(self, base: Path):
        """The SkewCheck and its model adapters, from the model's schema and this check's settings."""
        from skew.check import SkewCheck
        from skew.distribution import DistributionSettings
        from skew.feature_values import JoinSettings, Tolerance
        from skew.prediction import load_adapter

        c, schema = self.config, self.model_config.model_schema
        key = c.key or schema.example_id
        if key is None:
            raise ConfigError(f"models.{self.model_config.name}.checks.train_serve_skew.key: no key "
                              "(set it, or schema.example_id)")
        kinds = dict(self.model_config.feature_kinds)
        if c.features:
            unknown = [f for f in c.features if f not in kinds]
            if unknown:
                raise ConfigError(f"models.{self.model_config.name}.checks.train_serve_skew.features: "
                                  f"'{unknown[0]}' is not a schema feature")
            kinds = {f: kinds[f] for f in c.features}
        labels = tuple(label.name for label in schema.labels)
        tolerance = Tolerance(c.tolerance, c.relative_tolerance)
        check = SkewCheck(
            key=key, features=kinds, serving_absent=labels + tuple(c.serving_absent),
            ignore=(schema.timestamp, *(schema.predictions), *([schema.model_version] if schema.model_version else [])),
            distribution=DistributionSettings(thresholds=dict(c.thresholds), min_samples=c.min_samples,
                                              null_rate_thresholds=c.null_rate_thresholds),
            join=JoinSettings(
                tolerance=tolerance,
                tolerances={f: Tolerance(c.tolerance, c.relative_tolerance, d) for f, d in c.decimals.items()},
                segments=tuple(c.segments if c.segments is not None else schema.segments),
                max_examples=c.max_examples, memory_limit=c.memory_limit, threads=c.threads),
            value_thresholds=c.value_mismatch_thresholds, join_thresholds=c.join_thresholds,
            score_column=schema.predictions[0] if schema.predictions else None,
            version_column=schema.model_version, prediction_tolerance=c.prediction_tolerance,
            prediction_thresholds=c.prediction_thresholds,
        )
        vocabulary = _resolve(c.vocabulary_path, base) if c.vocabulary_path else None
        adapters = {}
        if c.model_path:
            adapters[None] = load_adapter(_resolve(c.model_path, base), vocabulary)
        for version, path in c.model_paths.items():
            adapters[version] = load_adapter(_resolve(path, base), vocabulary)
        return check, adapters

    def run(self, context) -> CheckResult:
        base = context.runner.config.base_dir
        check, adapters = self.build(base)
        timestamp = self.model_config.model_schema.timestamp
        cfg = self.config.training
        limits = Limits(cfg.limits.max_bytes, cfg.limits.max_rows)
        engine = context.runner.engine
        try:
            serving = context.serving_source()  # a SparkSource on Spark: join, replay and profiles run there
            training = engine.source(cfg.resolved(base), cfg.format, None, limits)
            if timestamp in training.schema.names:
                training.timestamp_column = timestamp  # cut to the window like the serving logs
            report = check.run(training, serving, adapters, context.start, context.end, timestamp,
                               engine=engine if engine.name == "spark" else None)
        except DriftlineError as exc:
            return CheckResult(check=self.name, status="error", details={"error": str(exc)},
                               **context.result_context)
        return with_points(report.to_check_result(**context.result_context))


@register_check(CHECK_NAME, params=TrainServeSkewConfig, needs=("rows", "model"), preload=("duckdb", "lightgbm"),
                exports=("prediction_skew_ratio", "skew_mismatch_ratio"),
                summary="serving logs vs the training examples of the same events")
def train_serve_skew_check(model_config, check_config) -> TrainServeSkewCheck:
    return TrainServeSkewCheck(model_config, check_config)
