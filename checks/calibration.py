"""Calibration decay: does the predicted CTR still equal the observed CTR?

Per prediction/label pair, overall and per segment (top-N values of each configured
column plus `(other)`): the calibration ratio sum(p) / sum(y) with an exact interval,
ECE over equal-mass bins (with counts), the Brier score and reliability-curve points.

Decay is the change of the ratio against the same group's ratio on the scored
reference (validation) data, with the exact interval for a ratio of two Poisson rates;
without a reference, against 1. The status alerts when that interval leaves the alert
band [1/(1+t), 1+t] (warn: the warn band). Segments share one noise budget
(Benjamini-Hochberg over all segment comparisons); a segment with fewer rows or
predicted clicks than the minimum is `insufficient_data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from checks import metrics, profile_metrics
from checks.labelled import LabelledWindowCheck, Rows, fit_cached, named_stats, profile_of, top_names
from core.label_profile import GroupStats, LabelProfile
from core.results import CheckResult, worst_status
from core.checks import register_check
from checks.settings import CalibrationCheckConfig
from checks.thresholds import (
    DEFAULT_CAP,
    MIN_SPREAD_CHUNKS,
    SPREAD_K,
    Tolerance,
    decide,
    excess_spread,
    gated_p,
    learn_tolerance,
    spread_tolerance,
    tolerance_notes,
    validate_mode,
)


@dataclass(frozen=True)
class Totals:
    """Predicted and observed clicks of one group."""

    count: int
    expected: float
    observed: float

    @classmethod
    def of(cls, rows: Rows, mask: np.ndarray | None = None) -> "Totals":
        """Of reference rows (chunks for the spread and learned modes)."""
        if mask is None:
            return cls(rows.count, math.fsum(rows.scores), rows.positives)
        return cls(int(mask.sum()), math.fsum(rows.scores[mask]), float(rows.labels[mask].sum()))

    @classmethod
    def of_stats(cls, stats: GroupStats) -> "Totals":
        return cls(stats.count, stats.predicted, stats.positives)


def summary(stats: GroupStats, n_bins: int, alpha: float) -> dict:
    """Calibration of one group on its own: ratio with exact interval, ECE, Brier, reliability."""
    count = stats.count
    expected = stats.predicted
    observed = stats.positives
    low, high = metrics.poisson_interval(observed, alpha)
    curve = profile_metrics.reliability(stats, n_bins)
    return {
        "count": count,
        "positives": observed,
        "predicted_positives": expected,
        "observed_rate": observed / count if count else None,
        "predicted_rate": expected / count if count else None,
        "calibration_ratio": expected / observed if observed > 0 else math.inf,
        # Garwood interval on the click count, turned into one on sum(p) / sum(y).
        "ci_low": expected / high if count else None,
        "ci_high": expected / low if low > 0 else math.inf,
        "ece": curve["ece"],
        "brier": profile_metrics.brier(stats),
        "reliability": {k: curve[k] for k in ("mean_predicted", "observed_rate", "counts")},
    }


@dataclass(frozen=True)
class CalibrationCheck:
    """Parameters only; `fit(reference_rows)` then `evaluate(current_rows)`."""

    name: str = "calibration"
    segments: tuple[str, ...] = ()
    top_n: int = 10
    min_rows: int = 500
    min_positives: float = 20
    n_bins: int = 10
    thresholds: tuple[float, float] = (0.025, 0.05)
    threshold_mode: Literal["static", "learned", "spread"] = "spread"
    alpha: float = 0.05
    chunks: int = 10
    learned_cap: float = DEFAULT_CAP
    spread_k: tuple[float, float] = SPREAD_K
    min_spread_chunks: int = MIN_SPREAD_CHUNKS

    def __post_init__(self) -> None:
        Tolerance(*self.thresholds)  # validates the pair
        Tolerance(*self.spread_k)
        validate_mode(self.threshold_mode, self.learned_cap)

    def fit(self, reference: Rows | None) -> "FittedCalibration":
        tolerance = Tolerance(*self.thresholds)
        if reference is None or reference.count == 0:
            return FittedCalibration(self, None, None, tolerance)
        profile = profile_of(reference, self.segments)
        whole = Totals.of_stats(profile.overall())
        if self.threshold_mode == "learned":
            tolerance = learned_ratio_tolerance(reference, whole, self.thresholds, self.chunks, self.learned_cap)
        return FittedCalibration(self, whole, reference, tolerance, profile)


def learned_ratio_tolerance(reference: Rows, whole: Totals, static: tuple[float, float], chunks: int,
                            cap: float = DEFAULT_CAP) -> Tolerance:
    """Tolerances on log(ratio change) learned from reference chunks beyond Poisson noise, at most cap x static."""
    effects, variances = [], []
    for chunk in reference.chunks(chunks):
        part = Totals.of(chunk)
        if part.observed > 0 and part.expected > 0 and whole.observed > 0:
            effects.append(math.log((part.observed / part.expected) / (whole.observed / whole.expected)))
            variances.append(1.0 / part.observed)
    learned = learn_tolerance((math.log1p(static[0]), math.log1p(static[1])), effects, variances,
                              ceiling=(math.log1p(cap * static[0]), math.log1p(cap * static[1])))
    if learned.static is None:
        return Tolerance(*static)
    uncapped = None if learned.uncapped is None else tuple(math.expm1(v) for v in learned.uncapped)
    return Tolerance(math.expm1(learned.warn), math.expm1(learned.alert), learned.learned, tuple(static),
                     learned.capped, uncapped)


def ratio_excess(reference: Rows, chunks: int) -> float | None:
    """Chunk-to-chunk std of log(sum(p)/sum(y)) beyond Poisson noise, over `chunks` reference chunks."""
    whole = Totals.of(reference)
    if whole.observed <= 0 or whole.expected <= 0:
        return None
    effects, variances = [], []
    for chunk in reference.chunks(chunks):
        part = Totals.of(chunk)
        if part.observed > 0 and part.expected > 0:
            effects.append(math.log((part.expected / part.observed) / (whole.expected / whole.observed)))
            variances.append(1.0 / part.observed)
    return excess_spread(effects, variances)


def spread_ratio_tolerance(reference: Rows | None, current: Totals, k: tuple[float, float], min_chunks: int,
                           cache: dict) -> tuple[Tolerance | None, str]:
    """Spread mode's band on the ratio change for a window of `current.count` rows (None: too few chunks)."""
    n = current.count
    chunks = reference.count // n if reference is not None and n else 0
    if chunks < min_chunks:
        return None, (f"static (the spread mode needs {min_chunks} reference chunks of {n} rows; "
                      f"the reference holds {chunks})")
    if n not in cache:
        cache[n] = ratio_excess(reference, chunks)
    sampling = math.sqrt(1 / max(current.observed, 1) + 1 / max(reference.positives, 1))
    tol = spread_tolerance(cache[n], sampling, k)
    if tol is None:
        return None, "static (the reference's chunks have too few clicks to measure a spread)"
    return (Tolerance(math.expm1(tol.warn), math.expm1(tol.alert), sigma=tol.sigma),
            f"spread ({chunks} reference chunks of {n} rows)")


