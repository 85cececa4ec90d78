"""`slot_calibration`: observed vs predicted CTR per slot (position) and model version.

A ranker shows several offers per decision; the slot an offer lands in changes its CTR
(position bias), and a model is supposed to predict that. Averaging over slots hides a model
that over-predicts slot 1 and under-predicts slot 3. This check compares, in every cell of
slot x version (and every slot across versions), the predicted clicks sum(p) with the
observed clicks sum(y): the calibration ratio with its exact interval, judged against 1 with
the calibration check's band test (checks.calibration, baseline "one", static band). All
cells share one noise budget (Benjamini-Hochberg at alpha); a cell with fewer rows or
predicted clicks than the minimum is insufficient_data. So "slot 1 is over-predicted since
v7" is one row (`details.cells`), one series (`driftline_slot_calibration_ratio{slot="1",
version="v7"}`) and one panel.

Other label checks (calibration, performance, concept_drift) are sliced by slot through their
`segments` setting, and by version when the scored reference carries the version column (they
read their segments from it too); this check adds the slot x version cross and needs no reference.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from checks.calibration import CalibrationCheck
from checks.labelled import Segment, label_maturity, prediction_pairs
from core.label_profile import OVERALL, LabelSpec
from core.checks import CheckParams, WindowCheck, register_check
from core.errors import ConfigError
from core.results import CheckResult, MetricPoint

CROSS = "slot_version"
EXPORTED = ("slot_calibration_ratio", "slot_calibration_ratio_low", "slot_calibration_ratio_high",
            "slot_ctr_observed", "slot_ctr_predicted")


class SlotCalibrationParams(CheckParams):
    enabled: bool = False
    slot_column: str = Field(default="slot", description="the slot (position) the offer was shown in")
    version_column: str | None = Field(default=None, description="default: schema.model_version")
    prediction: str | None = Field(default=None, description="default: the first of schema.predictions")
    top_n: int = Field(default=30, ge=1, description="slot x version cells kept; the rest pooled as (other)")
    min_rows: int = Field(default=500, ge=1)
    min_positives: float = Field(default=20, gt=0, description="fewer predicted clicks in a cell: insufficient_data")
    thresholds: tuple[float, float] = Field(default=(0.05, 0.1), description="relative miscalibration: warn, alert")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="false-discovery rate over cells")


def cross(a: Segment, b: Segment) -> Segment:
    """The product of two dictionary-encoded columns: "a|b" per row."""
    codes = a.codes * len(b.categories) + b.codes
    used = np.unique(codes)
    remap = np.zeros(len(a.categories) * len(b.categories) or 1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    names = tuple(f"{a.categories[c // len(b.categories)]}|{b.categories[c % len(b.categories)]}" for c in used)
    return Segment(remap[codes] if len(codes) else codes, names)


class SlotCalibrationCheck(WindowCheck):
    name = "slot_calibration"

    def __init__(self, model_config, params: SlotCalibrationParams) -> None:
        self.params = params
        self.version = params.version_column or model_config.model_schema.model_version
        if not self.version:
            raise ConfigError(f"models.{model_config.name}.checks.slot_calibration.version_column: not set, "
                              "and schema.model_version is empty")
        pairs = prediction_pairs(model_config, {})
        chosen = [p for p in pairs if p[0] == params.prediction] if params.prediction else pairs
        if not chosen:
            raise ConfigError(f"models.{model_config.name}.checks.slot_calibration.prediction: "
                              f"'{params.prediction}' is not in schema.predictions")
        self.prediction, self.label, self.delay = chosen[0]
        self.statistic = CalibrationCheck(name=self.name, segments=(params.slot_column, CROSS), top_n=params.top_n,
                                          min_rows=params.min_rows, min_positives=params.min_positives,
                                          thresholds=params.thresholds, threshold_mode="static", alpha=params.alpha)

    def run(self, context) -> CheckResult:
        pending = label_maturity(self.name, context, context.end + self.delay, {self.label: str(self.delay)})
        if pending is not None:
            return pending
        slot, version = self.params.slot_column, self.version
        # The window's label profile (no rows): slot groups, and the slot x version pair's sums as "slot|version".
        profile, bad = context.label_profile(LabelSpec(self.prediction, self.label, (slot,), ((slot, version),)))
        crossed = profile.pair_table(slot, version)
        tables = {OVERALL: profile.table(OVERALL), slot: profile.table(slot),
                  CROSS: replace(crossed, values=["|".join(map(str, v)) for v in crossed.values])}
        profile = replace(profile, spec=LabelSpec(self.prediction, self.label, (slot, CROSS)), tables=tables)
        result = self.statistic.fit(None).evaluate(profile, prediction=self.prediction, label=self.label)
        details = dict(result.details)
        details["cells"] = [cell(s, slot) for s in details["segments"]]
        result = result.with_updates(details=details, metrics=points(details["cells"]), **context.result_context)
        return result.with_updates(partial=True, bad_files=bad) if bad else result


def cell(segment: dict, slot: str) -> dict:
    """One row of the table: slot, version (or "" for a slot across versions), CTRs and the ratio."""
    value = str(segment["value"])
    if segment["segment"] == CROSS and "|" in value:
        slot_value, version = value.split("|", 1)
    elif segment["segment"] == CROSS:  # the pooled (other) cell
        slot_value, version = value, value
    else:
        slot_value, version = value, ""
    return {"slot": slot_value, "version": version, "rows": segment["count"],
            "observed_ctr": segment["observed_rate"], "predicted_ctr": segment["predicted_rate"],
            "calibration_ratio": segment["calibration_ratio"], "ci_low": segment["ci_low"],
            "ci_high": segment["ci_high"], "status": segment["status"]}


def points(cells: list[dict]) -> tuple[MetricPoint, ...]:
    out = []
    for c in cells:
        labels = (("slot", c["slot"]), ("version", c["version"]))
        for name, key, text in (("slot_calibration_ratio", "calibration_ratio", "sum(p)/sum(y) in the slot"),
                                ("slot_calibration_ratio_low", "ci_low", "lower end of its 95% interval"),
                                ("slot_calibration_ratio_high", "ci_high", "upper end of its 95% interval"),
                                ("slot_ctr_observed", "observed_ctr", "observed CTR in the slot"),
                                ("slot_ctr_predicted", "predicted_ctr", "mean predicted CTR in the slot")):
            value = c[key]
            if value is not None and np.isfinite(value):
                out.append(MetricPoint(name, float(value), labels, text))
    return tuple(out)


@register_check("slot_calibration", params=SlotCalibrationParams, needs=("rows", "labels"),
                exports=EXPORTED,
                summary="observed vs predicted CTR and calibration ratio per slot x model version")
def slot_calibration_check(model_config, params: SlotCalibrationParams | None = None) -> SlotCalibrationCheck:
    return SlotCalibrationCheck(model_config, params or SlotCalibrationParams())
