"""Train/serve skew results: small frozen records with a stable, versioned JSON form.

`SkewReport.to_dict()` is the `driftline check skew --format json` contract;
`SkewReport.to_check_result()` turns it into the `CheckResult` the runner stores (one
`FeatureDrift` per feature, the rest under `details`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from core.results import CheckResult, FeatureDrift, json_safe, worst_status

SKEW_SCHEMA_VERSION = 1
CHECK_NAME = "train_serve_skew"


def grade(value: float | None, thresholds: tuple[float, float]) -> str:
    """ok / warn / alert for a value against [warn, alert]; None or NaN is ok (nothing to judge)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "ok"
    warn, alert = thresholds
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class SchemaIssue:
    """One schema finding. Severity `info` is reported without raising the status."""

    column: str
    issue: str  # missing | retyped | all_null | unseen_values | extra | key_*
    severity: str  # alert | warn | info
    detail: str = ""
    training_type: str | None = None
    serving_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JoinStats:
    """How the serving rows and the training examples matched on the key."""

    key: str
    serving_rows: int
    training_rows: int
    matched: int  # keys present on both sides
    serving_only: int  # serving rows whose key has no training example
    training_only: int  # training rows whose key was never served
    duplicate_keys: int  # keys repeated on either side (left out of the value comparison)
    serving_duplicate_keys: int = 0
    training_duplicate_keys: int = 0
    serving_null_keys: int = 0
    training_null_keys: int = 0
    compared: int = 0  # matched keys unique on both sides: the pairs whose values were compared
    status: str = "ok"
    reasons: tuple[str, ...] = ()
    examples: dict = field(default_factory=dict)  # serving_only / training_only / duplicate: a few keys each

    @property
    def serving_match_rate(self) -> float | None:
        return rate(self.serving_rows - self.serving_only - self.serving_null_keys, self.serving_rows)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["serving_match_rate"] = self.serving_match_rate
        return data


@dataclass(frozen=True)
class FeatureSkew:
    """Distribution and value skew of one feature, and the status they give it."""

    feature: str
    kind: str
    method: str | None = None  # linf (categorical) or jensenshannon (numeric)
    distribution_score: float | None = None
    thresholds: tuple[float, float] | None = None  # [warn, alert] of the distribution score
    training_count: int = 0  # non-missing values
    serving_count: int = 0
    null_rate_training: float | None = None
    null_rate_serving: float | None = None
    unseen_share: float | None = None  # serving values never seen in training (categoricals)
    compared: int = 0  # joined pairs compared
    value_mismatches: int = 0  # both sides have a value and they differ beyond the tolerance
    serving_null: int = 0  # missing at serving, a value in training
    training_null: int = 0  # a value at serving, missing in training
    value_mismatch_rate: float | None = None
    null_mismatch_rate: float | None = None
    examples: tuple[dict, ...] = ()  # {"key", "serving", "training"}
    status: str = "ok"
    reasons: tuple[str, ...] = ()
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thresholds"] = list(self.thresholds) if self.thresholds else None
        data["examples"] = [dict(e) for e in self.examples]
        data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class SegmentSkew:
    """Value mismatches within one value of a segment column."""

    segment: str
    value: str | None
    compared: int
    mismatch_rate: float  # the worst feature's (value + null) mismatch rate in this segment
    features: dict = field(default_factory=dict)  # feature -> mismatch rate, features with mismatches only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionSkew:
    model_version: str | None
    rows: int
    compared: int  # rows with a logged score and a replayed one
    mismatches: int
    mismatch_rate: float | None
    mean_abs_diff: float | None
    max_abs_diff: float | None
    status: str = "ok"
    message: str | None = None
    not_compared: int = 0  # rows whose logged or replayed score is null, NaN or infinite

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PredictionSkew:
    """Logged scores versus the model artifact's scores on the logged features."""

    score_column: str
    rows: int
    compared: int
    mismatches: int
    mismatch_rate: float | None
    mean_abs_diff: float | None
    max_abs_diff: float | None
    tolerance: float
    by_version: tuple[VersionSkew, ...] = ()
    examples: tuple[dict, ...] = ()  # the largest differences: {"key", "model_version", "logged", "replayed"}
    status: str = "ok"
    reasons: tuple[str, ...] = ()
    not_compared: int = 0  # rows whose logged or replayed score is null, NaN or infinite

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_version"] = [v.to_dict() for v in self.by_version]
        data["examples"] = [dict(e) for e in self.examples]
        data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class SkewReport:
    status: str
    schema: tuple[SchemaIssue, ...] = ()
    join: JoinStats | None = None
    features: tuple[FeatureSkew, ...] = ()
    prediction: PredictionSkew | None = None
    segments: tuple[SegmentSkew, ...] = ()
    training_rows: int = 0
    serving_rows: int = 0
    partial: bool = False
    bad_files: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # parts that could not run (the rest of the report stands)

    @staticmethod
    def overall(schema, join, features, prediction, errors=()) -> str:
        statuses = [i.severity for i in schema if i.severity != "info"]
        statuses += [f.status for f in features]
        statuses += [join.status] if join is not None else []
        statuses += [prediction.status] if prediction is not None else []
        statuses += ["error"] * len(errors)
        return worst_status(statuses) if statuses else "ok"

    @property
    def flagged_features(self) -> list[str]:
        return [f.feature for f in self.features if f.status in ("warn", "alert", "error")]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "schema_version": SKEW_SCHEMA_VERSION,
            "check": CHECK_NAME,
            "status": self.status,
            "schema": [i.to_dict() for i in self.schema],
            "join": self.join.to_dict() if self.join else None,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "segments": [s.to_dict() for s in self.segments],
            "training_rows": self.training_rows,
            "serving_rows": self.serving_rows,
            "partial": self.partial,
            "bad_files": list(self.bad_files),
            "errors": list(self.errors),
        })

    def to_check_result(self, **context) -> CheckResult:
        """The stored form: one FeatureDrift per feature (score = distribution score), the rest in details."""
        features = tuple(
            FeatureDrift(
                feature=f.feature, kind=f.kind, method=f.method or "none", score=f.distribution_score,
                threshold=f.thresholds[1] if f.thresholds else None, status=f.status,
                reference_count=f.training_count, current_count=f.serving_count,
                warn_threshold=f.thresholds[0] if f.thresholds else None,
                null_rate_reference=f.null_rate_training, null_rate_current=f.null_rate_serving,
                unseen_share=f.unseen_share, reasons=f.reasons, message=f.message,
            )
            for f in self.features
        )
        data = self.to_dict()
        details = {k: data[k] for k in ("schema", "join", "prediction", "segments", "errors")}
        details["value_skew"] = {
            f["feature"]: {k: f[k] for k in ("compared", "value_mismatches", "serving_null", "training_null",
                                             "value_mismatch_rate", "null_mismatch_rate", "examples")}
            for f in data["features"]
        }
        return CheckResult(
            check=CHECK_NAME, status=self.status, features=features, reference_rows=self.training_rows,
            current_rows=self.serving_rows, partial=self.partial, bad_files=self.bad_files, details=details,
            **context,
        )
