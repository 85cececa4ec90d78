"""Configuration of the `attribution_drift` check (`models.<name>.checks.attribution_drift`).

Kept here, beside the check: registered with it as its parameter model, from which the
config schema of `checks:` is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from core.checks import CheckParams

from core.results import ReportOn

Pair = tuple[float, float]


class AttributionDriftConfig(CheckParams):
    enabled: bool = False
    model_path: str | None = Field(
        default=None, description="LightGBM text model, or a retrain/ model directory (DCN-V2, ESMM: deep SHAP at x0); "
                                  "relative to the config file")
    vocabulary_path: str | None = Field(
        default=None, description="JSON {feature: [category, ...]} coding the model's categorical inputs")
    sample_size: int = Field(default=10_000, ge=100, le=1_000_000,
                             description="rows read per window (permutation importance uses every labelled one)")
    shap_rows: int = Field(default=2000, ge=100, le=1_000_000, description="of those, rows explained with SHAP")
    background_rows: int = Field(
        default=200, ge=10, le=10_000,
        description="deep models: baseline rows SHAP explains against, drawn once with `seed` and stored")
    label: str | None = Field(default=None, description="label column; default: the schema's first label")
    holdout_path: str | None = Field(
        default=None, description="held-out labelled data (never the training set) as the baseline")
    baseline_window: str | None = Field(
        default=None, description="START/END of serving logs as the baseline, when there is no holdout")
    n_repeats: int = Field(default=2, ge=1, le=50)
    seed: int = 0
    top_k: int = Field(default=5, ge=1)
    ndcg_threshold: float = Field(default=0.9, gt=0, le=1)
    shap_thresholds: Pair = (0.1, 0.2)
    permutation_z: Pair = (3.0, 5.0)
    permutation_min_change: float = Field(default=0.5, ge=0)
    min_rows: int = Field(default=500, ge=1)
    min_positives: int = Field(default=30, ge=1)
    report: bool = True
    report_on: ReportOn = Field(default="warn", description="windows that get the HTML report: warn (warn or alert), "
                                                          "alert, always")

    @model_validator(mode="after")
    def _consistent(self):
        if self.enabled and not self.model_path:
            raise ValueError("model_path is required when attribution_drift is enabled")
        if self.holdout_path and self.baseline_window:
            raise ValueError("give at most one of holdout_path and baseline_window")
        if self.baseline_window is not None and len(self.baseline_window.split("/")) != 2:
            raise ValueError("baseline_window: expected START/END, e.g. 2024-06-03/2024-06-04")
        for name in ("shap_thresholds", "permutation_z"):
            warn, alert = getattr(self, name)
            if not 0 <= warn <= alert:
                raise ValueError(f"{name}: expected [warn, alert] with 0 <= warn <= alert")
        return self

    def resolve(self, path: str | None, base: Path) -> str | None:
        if path is None or "://" in path or os.path.isabs(path):
            return path
        return str((base / path).resolve())
