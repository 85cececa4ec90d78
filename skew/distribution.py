"""Distribution skew: training data versus serving data of the same period, per feature.

The drift kernel, reused: both sides are reduced to mergeable profiles (core.profile)
with bin edges fixed from a training sample, and scored with `checks.drift.score_profiles`:
L-infinity distance of category shares for categoricals and Jensen-Shannon distance over
training-decile bins for numerics, TFDV's and Vertex's skew measures. Thresholds default
to the drift defaults per method and can be set per feature. The null-rate change is
judged too, so a feature served all-null (no values left to score) still alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from checks.drift import COARSE_BINS, DEFAULT_THRESHOLDS, score_profiles
from core.errors import SchemaError
from core.profile import (
    DatasetProfile,
    FeatureError,
    FeatureSpec,
    ProfileSpec,
    build_spec,
    profile_batches,
)
from core.sources import Source, sample_batches
from skew.results import grade, rate

METHODS = {"numeric": "jensenshannon", "categorical": "linf"}
SAMPLE_ROWS = 200_000  # training rows sampled to fix the numeric bin edges


@dataclass(frozen=True)
class DistributionSettings:
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)  # per feature [warn, alert]
    min_samples: int = 1000
    null_rate_thresholds: tuple[float, float] = (0.05, 0.1)
    n_bins: int = COARSE_BINS  # JS on training-decile bins, as the drift check's coarse JS
    max_categories: int = 10_000
    workers: int = 2

    def thresholds_for(self, feature: str, method: str) -> tuple[float, float]:
        return tuple(self.thresholds.get(feature, DEFAULT_THRESHOLDS[method]))  # type: ignore[return-value]


@dataclass(frozen=True)
class DistributionFinding:
    feature: str
    kind: str
    method: str
    score: float | None
    thresholds: tuple[float, float]
    training_count: int
    serving_count: int
    null_rate_training: float | None
    null_rate_serving: float | None
    unseen_share: float | None
    status: str
    reasons: tuple[str, ...] = ()
    message: str | None = None


def build_pair_spec(schema: pa.Schema, sample: pa.Table, kinds: dict[str, str],
                    settings: DistributionSettings) -> ProfileSpec:
    """Spec per feature; a feature absent from (or unusable in) the training data keeps an empty spec
    and is reported by the kernel as a FeatureError instead of failing the run."""
    specs = []
    for name, kind in kinds.items():
        arrow_type = str(schema.field(name).type) if name in schema.names else ""
        if kind == "numeric" and name in sample.schema.names:
            try:
                specs.append(build_spec(sample, {name: kind}, n_bins=settings.n_bins,
                                        max_categories=settings.max_categories).features[0])
                continue
            except SchemaError:
                pass
        specs.append(FeatureSpec(name, kind, (), arrow_type))
    return ProfileSpec(tuple(specs), settings.max_categories)


def profile_pair(training: Source, serving: Source, kinds: dict[str, str], settings: DistributionSettings,
                 start: datetime | None = None, end: datetime | None = None,
                 ) -> tuple[DatasetProfile, DatasetProfile]:
    """Profiles of both sides of the window (the training side's numerics are read twice: a sample fixes the edges)."""
    numeric = [n for n, k in kinds.items() if k == "numeric" and n in training.schema.names]
    sample = sample_batches(training.batches(numeric, start, end), SAMPLE_ROWS, seed=0, schema=training.schema,
                            columns=numeric) if numeric else pa.table({})
    spec = build_pair_spec(training.schema, sample, kinds, settings)
    columns = list(kinds)
    training_profile = profile_batches(training.batches(columns, start, end), spec, workers=settings.workers)
    serving_profile = profile_batches(serving.batches(columns, start, end), spec, workers=settings.workers)
    return training_profile, serving_profile


def spark_profile_pair(training, serving, kinds: dict[str, str], settings: DistributionSettings,
                       start: datetime | None = None, end: datetime | None = None, engine=None,
                       ) -> tuple[DatasetProfile, DatasetProfile]:
    """`profile_pair` on Spark (SparkSources): the same sample bound fixes the edges, the kernel runs on Spark."""
    numeric = [n for n, k in kinds.items() if k == "numeric" and n in training.schema.names]
    sample = training.sample(SAMPLE_ROWS, numeric, 0, start, end) if numeric else pa.table({})
    spec = build_pair_spec(training.schema, sample, kinds, settings)
    columns = list(kinds)
    return engine.profile(training, columns, spec, start, end), engine.profile(serving, columns, spec, start, end)


def score_feature(name: str, kind: str, training, serving, settings: DistributionSettings) -> DistributionFinding:
    method = METHODS[kind]
    thresholds = settings.thresholds_for(name, method)
    for side, profile in (("training", training), ("serving", serving)):
        if profile is None or isinstance(profile, FeatureError):
            message = profile.message if profile is not None else f"column '{name}' is missing"
            return DistributionFinding(name, kind, method, None, thresholds, 0, 0, None, None, None, "error",
                                       message=f"{message} in the {side} data")
    null_t, null_s = rate(training.missing_count, training.rows), rate(serving.missing_count, serving.rows)
    statuses, reasons = [], []
    if null_t is not None and null_s is not None:
        status = grade(abs(null_s - null_t), settings.null_rate_thresholds)
        if status != "ok":
            statuses.append(status)
            reasons.append(f"null rate {null_t:.3f} in training, {null_s:.3f} at serving")
    unseen = None
    if kind == "categorical" and serving.count:
        unseen = sum(v for k, v in serving.counts.items() if k not in training.counts) / serving.count
    score = None
    if min(training.count, serving.count) < settings.min_samples:
        statuses.append("insufficient_data")
        reasons.append(f"fewer than {settings.min_samples} values (training {training.count}, "
                       f"serving {serving.count})")
    else:
        score = float(score_profiles(method, training, serving))
        status = grade(score, thresholds)
        if status != "ok":
            statuses.append(status)
            reasons.append(f"{method} {score:.4f} over the {status} threshold "
                           f"{thresholds[1] if status == 'alert' else thresholds[0]:g}")
    return DistributionFinding(name, kind, method, score, thresholds, training.count, serving.count, null_t, null_s,
                               unseen, _status(statuses), tuple(reasons))


def _status(statuses: list[str]) -> str:
    for level in ("alert", "warn", "insufficient_data"):
        if level in statuses:
            return level
    return "ok"


def distribution_skew(training: DatasetProfile, serving: DatasetProfile, kinds: dict[str, str],
                      settings: DistributionSettings = DistributionSettings()) -> dict[str, DistributionFinding]:
    return {name: score_feature(name, kind, training.features.get(name), serving.features.get(name), settings)
            for name, kind in kinds.items()}

