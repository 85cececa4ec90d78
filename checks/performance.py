"""Performance with delayed labels: AUC, log loss, normalised entropy and calibration ratio.

Runs per window once its labels have matured (checks.labelled: `pending` until then),
overall and per segment (top-N values + `(other)`), against the same metrics on the scored
reference (validation) data. Three comparisons per group, each significant-beyond-tolerance
(checks.thresholds): the AUC drop (DeLong errors), the rise of normalised entropy
(log loss over the entropy of the window's base rate, He et al. 2014), and the change of
the calibration ratio sum(p)/sum(y) (exact Poisson-rate interval). The overall group has
its own budget; all segment comparisons share one (Benjamini-Hochberg).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


from checks import metrics, profile_metrics
from checks.labelled import LabelledWindowCheck, Rows, fit_cached, named_stats, profile_of, top_names
from core.label_profile import GroupStats, LabelProfile
from core.results import CheckResult, worst_status
from core.checks import register_check
from checks.settings import PerformanceCheckConfig
from checks.thresholds import (
    DEFAULT_CAP,
    MIN_SPREAD_CHUNKS,
    SPREAD_K,
    Tolerance,
    decide,
    excess_spread,
    gated_p,
    learn_tolerance,
    one_sided_p,
    spread_tolerance,
    tolerance_notes,
    validate_mode,
)
from core.errors import ConfigError

METRICS = ("auc_drop", "ne_rise", "calibration")


def group_metrics(stats: "GroupStats | Rows") -> dict:
    """The metrics of one group, with the standard errors the comparisons need (from its label
    profile statistics; reference chunks given as rows are profiled first)."""
    if isinstance(stats, Rows):
        stats = profile_of(stats).overall()
    count = stats.count
    positives = stats.positives
    if count == 0:
        return {"count": 0, "positives": 0.0}
    auc, auc_bound, auc_se = profile_metrics.auc_of(stats)
    log_loss, log_loss_se = profile_metrics.log_loss(stats)
    base = metrics.entropy(positives / count)
    predicted = stats.predicted
    return {
        "count": count,
        "positives": positives,
        "predicted_positives": predicted,
        "auc": auc,
        "auc_bound": None if auc is None else auc_bound,  # |binned AUC - the rows' AUC| <= this
        "auc_se": auc_se,
        "log_loss": log_loss,
        "log_loss_se": log_loss_se,
        "ne": log_loss / base if base > 0 else None,
        "ne_se": log_loss_se / base if base > 0 else None,
        "brier": profile_metrics.brier(stats),
        "calibration_ratio": predicted / positives if positives > 0 else math.inf,
    }


@dataclass(frozen=True)
class PerformanceCheck:
    """Parameters only; `fit(reference_rows)` then `evaluate(current_rows)`."""

    name: str = "performance"
    segments: tuple[str, ...] = ()
    top_n: int = 10
    min_rows: int = 500
    min_positives: float = 20
    auc_drop: tuple[float, float] = (0.02, 0.05)
    ne_rise: tuple[float, float] = (0.02, 0.05)
    calibration: tuple[float, float] = (0.025, 0.05)
    threshold_mode: Literal["static", "learned", "spread"] = "spread"
    alpha: float = 0.05
    chunks: int = 10
    learned_cap: float = DEFAULT_CAP
    spread_k: tuple[float, float] = SPREAD_K
    min_spread_chunks: int = MIN_SPREAD_CHUNKS

    def __post_init__(self) -> None:
        for pair in (self.auc_drop, self.ne_rise, self.calibration, self.spread_k):
            Tolerance(*pair)
        validate_mode(self.threshold_mode, self.learned_cap)

    def fit(self, reference: Rows) -> "FittedPerformance":
        if reference.count == 0:
            raise ConfigError("performance: the scored reference has no rows with a prediction and a label")
        profile = profile_of(reference, self.segments)
        overall = group_metrics(profile.overall())
        tolerances = {name: Tolerance(*getattr(self, name)) for name in METRICS}
        if self.threshold_mode == "learned":
            tolerances = self._learn(reference, overall, tolerances)
        return FittedPerformance(self, overall, reference, tolerances, reference_profile=profile)

    def _learn(self, reference: Rows, overall: dict, static: dict) -> dict:
        from checks.calibration import Totals, learned_ratio_tolerance

        chunks = [group_metrics(c) for c in reference.chunks(self.chunks)]
        auc = [(c.get("auc"), c.get("auc_se")) for c in chunks if c.get("auc") is not None]
        ne = [(c["ne"], c["ne_se"]) for c in chunks if c.get("ne") is not None]
        learned = dict(static)
        if auc and overall.get("auc") is not None:
            learned["auc_drop"] = learn_tolerance(static["auc_drop"].pair, [overall["auc"] - a for a, _ in auc],
                                                  [s * s for _, s in auc], cap=self.learned_cap)
        if ne and overall.get("ne") is not None:
            learned["ne_rise"] = learn_tolerance(static["ne_rise"].pair, [n - overall["ne"] for n, _ in ne],
                                                 [s * s for _, s in ne], cap=self.learned_cap)
        learned["calibration"] = learned_ratio_tolerance(reference, Totals.of(reference), static["calibration"].pair,
                                                         self.chunks, self.learned_cap)
        return learned


@dataclass(frozen=True)
class FittedPerformance:
    check: PerformanceCheck
    reference: dict
    reference_rows: Rows | None = None  # cut into chunks of a window's size (spread mode)
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    reference_profile: LabelProfile | None = None  # segments are grouped like the current window's
    _spread_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def spread_tolerances(self, current: dict) -> tuple[dict[str, Tolerance] | None, str]:
        """Spread mode: tolerances from the reference's chunk-to-chunk spread at the window's size.

        Returns (tolerances, mode): None and a `static (...)` mode when the reference holds
        fewer than `min_spread_chunks` chunks of the window's size."""
        check, rows, n = self.check, self.reference_rows, current.get("count", 0)
        chunks = rows.count // n if rows is not None and n else 0
        if chunks < check.min_spread_chunks:
            return None, (f"static (the spread mode needs {check.min_spread_chunks} reference chunks of "
                          f"{n} rows; the reference holds {chunks})")
        if n not in self._spread_cache:
            from checks.calibration import ratio_excess

            parts = [group_metrics(c) for c in rows.chunks(chunks)]
            ref = self.reference
            auc = [(ref["auc"] - p["auc"], p["auc_se"] ** 2) for p in parts
                   if p.get("auc") is not None and ref.get("auc") is not None]
            ne = [(p["ne"] - ref["ne"], p["ne_se"] ** 2) for p in parts
                  if p.get("ne") is not None and ref.get("ne") is not None]
            self._spread_cache[n] = {
                "auc_drop": excess_spread(*zip(*auc)) if auc else None,
                "ne_rise": excess_spread(*zip(*ne)) if ne else None,
                "calibration": ratio_excess(rows, chunks),
            }
        excess, ref = self._spread_cache[n], self.reference
        sampling = {
            "auc_drop": math.hypot(current.get("auc_se") or math.nan, ref.get("auc_se") or math.nan),
            "ne_rise": math.hypot(current.get("ne_se") or math.nan, ref.get("ne_se") or math.nan),
            "calibration": math.sqrt(1 / max(current.get("positives", 0), 1) + 1 / max(ref.get("positives", 0), 1)),
        }
        tolerances = {}
        for name in METRICS:
            tol = spread_tolerance(excess[name], sampling[name], check.spread_k)
            if name == "calibration" and tol is not None:  # a std of log(ratio): a band on the ratio
                tol = Tolerance(math.expm1(tol.warn), math.expm1(tol.alert), sigma=tol.sigma)
            tolerances[name] = tol or self.tolerances[name]
        return tolerances, f"spread ({chunks} reference chunks of {n} rows)"

    def _pvalues(self, cur: dict, ref: dict | None, tolerances: dict | None = None) -> dict[str, tuple[float, float]]:
        """(p_warn, p_alert) per metric; NaN where the metric cannot be compared.

        A spread-mode tolerance (one with a sigma) is a noise band: the effect must reach it
        and be significantly above zero; a static or learned one must be significantly exceeded."""
        nan = (math.nan, math.nan)
        out = {name: nan for name in METRICS}
        if ref is None or not ref.get("count") or not cur.get("count"):
            return out
        tol = tolerances or self.tolerances

        def pair(name, effect, p_of):
            t = tol[name]
            if t.sigma is None:
                return float(p_of(t.warn)), float(p_of(t.alert))
            p_zero = float(p_of(0.0))
            size = abs(effect) if name == "calibration" else effect
            warn, alert = (math.log1p(t.warn), math.log1p(t.alert)) if name == "calibration" else t.pair
            return gated_p(size, p_zero, warn), gated_p(size, p_zero, alert)

        if cur.get("auc") is not None and ref.get("auc") is not None:
            drop = ref["auc"] - cur["auc"]
            se = math.hypot(cur["auc_se"], ref["auc_se"])
            out["auc_drop"] = pair("auc_drop", drop, lambda t: one_sided_p(drop, se, t))
        if cur.get("ne") is not None and ref.get("ne") is not None:
            rise = cur["ne"] - ref["ne"]
            se = math.hypot(cur["ne_se"], ref["ne_se"])
            out["ne_rise"] = pair("ne_rise", rise, lambda t: one_sided_p(rise, se, t))
        args = (cur["positives"], cur["predicted_positives"], ref["positives"], ref["predicted_positives"])
        change = _log_ratio_change(*args)
        out["calibration"] = pair("calibration", change, lambda t: metrics.band_pvalues(*args, t))
        return out

    def _enough(self, cur: dict) -> bool:
        check = self.check
        return cur.get("count", 0) >= check.min_rows and cur.get("predicted_positives", 0) >= check.min_positives

    def evaluate(self, current: Rows | LabelProfile, prediction: str | None = None, label: str | None = None,
                 **context) -> CheckResult:
        current = profile_of(current, self.check.segments)
        overall = group_metrics(current.overall())
        overall["reference"] = _public(self.reference)
        groups = [(overall, self.reference)]
        for column in self.check.segments:
            table = current.table(column)
            names = top_names(table, self.check.top_n)
            refs = named_stats(self.reference_profile.table(column), names)
            for value, group, ref_group in zip(names, named_stats(table, names), refs):
                entry = {"segment": column, "value": value, **group_metrics(group)}
                ref = group_metrics(ref_group)
                enough_ref = ref is not None and ref.get("predicted_positives", 0) >= self.check.min_positives
                entry["reference"] = _public(ref)
                groups.append((entry, ref if enough_ref else None))
        overall_tolerances, mode = (None, self.check.threshold_mode)
        if self.check.threshold_mode == "spread":
            overall_tolerances, mode = self.spread_tolerances(overall)
        self._judge(groups[:1], overall_tolerances)
        self._judge(groups[1:])
        segments = [g for g, _ in groups[1:]]
        details = {
            "prediction": prediction,
            "label": label,
            "threshold_mode": mode,
            "tolerances": {k: t.to_dict() for k, t in (overall_tolerances or self.tolerances).items()},
            "tolerance_notes": tolerance_notes(self.tolerances),
            "alpha": self.check.alpha,
            "dropped_rows": current.dropped,
            "overall": _public(overall),
            "segments": [_public(s) for s in segments],
            "segments_alert": [f"{s['segment']}={s['value']}" for s in segments if s["status"] == "alert"],
        }
        statuses = [overall["status"]] + [s["status"] for s in segments]
        return CheckResult(check=self.check.name, status=worst_status(statuses), reference_rows=self.reference["count"],
                           current_rows=current.count, details=details, **context)

    def _judge(self, groups: list[tuple[dict, dict | None]], tolerances: dict | None = None) -> None:
        """Statuses for one family of groups: BH over every (group, metric) comparison."""
        cells = []
        for entry, ref in groups:
            pvalues = self._pvalues(entry, ref, tolerances) if self._enough(entry) else {
                m: (math.nan, math.nan) for m in METRICS}
            cells.extend((entry, name, pw, pa) for name, (pw, pa) in pvalues.items())
        statuses = decide([c[2] for c in cells], [c[3] for c in cells], self.check.alpha)
        for entry, _, _, _ in cells:
            entry["statuses"] = {}
        for (entry, name, _, _), status in zip(cells, statuses):
            entry["statuses"][name] = status
        for entry, _ in groups:
            entry["status"] = worst_status(entry["statuses"].values())


def _log_ratio_change(observed, expected, ref_observed, ref_expected) -> float:
    """log of the change of sum(p)/sum(y) against the reference (NaN when a count is 0)."""
    if min(observed, expected, ref_observed, ref_expected) <= 0:
        return math.nan
    return math.log((expected / observed) / (ref_expected / ref_observed))


def _public(entry: dict | None) -> dict | None:
    return None if entry is None else {k: v for k, v in entry.items() if not k.startswith("_")}


class PerformanceWindowCheck(LabelledWindowCheck):
    name = "performance"

    def evaluate_pair(self, prediction, label, reference, current, context) -> CheckResult:
        params = self.config.check_params() if self.config is not None else {}
        check = PerformanceCheck(name=self.name, segments=tuple(self.segments), **params)
        return fit_cached(context, check, reference).evaluate(current, prediction=prediction, label=label)


@register_check("performance", params=PerformanceCheckConfig, needs=("rows", "labels"),
                exports=("auc", "normalized_entropy", "calibration_ratio"),
                summary="AUC, log loss, NE and calibration ratio vs the scored reference")
def performance_check(model_config, check_config=None) -> PerformanceWindowCheck:
    return PerformanceWindowCheck(model_config, check_config)