@dataclass(frozen=True)
class FittedCalibration:
    check: CalibrationCheck
    reference: Totals | None
    reference_rows: Rows | None = None  # cut into chunks of a window's size (spread mode)
    tolerance: Tolerance = Tolerance(0.025, 0.05)
    reference_profile: LabelProfile | None = None  # segments are grouped like the current window's
    _spread_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def _decay(self, current: Totals, baseline: Totals | None, tolerance: Tolerance | None = None) -> dict:
        alpha = self.check.alpha
        tolerance = tolerance or self.tolerance
        ref_obs = None if baseline is None else baseline.observed
        ref_exp = None if baseline is None else baseline.expected
        phi, low, high = metrics.rate_ratio_interval(current.observed, current.expected, ref_obs, ref_exp, alpha)
        if tolerance.sigma is None:
            p_warn = metrics.band_pvalues(current.observed, current.expected, ref_obs, ref_exp, tolerance.warn)
            p_alert = metrics.band_pvalues(current.observed, current.expected, ref_obs, ref_exp, tolerance.alert)
        else:  # a noise band: the change must reach it and be significant
            p_zero = float(metrics.band_pvalues(current.observed, current.expected, ref_obs, ref_exp, 0.0))
            size = abs(math.log(phi)) if phi and math.isfinite(phi) and phi > 0 else math.inf
            p_warn = gated_p(size, p_zero, math.log1p(tolerance.warn))
            p_alert = gated_p(size, p_zero, math.log1p(tolerance.alert))
        return {
            "reference_ratio": None if baseline is None or baseline.observed <= 0
            else baseline.expected / baseline.observed,
            # The change of sum(p)/sum(y) against the reference is 1/phi.
            "relative_ratio": _inverse(phi),
            "relative_ci_low": _inverse(high),
            "relative_ci_high": _inverse(low),
            "_p": (float(p_warn), float(p_alert)),
        }

    def _enough(self, totals: Totals) -> bool:
        return totals.count >= self.check.min_rows and totals.expected >= self.check.min_positives

    def evaluate(self, current: Rows | LabelProfile, prediction: str | None = None, label: str | None = None,
                 **context) -> CheckResult:
        check = self.check
        current = profile_of(current, check.segments)
        stats = current.overall()
        whole = Totals.of_stats(stats)
        overall = summary(stats, check.n_bins, check.alpha)
        spread, mode = None, check.threshold_mode
        if check.threshold_mode == "spread" and self.reference is not None:
            spread, mode = spread_ratio_tolerance(self.reference_rows, whole, check.spread_k, check.min_spread_chunks,
                                                  self._spread_cache)
        overall.update(self._decay(whole, self.reference, spread))
        p_warn, p_alert = overall.pop("_p")
        overall["status"] = (decide([p_warn], [p_alert], check.alpha)[0] if self._enough(whole)
                             else "insufficient_data")
        segments = self._segments(current)
        statuses = [overall["status"]] + [s["status"] for s in segments]
        details = {
            "prediction": prediction,
            "label": label,
            "baseline": "reference" if self.reference is not None else "one",
            "threshold_mode": mode,
            "tolerance": (spread or self.tolerance).to_dict(),
            "tolerance_notes": tolerance_notes({"calibration": self.tolerance}),
            "alpha": check.alpha,
            "dropped_rows": current.dropped,
            "overall": overall,
            "segments": segments,
            "segments_alert": [f"{s['segment']}={s['value']}" for s in segments if s["status"] == "alert"],
        }
        return CheckResult(check=check.name, status=worst_status(statuses),
                           reference_rows=0 if self.reference is None else self.reference.count,
                           current_rows=current.count, details=details, **context)

    def _segments(self, current: LabelProfile) -> list[dict]:
        check = self.check
        entries, p_warn, p_alert = [], [], []
        for column in check.segments:
            table = current.table(column)
            names = top_names(table, check.top_n)
            refs = [] if self.reference_profile is None else [
                Totals.of_stats(g) for g in named_stats(self.reference_profile.table(column), names)]
            for i, (value, group) in enumerate(zip(names, named_stats(table, names))):
                totals = Totals.of_stats(group)
                entry = {"segment": column, "value": value}
                entry.update(summary(group, check.n_bins, check.alpha))
                baseline = refs[i] if refs else None
                # A value the reference barely saw is compared with the reference as a whole.
                use_own = baseline is not None and baseline.expected >= check.min_positives
                entry.update(self._decay(totals, baseline if use_own else self.reference))
                entry["baseline"] = "segment" if use_own else ("overall" if self.reference else "one")
                pw, pa = entry.pop("_p")
                enough = self._enough(totals)
                p_warn.append(pw if enough else math.nan)
                p_alert.append(pa if enough else math.nan)
                entries.append(entry)
        for entry, status in zip(entries, decide(p_warn, p_alert, check.alpha)):
            entry["status"] = status
        return entries


