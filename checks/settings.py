"""Configuration sections of the data-quality and label-based checks (`models.*.checks.*`).

Pydantic models with unknown keys forbidden, like the rest of monitor.config (which
imports these into ChecksConfig). All are off unless enabled: they need labels, scored
reference data or a Great Expectations install that plain drift monitoring does not.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from core.checks import CheckParams

Pair = tuple[float, float]


_Strict = CheckParams  # unknown keys forbidden, frozen; `enabled` off unless set


def _ordered(pair: Pair, name: str) -> None:
    if not (0 <= pair[0] <= pair[1]) or not math.isfinite(pair[1]):
        raise ValueError(f"{name}: expected [warn, alert] with 0 <= warn <= alert, got {list(pair)}")


class QualityCheckConfig(_Strict):
    enabled: bool = False
    suite: str | None = Field(default=None, description="an edited expectation suite (JSON); default: derived")
    columns: list[str] | None = Field(default=None, description="default: features, example id, predictions")
    range_tolerance: float = Field(default=0.1, ge=0, description="widen the reference range by this share of it")
    range_mostly: float = Field(default=0.999, gt=0, le=1)
    null_rate_tolerance: float = Field(default=0.02, ge=0, le=1)
    unseen_tolerance: float = Field(default=0.01, ge=0, le=1)
    top_k: int = Field(default=1000, ge=1, description="categoricals with more values get a top-k coverage bound")
    sample_rows: int = Field(default=1_000_000, ge=1000, description="validate a uniform sample beyond this")
    threshold_mode: Literal["static", "learned"] = "static"

    def check_params(self) -> dict:
        return self.model_dump(exclude={"enabled", "suite", "columns"})


class _LabelledConfig(_Strict):
    enabled: bool = False
    predictions: dict[str, str] = Field(default={}, description="prediction column -> label column")
    segments: list[str] | None = Field(default=None, description="default: schema.segments")
    top_n: int = Field(default=10, ge=1)
    min_rows: int = Field(default=500, ge=1)
    min_positives: float = Field(default=20, gt=0, description="fewer predicted positives: insufficient_data")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="false-discovery rate across comparisons")
    threshold_mode: Literal["static", "learned"] = "static"
    learned_cap: float = Field(default=3.0, ge=1, description="learned tolerances stay within this multiple of static")


class _SpreadConfig(_LabelledConfig):
    """Performance and calibration: tolerances from the reference's chunk-to-chunk spread by default."""

    threshold_mode: Literal["static", "learned", "spread"] = Field(
        default="spread", description="spread: k x the chunk-to-chunk std at the window's size (static when the "
                                      "reference holds fewer than min_spread_chunks chunks of that size)")
    spread_k: Pair = Field(default=(2.0, 3.0), description="spread mode: warn, alert in chunk stds")
    min_spread_chunks: int = Field(default=8, ge=3)


class CalibrationCheckConfig(_SpreadConfig):
    n_bins: int = Field(default=10, ge=2)
    thresholds: Pair = Field(default=(0.025, 0.05), description="relative change of sum(p)/sum(y): warn, alert")

    @model_validator(mode="after")
    def _pairs(self):
        _ordered(self.thresholds, "thresholds")
        _ordered(self.spread_k, "spread_k")
        return self

    def check_params(self) -> dict:
        return self.model_dump(exclude={"enabled", "predictions", "segments"})


class PerformanceCheckConfig(_SpreadConfig):
    auc_drop: Pair = (0.02, 0.05)
    ne_rise: Pair = Field(default=(0.02, 0.05), description="rise of normalised entropy: warn, alert")
    calibration: Pair = Field(default=(0.025, 0.05), description="relative change of sum(p)/sum(y)")

    @model_validator(mode="after")
    def _pairs(self):
        for name in ("auc_drop", "ne_rise", "calibration", "spread_k"):
            _ordered(getattr(self, name), name)
        return self

    def check_params(self) -> dict:
        return self.model_dump(exclude={"enabled", "predictions", "segments"})


class ConceptCheckConfig(_LabelledConfig):
    top_n: int = Field(default=50, ge=1)
    segment_pairs: list[tuple[str, str]] | None = Field(default=None, description="default: every pair of segments")
    min_cell_positives: float = Field(default=10, gt=0)
    residual_change: Pair = Field(default=(0.25, 0.5), description="relative change of a cell's observed/predicted")
    auc_drop: Pair = Field(default=(0.02, 0.04), description="expected minus realized AUC")
    loss_rise: Pair = Field(default=(0.02, 0.05), description="realized over expected log loss, minus 1")
    page_hinkley_delta: float = Field(default=0.5, ge=0, description="allowed drift of the loss z-series")
    page_hinkley_threshold: float = Field(default=8.0, gt=0)
    min_reference_rows: int = Field(default=1000, ge=1, description="smaller scored reference: insufficient_data")
    min_reference_positives: float = Field(default=50, gt=0, description="of each label value, in the reference")

    @model_validator(mode="after")
    def _pairs(self):
        for name in ("residual_change", "auc_drop", "loss_rise"):
            _ordered(getattr(self, name), name)
        return self

    def check_params(self) -> dict:
        return self.model_dump(exclude={"enabled", "predictions", "segments"})
