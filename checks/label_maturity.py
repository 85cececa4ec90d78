"""`label_maturity`: calibration on windows whose conversions are still arriving, and alerts when
the way they arrive changes (a tracking or attribution break).

Needs a column with the time each positive label arrived (`arrival_column`; null: none yet or
negative). Per window, at the run's `now`:

1. the maturity curve is learned from matured serving history (events in
   [now - horizon - history, now - horizon)), per `segment` value when it has enough positives;
2. the window's positives so far are compared with sum p * F(age) (checks/maturity.py): the
   calibration change with an interval that includes the curve's uncertainty, and the
   expected eventual positives - instead of `pending` until every label matured;
3. the arrivals of the window's positives are tested against the curve; a shift alerts on its
   own and marks the calibration reading as not trusted (late arrivals look like a decay).

The baseline ratio (observed / predicted positives) is the scored reference's (as for
`calibration`), else the matured history's (`details.baseline` says which).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from checks.maturity import DEFAULT_GRID_HOURS, MaturityCurve, curve_shift, immature_calibration
from core.checks import CheckParams, WindowCheck, register_check
from core.errors import ConfigError, SchemaError
from core.results import CheckResult, MetricPoint, worst_status
from core.settings import Pair

_HOUR_US = 3600e6


class LabelMaturityParams(CheckParams):
    enabled: bool = False
    prediction: str | None = Field(default=None, description="default: the schema's first prediction")
    label: str | None = Field(default=None, description="default: the schema's last label (the slowest)")
    arrival_column: str = Field(default="", description="when each positive label arrived (timestamp)")
    horizon_hours: float = Field(default=168.0, gt=0, description="labels arriving later never count")
    history_days: float = Field(default=14.0, gt=0, description="matured history the curve is learned from")
    segment: str | None = Field(default=None, description="learn one curve per value of this column")
    min_curve_positives: int = Field(default=200, ge=10, description="fewer per segment: the overall curve")
    thresholds: Pair = Field(default=(0.025, 0.05), description="[warn, alert] on the calibration ratio change")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_positives: float = Field(default=20, gt=0, description="fewer positives so far: insufficient_data")
    shift_alpha: float = Field(default=0.01, gt=0, lt=1, description="curve shift: KS p-value below this ...")
    shift_min_distance: float = Field(default=0.1, gt=0, lt=1, description="... and KS distance above this")


class LabelMaturityCheck(WindowCheck):
    name = "label_maturity"

    def __init__(self, model_config, params: LabelMaturityParams) -> None:
        self.params = params
        schema = model_config.model_schema
        key = f"models.{model_config.name}.checks.label_maturity"
        self.prediction = params.prediction or (schema.predictions[0] if schema.predictions else None)
        self.label = params.label or (schema.labels[-1].name if schema.labels else None)
        self.timestamp = schema.timestamp
        if params.enabled and not (self.prediction and self.label and params.arrival_column):
            raise ConfigError(f"{key}: needs a prediction, a label and arrival_column")
        self.grid = tuple(g for g in DEFAULT_GRID_HOURS if g < params.horizon_hours) + (params.horizon_hours,)

    def _read(self, source, start: datetime, end: datetime) -> dict[str, np.ndarray]:
        p = self.params
        columns = [self.timestamp, self.prediction, self.label, p.arrival_column] + ([p.segment] if p.segment else [])
        for column in columns:
            if column not in source.schema.names:
                raise SchemaError(f"{source.location}: label_maturity column '{column}' is missing")
        batches = list(source.batches(columns, start, end))
        table = pa.Table.from_batches(batches) if batches else source.schema.empty_table()

        def micros(name: str) -> np.ndarray:
            column = table.column(name)
            if not pa.types.is_timestamp(column.type):
                raise SchemaError(f"{source.location}: label_maturity column '{name}' must be a timestamp, "
                                  f"found {column.type}")
            values = pc.cast(column, pa.timestamp("us", tz=column.type.tz)).to_numpy(zero_copy_only=False)
            return values.astype("datetime64[us]").astype(np.int64).astype(np.float64) * np.where(
                np.isnat(values), np.nan, 1.0)

        scores = table.column(self.prediction).to_numpy(zero_copy_only=False).astype(np.float64)
        labels = table.column(self.label).to_numpy(zero_copy_only=False).astype(np.float64)
        valid = np.isfinite(scores) & np.isfinite(labels)
        out = {"ts": micros(self.timestamp)[valid], "arrival": micros(p.arrival_column)[valid],
               "score": scores[valid], "label": labels[valid]}
        out["segment"] = (None if not p.segment else
                          np.asarray(pc.fill_null(pc.cast(table.column(p.segment), pa.string()), "(null)")
                                     .to_numpy(zero_copy_only=False), dtype=object)[valid])
        return out

    def _baseline(self, window, history_ratio: float, history_positives: float) -> tuple[float, float, str]:
        """(observed / predicted positives, positives it rests on, where from): the scored reference
        (held-out, matured), else the matured history."""
        from checks.labelled import _reference_rows

        try:
            rows = _reference_rows(window, self.prediction, self.label, [])
        except SchemaError:
            return history_ratio, history_positives, "history"
        if rows.positives < self.params.min_positives or rows.scores.sum() <= 0:
            return history_ratio, history_positives, "history"
        return rows.positives / float(rows.scores.sum()), rows.positives, "reference"

    def run(self, window) -> CheckResult:
        p = self.params
        now = getattr(window, "now", None) or datetime.now(timezone.utc)
        now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
        horizon = timedelta(hours=p.horizon_hours)
        source = window.serving_source()
        history_end = min(now - horizon, window.start)
        history = self._read(source, history_end - timedelta(days=p.history_days), history_end)
        current = self._read(source, window.start, window.end)
        now_us = (now - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)
        base = {"prediction": self.prediction, "label": self.label, "now": now.isoformat(),
                "history_rows": int(len(history["score"]))}

        def arrived(rows) -> tuple[np.ndarray, np.ndarray]:
            delay = (rows["arrival"] - rows["ts"]) / _HOUR_US
            hit = (rows["label"] > 0) & (rows["arrival"] <= now_us) & (delay <= p.horizon_hours)
            return hit, delay

        hit, delay = arrived(history)
        if hit.sum() < p.min_curve_positives:
            return CheckResult(check=self.name, status="insufficient_data", current_rows=len(current["score"]),
                               details={**base, "reason": f"{int(hit.sum())} matured positives in the history "
                                                          f"(fewer than {p.min_curve_positives})"},
                               **window.result_context)
        curve = MaturityCurve.learn(delay[hit], self.grid, None if p.segment is None else history["segment"][hit],
                                    p.min_curve_positives)
        reference_ratio, reference_positives, base["baseline"] = self._baseline(
            window, float(hit.sum() / history["score"].sum()), float(hit.sum()))
        hit, delay = arrived(current)
        ages = (now_us - current["ts"]) / _HOUR_US
        segments = current["segment"]
        calibration = immature_calibration(current["score"], hit, ages, curve, segments, reference_ratio,
                                           tuple(p.thresholds), p.alpha, p.min_positives, reference_positives)
        shift = curve_shift(delay[hit], ages[hit], curve, None if segments is None else segments[hit],
                            p.shift_alpha, p.shift_min_distance)
        trusted = shift["status"] != "alert"
        details = {**base, "reference_ratio": reference_ratio, "curve": curve.to_dict(),
                   "calibration": {**calibration, "trusted": trusted}, "curve_shift": shift}
        if not trusted:
            details["reason"] = (f"positives arrive {shift['direction']} than the maturity curve says (KS "
                                 f"{shift['ks_distance']:.2f}): a tracking or attribution break; the immature "
                                 "calibration reading is not trusted")
        status = worst_status([calibration["status"], shift["status"]])
        return CheckResult(check=self.name, status=status, current_rows=calibration["rows"],
                           reference_rows=base["history_rows"], details=details,
                           metrics=_points(self.label, calibration, shift), **window.result_context)


DECLARED_METRICS = ("label_maturity_share", "label_expected_eventual_positives", "label_immature_ratio_change",
                    "label_curve_ks_distance")


def _points(label: str, calibration: dict, shift: dict) -> tuple[MetricPoint, ...]:
    labels = (("label", label),)
    values = [
        ("label_maturity_share", calibration.get("maturity"),
         "Share of the window's eventual positives expected to have arrived by now (maturity curve)."),
        ("label_expected_eventual_positives", calibration.get("expected_eventual_positives"),
         "Positives the window is expected to reach once its labels mature."),
        ("label_immature_ratio_change", calibration.get("relative_ratio"),
         "Calibration ratio change vs the matured history, corrected for label maturity."),
        ("label_curve_ks_distance", shift.get("ks_distance"),
         "KS distance between the window's label arrivals and the maturity curve."),
    ]
    return tuple(MetricPoint(name, float(value), labels, text) for name, value, text in values
                 if value is not None and math.isfinite(value))


@register_check("label_maturity", params=LabelMaturityParams, needs=("rows", "labels"),
                exports=DECLARED_METRICS,
                summary="calibration on immature windows via the learned label-maturity curve; curve shifts")
def label_maturity_check(model_config, params: LabelMaturityParams) -> LabelMaturityCheck:
    return LabelMaturityCheck(model_config, params)
