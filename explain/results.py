"""Explanation results: small frozen records with a stable, versioned JSON form.

`ExplainResult.to_dict()` is the JSON contract of `driftline explain --format json`:
`{"method", "model", "rows", "base_value", "additivity_error", "features": [{"feature",
"importance", "std", ...}], "status", "reasons", "partial", "bad_files"}`. `std` is the uncertainty of the importance: for SHAP the
standard error of the mean |SHAP| over the sampled rows, for permutation importance the
standard deviation over repeats (as scikit-learn reports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.results import json_safe

EXPLAIN_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    importance: float
    std: float | None = None
    # Method-specific extras, e.g. {"gain": ..., "split": ...} for SHAP on LightGBM, or
    # {"auc_delta": ..., "auc_std": ..., "se": ...} for permutation importance.
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "importance": self.importance, "std": self.std, **self.extra}


@dataclass(frozen=True)
class ExplainResult:
    """Global importances of one model on one dataset (sorted by importance, largest first)."""

    method: str  # "shap" (mean |SHAP|, raw log-odds) or "permutation" (log-loss increase)
    model: str
    rows: int
    features: tuple[FeatureImportance, ...]
    base_value: float | None = None
    additivity_error: float | None = None
    details: dict = field(default_factory=dict)
    # "insufficient_data" when the rows cannot support the numbers (reasons say why); partial
    # when files of the data could not be read (bad_files: "path: why").
    status: str = "ok"
    reasons: tuple[str, ...] = ()
    partial: bool = False
    bad_files: tuple[str, ...] = ()

    def importances(self) -> dict[str, float]:
        return {f.feature: f.importance for f in self.features}

    def ranking(self) -> list[str]:
        return [f.feature for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "schema_version": EXPLAIN_SCHEMA_VERSION,
            "method": self.method,
            "model": self.model,
            "rows": self.rows,
            "base_value": self.base_value,
            "additivity_error": self.additivity_error,
            "features": [f.to_dict() for f in self.features],
            "details": self.details,
            "status": self.status,
            "reasons": list(self.reasons),
            "partial": self.partial,
            "bad_files": list(self.bad_files),
        })


def sorted_importances(items: list[FeatureImportance]) -> tuple[FeatureImportance, ...]:
    """Largest importance first; ties keep the model's feature order (stable sort)."""
    return tuple(sorted(items, key=lambda f: -f.importance))
