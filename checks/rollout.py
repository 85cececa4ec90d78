"""`rollout`: is the candidate model serving beside the control safe to keep, stop or promote?

Each look (a scheduled window, or `driftline rollout status`) covers the serving logs from the
rollout's start (`started`, else the window's start) to the window's end, split by the version
column into control and candidate. A scheduled job adds its window to the sums of the previous
look of the same rollout and length, stored under the window before (rows that arrive late
into an already judged window are not counted then); without one it reads the whole span.
The cumulative sums are judged with the always-valid sequential test of checks.sequential: `stop` (status alert), `continue` or `promote` (status ok),
with the error rate alpha holding however often the job looks. A look whose labels have not
matured is `pending`; an arm with fewer than `min_impressions` rows is `insufficient_data`.

It exports `driftline_rollout_decision` (-1 stop, 0 continue, 1 promote), per metric the
candidate-minus-control difference relative to the control with its interval
(`driftline_rollout_lift`, `_lift_low`, `_lift_high`; calibration: the candidate's ratio
sum(p)/sum(y) as `driftline_rollout_calibration_ratio`, `_low`, `_high`) and the candidate's
traffic share, labelled by control, candidate and `stage` (from the config).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from checks.labelled import label_maturity, numeric, prediction_pairs, window_table
from checks.sequential import DECISIONS, STOP, ArmSums, Rules, judge
from core.checks import CheckParams, WindowCheck, register_check
from core.errors import ConfigError, SchemaError
from core.results import CheckResult, MetricPoint

Metric = Literal["ctr", "calibration", "revenue"]
# The MetricPoint names results of this check declare (the dashboards query these).
EXPORTED = ("rollout_decision", "rollout_candidate_share", "rollout_lift", "rollout_lift_low", "rollout_lift_high",
            "rollout_calibration_ratio", "rollout_calibration_ratio_low", "rollout_calibration_ratio_high")


class RolloutParams(CheckParams):
    enabled: bool = False
    control: str | None = Field(default=None, description="the control's value in the version column")
    candidate: str | None = Field(default=None, description="the candidate's value in the version column")
    version_column: str | None = Field(default=None, description="default: schema.model_version")
    stage: str = Field(default="", description="a label for the rollout stage on /metrics: shadow, 5%, 50%, ...")
    started: datetime | None = Field(
        default=None, description="rollout start: every look reads [started, window end); default: the window")
    prediction: str | None = Field(default=None, description="default: the first of schema.predictions")
    label: str | None = Field(default=None, description="default: the label paired with the prediction")
    price_column: str | None = Field(default=None, description="price of the shown offer: revenue = price x click")
    metrics: list[Metric] | None = Field(
        default=None, description="default: ctr and calibration, and revenue when price_column is set")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="error rate of the whole rollout, split over metrics")
    effect: float = Field(default=0.05, gt=0, description="relative difference the test is tuned to find fastest")
    margin: float = Field(default=0.02, ge=0, description="promote when CTR and revenue are proven no worse than this")
    calibration_tolerance: float = Field(default=0.1, gt=0, description="candidate ratio band [1/(1+t), 1+t]")
    min_impressions: int = Field(default=1000, ge=1, description="per arm, before any decision")

    @model_validator(mode="after")
    def _revenue_needs_price(self):
        if self.metrics is not None and "revenue" in self.metrics and not self.price_column:
            raise ValueError("metrics: revenue needs price_column")
        if self.metrics is not None and not self.metrics:
            raise ValueError("metrics: at least one is needed")
        return self

    def rules(self) -> Rules:
        metrics = tuple(self.metrics or (["ctr", "calibration"] + (["revenue"] if self.price_column else [])))
        return Rules(self.alpha, metrics, self.effect, self.margin, self.calibration_tolerance, self.min_impressions)


class RolloutCheck(WindowCheck):
    name = "rollout"

    def __init__(self, model_config, params: RolloutParams) -> None:
        where = f"models.{model_config.name}.checks.rollout"
        if not params.control or not params.candidate or params.control == params.candidate:
            raise ConfigError(f"{where}: set control and candidate to two different model versions")
        self.version = params.version_column or model_config.model_schema.model_version
        if not self.version:
            raise ConfigError(f"{where}.version_column: not set, and schema.model_version is empty")
        mapping = {params.prediction: params.label} if params.prediction and params.label else {}
        pairs = prediction_pairs(model_config, mapping)
        if params.prediction and not params.label:
            pairs = [p for p in pairs if p[0] == params.prediction]
            if not pairs:
                raise ConfigError(f"{where}.prediction: '{params.prediction}' is not paired with a label "
                                  "in the schema (set label too)")
        self.prediction, self.label, self.delay = pairs[0]
        self.params = params
        self.rules = params.rules()

    def run(self, context) -> CheckResult:
        pending = label_maturity(self.name, context, context.end + self.delay, {self.label: str(self.delay)})
        if pending is not None:
            return pending
        start = self.params.started or context.start
        start = start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start
        source = context.serving_source()
        columns = [self.version, self.prediction, self.label] + ([self.params.price_column]
                                                                 if self.params.price_column else [])
        where = f"{source.location} (window)"
        fingerprint = self.fingerprint(start)
        carried = self.previous(context, start, fingerprint)
        table = window_table(source, columns, context.start if carried else start, context.end, where, "rollout")
        control = arm_sums(table, self, self.params.control, where)
        candidate = arm_sums(table, self, self.params.candidate, where)
        if carried:
            control, candidate = carried[0] + control, carried[1] + candidate
        result = rollout_result(self.params, self.rules, control, candidate, start, context.end,
                                context.result_context)
        details = dict(result.details, fingerprint=fingerprint,
                       carried_from=None if not carried else carried[2])
        return result.with_updates(details=details)

    def fingerprint(self, start: datetime) -> str:
        """What the cumulative sums depend on: a stored look with another fingerprint is not reused."""
        p = self.params
        return json.dumps([p.control, p.candidate, self.version, self.prediction, self.label, p.price_column,
                           start.isoformat()])

    def previous(self, context, start: datetime, fingerprint: str):
        """(control, candidate, window) sums of the stored look that ended where this window starts,
        when it is of the same length and rollout: a scheduled job then reads one window per look
        instead of the whole rollout. Anything else (no store, no such look, pending, error,
        another rollout) reads from the rollout's start."""
        store = getattr(context, "store", None)
        length = context.end - context.start
        if store is None or context.start <= start or context.start - length < start:
            return None
        try:
            before = store.get_result(context.model.name, self.name, context.start - length, context.start)
        except Exception:  # an unreadable store only costs the shortcut
            return None
        details = before.details if before is not None else {}
        if before is None or before.status in ("pending", "error") or details.get("fingerprint") != fingerprint:
            return None
        arms = details.get("arms") or {}
        try:
            return (ArmSums(**arms["control"]), ArmSums(**arms["candidate"]),
                    f"{before.window_start}/{before.window_end}")
        except (KeyError, TypeError):
            return None