def _inverse(value: float) -> float:
    if value is None or math.isnan(value):
        return math.nan
    return math.inf if value == 0 else 1.0 / value


class CalibrationWindowCheck(LabelledWindowCheck):
    name = "calibration"

    def evaluate_pair(self, prediction, label, reference, current, context) -> CheckResult:
        params = self.config.check_params() if self.config is not None else {}
        check = CalibrationCheck(name=self.name, segments=tuple(self.segments), **params)
        return fit_cached(context, check, reference).evaluate(current, prediction=prediction, label=label)


@register_check("calibration", params=CalibrationCheckConfig, needs=("rows", "labels"),
                exports=("calibration_ratio", "ece"),
                summary="predicted vs observed positives per segment, and its change vs the reference")
def calibration_check(model_config, check_config=None) -> CalibrationWindowCheck:
    return CalibrationWindowCheck(model_config, check_config)


def calibration_of(data: str, prediction: str, label: str, segments: list[str] = (),
                   reference: str | None = None, **params) -> CheckResult:
    """One-off (`driftline check calibration`): calibration of a scored, labelled dataset,
    as decay against a scored reference when one is given."""
    from checks.labelled import read_rows
    from core.sources import Source

    def rows_of(location: str, role: str) -> Rows:
        source = Source(location)
        return read_rows(source.batches([prediction, label, *segments]), source.schema, prediction, label,
                         segments, where=f"{location} ({role})")

    from core.label_profile import LabelSpec, check_columns, profile_label_batches

    source, where = Source(data), f"{data} (data)"
    spec = LabelSpec(prediction, label, tuple(dict.fromkeys(segments)))
    check_columns(source.schema, spec, where)
    current = profile_label_batches(source.batches(spec.columns), spec, where).validate(where)  # streamed
    baseline = rows_of(reference, "reference") if reference else None
    check = CalibrationCheck(segments=tuple(segments), **params)
    return check.fit(baseline).evaluate(current, prediction=prediction, label=label)