def arm_sums(table: pa.Table, check: RolloutCheck, version: str, where: str) -> ArmSums:
    """The cumulative sums of one version's rows (rows without a label or a score are skipped)."""
    mask = pc.fill_null(pc.equal(pc.cast(table.column(check.version), pa.string()), version), False)
    rows = table.filter(mask)
    scores = numeric(rows, check.prediction, where, "prediction")
    labels = numeric(rows, check.label, where, "label")
    price = numeric(rows, check.params.price_column, where, "price") if check.params.price_column else None
    valid = np.isfinite(scores) & np.isfinite(labels) & (True if price is None else np.isfinite(price))
    if valid.any() and (scores[valid].min() < 0 or scores[valid].max() > 1):
        raise SchemaError(f"{where}: prediction column '{check.prediction}' has values outside [0, 1]")
    if np.setdiff1d(np.unique(labels[valid]), [0.0, 1.0]).size:
        raise SchemaError(f"{where}: label column '{check.label}' must hold 0/1")
    return ArmSums.of(labels[valid], scores[valid], None if price is None else price[valid])


def rollout_result(params: RolloutParams, rules: Rules, control: ArmSums, candidate: ArmSums, start: datetime,
                   end: datetime, result_context: dict) -> CheckResult:
    verdict = judge(control, candidate, rules)
    code = int(verdict["decision"])
    enough = min(control.impressions, candidate.impressions) >= rules.min_impressions
    status = "alert" if code == STOP else ("ok" if enough else "insufficient_data")
    metrics = {}
    for name in rules.metrics:
        metrics[name] = {k: (bool(v) if v.dtype == bool else float(v)) for k, v in
                         ((k, np.asarray(v)) for k, v in verdict[name].items())}
    total = control.impressions + candidate.impressions
    details = {
        "decision": DECISIONS[code],
        "control": params.control,
        "candidate": params.candidate,
        "stage": params.stage,
        "started": start.isoformat(),
        "look": end.isoformat(),
        "hours": (end - start).total_seconds() / 3600.0,
        "alpha": rules.alpha,
        "per_metric_alpha": rules.per_metric_alpha,
        "margin": rules.margin,
        "calibration_tolerance": rules.calibration_tolerance,
        "candidate_share": candidate.impressions / total if total else None,
        "arms": {"control": control.to_dict(), "candidate": candidate.to_dict()},
        "metrics": metrics,
        "harmful": [m for m in rules.metrics if metrics[m]["harmful"]],
    }
    return CheckResult(check="rollout", status=status, current_rows=int(total), details=details,
                       metrics=metric_points(details), **result_context)


def metric_points(details: dict) -> tuple[MetricPoint, ...]:
    base = (("candidate", details["candidate"]), ("control", details["control"]), ("stage", details["stage"]))
    code = {v: k for k, v in DECISIONS.items()}[details["decision"]]
    points = [MetricPoint("rollout_decision", float(code), base, "-1 stop, 0 continue, 1 promote")]
    if details["candidate_share"] is not None:
        points.append(MetricPoint("rollout_candidate_share", details["candidate_share"], base,
                                  "candidate's share of the rollout's impressions"))
    for name, m in details["metrics"].items():
        labels = tuple(sorted(base + (("metric", name),)))
        if name == "calibration":
            for suffix, key in (("", "estimate"), ("_low", "low"), ("_high", "high")):
                points.append(MetricPoint(f"rollout_calibration_ratio{suffix}", m[key], base,
                                          "candidate sum(p)/sum(y), always-valid interval"))
            continue
        for suffix, key in (("", "relative"), ("_low", "relative_low"), ("_high", "relative_high")):
            points.append(MetricPoint(f"rollout_lift{suffix}", m[key], labels,
                                      "candidate minus control, relative to the control, always-valid interval"))
    return tuple(p for p in points if np.isfinite(p.value))  # no ratio to a control without clicks


@register_check("rollout", params=RolloutParams, needs=("rows", "labels"),
                exports=EXPORTED,
                summary="control vs candidate model version: always-valid stop / continue / promote")
def rollout_check(model_config, params: RolloutParams | None = None) -> RolloutCheck:
    return RolloutCheck(model_config, params or RolloutParams())
