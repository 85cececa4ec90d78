"""Concept drift: P(y|x) moved, told apart from P(x) moving. Three signals per window.

(a) Realized versus expected performance (the CBPE idea, Nannyml): the model's scores are
    calibrated on the scored reference (isotonic regression); from the calibrated
    probabilities alone the AUC and log loss expected under the current inputs follow.
    A covariate shift moves expected and realized together; a realized AUC significantly
    below the expected one (or a log loss above it) says the labels no longer follow the
    scores as they did.
(b) Segment residuals: per segment and segment pair (e.g. offer x OS) the cell's
    observed/predicted clicks, relative to the window's overall observed/predicted (so a
    uniform calibration shift is not a concept change) and compared with the same cell on
    the reference by the exact conditional binomial test. Cells are judged with one
    Benjamini-Hochberg budget; each family also gets a chi-square test of its whole
    residual pattern and a click-weighted RMS log change, which catches an interaction that
    flips in many small cells while every marginal holds.
(c) Page-Hinkley on the per-window series of the standardised loss gap from (a), read
    from the stored results of earlier windows (checks.changepoint).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from checks import metrics, profile_metrics
from checks.changepoint import page_hinkley
from checks.labelled import LabelledWindowCheck, Rows, fit_cached, profile_of, top_names, value_index
from core.label_profile import P, Y, GroupStats, LabelProfile, LabelSpec
from core.results import CheckResult, FeatureDrift, worst_status
from core.checks import register_check
from checks.settings import ConceptCheckConfig
from checks.thresholds import (
    DEFAULT_CAP,
    Tolerance,
    benjamini_hochberg,
    decide,
    excess_spread,
    learn_tolerance,
    one_sided_p,
    tolerance_notes,
    validate_mode,
)
from core.errors import ConfigError

_PROBABILITY_FLOOR = 1e-5
TOP_CELLS = 10


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic calibration map as (thresholds, values): applied with np.interp (clip outside)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=_PROBABILITY_FLOOR, y_max=1 - _PROBABILITY_FLOOR)
    iso.fit(scores, labels)
    return np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_, np.float64)


CROSS_FIT_FOLDS = 5


def cross_fitted(scores: np.ndarray, labels: np.ndarray, folds: int = CROSS_FIT_FOLDS) -> np.ndarray:
    """Calibrated probabilities of every reference row from a calibrator that never saw it
    (interleaved folds), so the reference's own expected-versus-realized gap is honest."""
    fold = np.arange(len(scores)) % folds
    q = np.empty(len(scores))
    for k in range(folds):
        held = fold == k
        q[held] = np.interp(scores[held], *fit_isotonic(scores[~held], labels[~held]))
    return q


def expected_vs_realized(scores, labels, calibrator, loss_noise: float = 0.0, baseline: dict | None = None,
                         q: np.ndarray | None = None) -> dict:
    """Signal (a) for rows (the reference and its chunks): expected (from calibrated scores) and
    realized AUC and log loss. `q`: the rows' calibrated probabilities, if not calibrator(scores)."""
    q = np.interp(scores, *calibrator) if q is None else q
    expected_loss, loss_se = metrics.expected_log_loss(scores, q)
    return _gaps(len(scores), float(q.sum()), metrics.auc(labels, scores), metrics.expected_auc(scores, q),
                 expected_loss, loss_se, metrics.log_loss(labels, scores) if len(scores) else math.nan,
                 loss_noise, baseline)


def expected_vs_realized_profile(stats: GroupStats, calibrator, loss_noise: float = 0.0,
                                 baseline: dict | None = None) -> dict:
    """Signal (a) for a window's label profile: the binned counterparts of expected_vs_realized."""
    expected = profile_metrics.expected_metrics(stats, calibrator)
    realized_auc, _, _ = profile_metrics.auc_of(stats)
    return _gaps(stats.count, expected["expected_positives"], realized_auc, expected["expected_auc"],
                 expected["expected_log_loss"], expected["expected_log_loss_se"], profile_metrics.log_loss(stats)[0],
                 loss_noise, baseline)


def _gaps(count, positives, realized_auc, expected_auc, expected_loss, loss_se, realized_loss,
          loss_noise: float, baseline: dict | None) -> dict:
    """The expected-versus-realized gaps and their errors.

    `loss_noise` is the learned between-window spread of the relative loss gap; the
    standardised gap `loss_z` divides by it and the sampling error together. `baseline` is
    the reference's own cross-fitted gap (FittedConcept.baseline): an isotonic calibrator
    fitted on a finite reference is optimistic (it expects a higher AUC than any data gives
    it), so the gaps are measured from the reference's, and its uncertainty adds to theirs."""
    auc_se = metrics.auc_se(expected_auc, positives, count - positives)
    rise = realized_loss / expected_loss - 1 if expected_loss > 0 else None
    relative_se = loss_se / expected_loss if expected_loss > 0 else None
    auc_drop = None if realized_auc is None or expected_auc is None else expected_auc - realized_auc
    if baseline is not None:
        if auc_drop is not None:
            auc_drop -= baseline["auc_drop"]
            auc_se = math.hypot(auc_se, baseline["auc_se"])
        if rise is not None:
            rise -= baseline["loss_rise"]
            relative_se = math.hypot(relative_se, baseline["loss_rise_se"])
    return {
        "count": count,
        "expected_positives": positives,
        "expected_auc": expected_auc,
        "realized_auc": realized_auc,
        "auc_se": auc_se,
        "auc_drop": auc_drop,
        "expected_log_loss": expected_loss,
        "realized_log_loss": realized_loss,
        "loss_rise": rise,
        "loss_rise_se": relative_se,
        # The standardised loss gap: the per-window series Page-Hinkley watches.
        "loss_z": rise / math.hypot(relative_se, loss_noise) if rise is not None and relative_se else None,
    }


@dataclass(frozen=True)
class ConceptCheck:
    """Parameters only; `fit(reference_rows)` then `evaluate(current_rows, history=...)`."""

    name: str = "concept_drift"
    segments: tuple[str, ...] = ()
    segment_pairs: tuple[tuple[str, str], ...] | None = None
    top_n: int = 50
    min_rows: int = 500
    min_positives: float = 20
    min_cell_positives: float = 10
    residual_change: tuple[float, float] = (0.25, 0.5)
    auc_drop: tuple[float, float] = (0.02, 0.04)
    loss_rise: tuple[float, float] = (0.02, 0.05)
    page_hinkley_delta: float = 0.5
    page_hinkley_threshold: float = 8.0
    threshold_mode: Literal["static", "learned"] = "static"
    alpha: float = 0.05
    chunks: int = 10
    learned_cap: float = DEFAULT_CAP
    min_reference_rows: int = 1000
    min_reference_positives: float = 50  # of each label value

    def __post_init__(self) -> None:
        for pair in (self.residual_change, self.auc_drop, self.loss_rise):
            Tolerance(*pair)
        for pair in self.segment_pairs or ():
            unknown = [c for c in pair if c not in self.segments]
            if unknown:
                raise ConfigError(f"segment_pairs: '{unknown[0]}' is not a segment column")
        validate_mode(self.threshold_mode, self.learned_cap, allowed=("static", "learned"))

    def families(self) -> list[tuple[str, ...]]:
        pairs = self.segment_pairs if self.segment_pairs is not None else itertools.combinations(self.segments, 2)
        return [(s,) for s in self.segments] + [tuple(p) for p in pairs]

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(f for f in self.families() if len(f) == 2)

    def profile(self, rows: "Rows | LabelProfile") -> LabelProfile:
        return profile_of(rows, self.segments, self.pairs())

    def static_tolerances(self) -> dict[str, Tolerance]:
        cell = Tolerance(*self.residual_change)
        return {"auc_drop": Tolerance(*self.auc_drop), "loss_rise": Tolerance(*self.loss_rise),
                "residual_cell": cell,  # relative change of a cell's observed/predicted
                "residual_family": Tolerance(math.log1p(cell.warn), math.log1p(cell.alert))}  # RMS log change

    def fit(self, reference: Rows) -> "FittedConcept":
        if reference.count == 0 or reference.positives == 0 or reference.positives == reference.count:
            raise ConfigError("concept_drift: the scored reference needs rows of both label values")
        negatives = reference.count - reference.positives
        if reference.count < self.min_reference_rows or min(reference.positives, negatives) < \
                self.min_reference_positives:
            return FittedConcept(self, reference, None, self.static_tolerances(), insufficient=(
                f"the scored reference (prediction_reference) has {reference.count} rows, {reference.positives:g} "
                f"positive and {negatives:g} negative; concept_drift needs at least {self.min_reference_rows} rows "
                f"and {self.min_reference_positives:g} of each label (min_reference_rows, min_reference_positives)"))
        calibrator = fit_isotonic(reference.scores, reference.labels)
        baseline = expected_vs_realized(reference.scores, reference.labels, calibrator,
                                        q=cross_fitted(reference.scores, reference.labels))
        static = FittedConcept(self, reference, calibrator, self.static_tolerances(), baseline=baseline,
                               reference_profile=self.profile(reference))
        return static._learned() if self.threshold_mode == "learned" else static


@dataclass(frozen=True)
class FittedConcept:
    check: ConceptCheck
    reference: Rows
    calibrator: tuple[np.ndarray, np.ndarray]
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    loss_noise: float = 0.0  # between-chunk spread of the relative loss gap beyond sampling noise
    dispersion: float = 1.0  # residual chi-square per degree of freedom between reference chunks (>= 1)
    baseline: dict | None = None  # the reference's own cross-fitted expected-versus-realized gap
    insufficient: str | None = None  # why the reference is too small to judge anything
    reference_profile: LabelProfile | None = None  # the reference's cells, grouped like a window's

    def _learned(self) -> "FittedConcept":
        """Tolerances (and the loss series' noise) learned from chunk-versus-rest comparisons."""
        check = self.check
        parts = self.reference.chunks(check.chunks)
        bounds = np.linspace(0, self.reference.count, len(parts) + 1).astype(int)
        rests = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            rest = np.ones(self.reference.count, dtype=bool)
            rest[a:b] = False
            rests.append(rest)
        # Each chunk is judged by a calibrator fitted on the rest (cross-fitted), as a window is.
        signals = []
        for chunk, rest in zip(parts, rests):
            own = self.reference.take(rest)
            positives = own.positives
            calibrator = fit_isotonic(own.scores, own.labels) if 0 < positives < own.count else self.calibrator
            signals.append(expected_vs_realized(chunk.scores, chunk.labels, calibrator))
        usable = [c for c in signals if c["auc_drop"] is not None and c["loss_rise"] is not None]
        families_seen, cell_effects, cell_variances = [], [], []
        for chunk, rest in zip(parts, rests):
            probe = FittedConcept(check, self.reference.take(rest), self.calibrator, self.tolerances,
                                  reference_profile=check.profile(self.reference.take(rest)))
            chunk_profile = check.profile(chunk)
            for columns in check.families():
                family = probe._family(chunk_profile, columns)
                if family["chi2"] is not None:
                    families_seen.append((family["chi2"], family["df"]))
                for cell in family["_cells"]:
                    if 0 < cell["relative_change"] < math.inf and cell["observed"] > 0:
                        cell_effects.append(math.log(cell["relative_change"]))
                        cell_variances.append(1 / cell["observed"] + 1 / cell["reference_observed"])
        static = self.tolerances
        dispersion = _dispersion(families_seen)
        cap = check.learned_cap
        cell_static = static["residual_cell"]
        cell = learn_tolerance((math.log1p(cell_static.warn), math.log1p(cell_static.alert)), cell_effects,
                               cell_variances, ceiling=(math.log1p(cap * cell_static.warn),
                                                        math.log1p(cap * cell_static.alert)))
        learned = {
            "auc_drop": learn_tolerance(static["auc_drop"].pair, [c["auc_drop"] for c in usable],
                                        [c["auc_se"] ** 2 for c in usable], cap=cap),
            "loss_rise": learn_tolerance(static["loss_rise"].pair, [c["loss_rise"] for c in usable],
                                         [c["loss_rise_se"] ** 2 for c in usable], cap=cap),
            "residual_cell": Tolerance(math.expm1(cell.warn), math.expm1(cell.alert), cell.learned,
                                       cell_static.pair if cell.static else None, cell.capped,
                                       None if cell.uncapped is None else tuple(math.expm1(v) for v in cell.uncapped)),
            "residual_family": static["residual_family"],
        }
        noise = excess_spread([c["loss_rise"] for c in usable], [c["loss_rise_se"] ** 2 for c in usable])
        return FittedConcept(check, self.reference, self.calibrator, learned, noise or 0.0, dispersion, self.baseline,
                             reference_profile=self.reference_profile)

    def evaluate(self, current: Rows | LabelProfile, history: list[float] | None = None,
                 prediction: str | None = None, label: str | None = None, **context) -> CheckResult:
        check = self.check
        current = check.profile(current)
        if self.insufficient:
            return CheckResult(check=check.name, status="insufficient_data", reference_rows=self.reference.count,
                               current_rows=current.count, details={"prediction": prediction, "label": label,
                                                                    "reason": self.insufficient}, **context)
        whole = current.overall()
        enough = whole.count >= check.min_rows and whole.predicted >= check.min_positives
        signal_a = expected_vs_realized_profile(whole, self.calibrator, self.loss_noise, self.baseline)
        signal_a["statuses"] = self._judge_a(signal_a) if enough else {"auc_drop": "insufficient_data",
                                                                       "loss_rise": "insufficient_data"}
        families = [self._family(current, columns) for columns in check.families()]
        self._judge_b(families)
        series = list(history or []) + [signal_a["loss_z"]]
        ph = page_hinkley(series, check.page_hinkley_delta, check.page_hinkley_threshold)
        ph_status = "alert" if ph.detected_last and enough else "ok"
        statuses = list(signal_a["statuses"].values()) + [f["status"] for f in families] + [ph_status]
        details = {
            "prediction": prediction,
            "label": label,
            "alpha": check.alpha,
            "tolerances": {k: t.to_dict() for k, t in self.tolerances.items()},
            "tolerance_notes": tolerance_notes(self.tolerances),
            "loss_noise": self.loss_noise,
            "reference_gap": None if self.baseline is None else {
                k: self.baseline[k] for k in ("auc_drop", "auc_se", "loss_rise", "loss_rise_se")},
            "residual_dispersion": self.dispersion,
            "expected_vs_realized": signal_a,
            "loss_z": signal_a["loss_z"],
            "residuals": families,
            "page_hinkley": {**ph.to_dict(), "status": ph_status},
            "dropped_rows": current.dropped,
        }
        features = tuple(self._segment_features(families, current.count))
        status = worst_status(statuses) if enough else "insufficient_data"
        return CheckResult(check=check.name, status=status, features=features, reference_rows=self.reference.count,
                           current_rows=current.count, details=details, **context)

    def _judge_a(self, signal: dict) -> dict:
        pw, pa = [], []
        for name, effect, se in (("auc_drop", signal["auc_drop"], signal["auc_se"]),
                                 ("loss_rise", signal["loss_rise"], signal["loss_rise_se"])):
            tol = self.tolerances[name]
            ok = effect is not None and se is not None
            pw.append(float(one_sided_p(effect, se, tol.warn)) if ok else math.nan)
            pa.append(float(one_sided_p(effect, se, tol.alert)) if ok else math.nan)
        return dict(zip(("auc_drop", "loss_rise"), decide(pw, pa, self.check.alpha)))

    def _family(self, current: LabelProfile, columns: tuple[str, ...]) -> dict:
        """Cell sums of one segment family, tested against the reference's cells (signal b)."""
        check = self.check
        names = [top_names(current.table(column), check.top_n) for column in columns]
        size = math.prod(len(values) + 1 for values in names)  # + a slot for values only the reference has
        observed, expected = _cell_sums(current, columns, names, size)
        ref_observed, ref_expected = _cell_sums(self.reference_profile, columns, names, size)
        total_rate = observed.sum() / max(expected.sum(), 1e-12)
        ref_rate = ref_observed.sum() / max(ref_expected.sum(), 1e-12)
        scale = total_rate / ref_rate if ref_rate > 0 else math.nan  # R: the window's overall relative rate
        scaled = expected * scale
        comparable = (expected > 0) & (ref_expected > 0)
        tested = comparable & (scaled >= check.min_cell_positives) & (ref_expected >= check.min_cell_positives)
        pooled = comparable & ~tested
        obs = np.r_[observed[tested], observed[pooled].sum()]
        exp_ = np.r_[scaled[tested], scaled[pooled].sum()]
        r_obs = np.r_[ref_observed[tested], ref_observed[pooled].sum()]
        r_exp = np.r_[ref_expected[tested], ref_expected[pooled].sum()]
        keep = (exp_ > 0) & (r_exp > 0) & (obs + r_obs > 0)
        entry = {"segments": list(columns), "cells_tested": int(tested.sum()), "cells_pooled": int(pooled.sum()),
                 "window_relative_rate": None if math.isnan(scale) else float(scale)}
        if keep.sum() < 2 or math.isnan(scale):
            return {**entry, "chi2": None, "df": 0, "p_value": None, "rms_log_change": None, "cells": [],
                    "_cells": []}
        n = obs + r_obs
        with np.errstate(divide="ignore", invalid="ignore"):
            share = exp_ / (exp_ + r_exp)
            z = np.where(keep, (obs - n * share) / np.sqrt(n * share * (1 - share)), 0.0)
        from scipy.stats import chi2

        # Overdispersion learned from the reference (quasi-Poisson): scale the chi-square down.
        statistic = float(np.sum(z[keep] ** 2)) / self.dispersion
        df = int(keep.sum()) - 1
        weights = (n * share * (1 - share))[:-1][keep[:-1]]
        excess = float(np.sum(z[:-1][keep[:-1]] ** 2)) / self.dispersion - len(weights)
        rms = math.sqrt(max(0.0, excess) / weights.sum()) if weights.sum() > 0 else 0.0
        tol = self.tolerances["residual_cell"]
        args = (observed[tested], scaled[tested], ref_observed[tested], ref_expected[tested])
        p_warn = metrics.band_pvalues(*args, tol.warn)
        p_alert = metrics.band_pvalues(*args, tol.alert)
        cells = []
        for k, flat in enumerate(np.flatnonzero(tested)):
            label, rest = {}, int(flat)
            for column, values in zip(reversed(columns), reversed(names)):
                rest, position = divmod(rest, len(values) + 1)
                label[column] = values[position] if position < len(values) else "(reference only)"
            relative = (observed[flat] / scaled[flat]) / (ref_observed[flat] / ref_expected[flat]) \
                if ref_observed[flat] > 0 else math.inf
            cells.append({"cell": dict(reversed(label.items())), "observed": float(observed[flat]),
                          "predicted": float(expected[flat]), "reference_observed": float(ref_observed[flat]),
                          "reference_predicted": float(ref_expected[flat]), "relative_change": relative,
                          "_p": (float(p_warn[k]), float(p_alert[k]))})
        return {**entry, "chi2": statistic, "df": df, "p_value": float(chi2.sf(statistic, df)),
                "rms_log_change": rms, "_cells": cells}

    def _judge_b(self, families: list[dict]) -> None:
        """Cells share one BH budget; families are tested as wholes with another."""
        check = self.check
        own_cells = [f.pop("_cells") for f in families]
        cells = [c for own in own_cells for c in own]
        for cell, status in zip(cells, decide([c["_p"][0] for c in cells], [c["_p"][1] for c in cells], check.alpha)):
            cell["status"] = status
            cell["p_value"] = cell.pop("_p")[0]
        significant = benjamini_hochberg([f["p_value"] if f["p_value"] is not None else math.nan for f in families],
                                         check.alpha)
        warn, alert = self.tolerances["residual_family"].pair
        for family, hit, own in zip(families, significant, own_cells):
            rms = family["rms_log_change"]
            pattern = "insufficient_data" if rms is None else (
                "alert" if hit and rms >= alert else "warn" if hit and rms >= warn else "ok")
            family["pattern_status"] = pattern
            family["cells_alert"] = sum(c["status"] == "alert" for c in own)
            family["status"] = worst_status([pattern] + [c["status"] for c in own])
            ranked = sorted(own, key=lambda c: c["p_value"])
            family["cells"] = ranked[:TOP_CELLS]  # the most significant cells, for drill-down

    def _segment_features(self, families: list[dict], current_count: int):
        """One record per segment column, its status the worst of the families it is in."""
        for column in self.check.segments:
            own = [f for f in families if column in f["segments"]]
            statuses = [f["status"] for f in own]
            status = worst_status(statuses) if statuses else "insufficient_data"
            rms = [f["rms_log_change"] for f in own if f["rms_log_change"] is not None]
            reasons = tuple(f"residuals of {' x '.join(f['segments'])}: {f['status']}" for f in own
                            if f["status"] in ("warn", "alert"))
            yield FeatureDrift(feature=column, kind="categorical", method="residuals",
                               score=max(rms) if rms else None, threshold=self.tolerances["residual_family"].alert,
                               warn_threshold=self.tolerances["residual_family"].warn, status=status,
                               reference_count=self.reference.count, current_count=current_count,
                               reasons=reasons)


def _cell_sums(profile: LabelProfile, columns: tuple[str, ...], names: list[list], size: int):
    """(clicks, predicted clicks) per cell of a family: each column's values placed among `names`."""
    table = profile.table(columns[0]) if len(columns) == 1 else profile.pair_table(*columns)
    index = np.zeros(len(table.values), np.int64)
    for position, values in enumerate(names):
        own = [v if len(columns) == 1 else v[position] for v in table.values]
        index = index * (len(values) + 1) + value_index(own, values)
    return (np.bincount(index, weights=table.sums[:, Y], minlength=size),
            np.bincount(index, weights=table.sums[:, P], minlength=size))


def _dispersion(families: list[tuple[float, float]], guard: float = 0.01) -> float:
    """Pooled chi-square per degree of freedom of chunk-versus-rest residual tests; 1 unless
    the excess is significant (p < guard), so noise alone never loosens the test."""
    from scipy.stats import chi2

    total = sum(c for c, _ in families)
    df = sum(d for _, d in families)
    if df <= 0 or chi2.sf(total, df) >= guard:
        return 1.0
    return max(1.0, total / df)


def loss_history(store, model: str, check: str, start, window, prediction: str | None = None) -> list[float]:
    """The stored loss z-series of one prediction column over earlier windows of the same length (signal c)."""
    if store is None:
        return []
    series = []
    for result in store.results(model=model, check=check):
        if result.status in ("pending", "error") or not result.window_start or not result.window_end:
            continue
        from datetime import datetime

        begin, end = datetime.fromisoformat(result.window_start), datetime.fromisoformat(result.window_end)
        details = result.details.get("predictions", {}).get(prediction, result.details)
        if end <= start and end - begin == window and details.get("prediction") in (None, prediction):
            series.append((begin, details.get("loss_z")))
    return [value for _, value in sorted(series, key=lambda item: item[0])]


class ConceptWindowCheck(LabelledWindowCheck):
    name = "concept_drift"

    def check(self) -> ConceptCheck:
        params = self.config.check_params() if self.config is not None else {}
        if params.get("segment_pairs") is not None:
            params["segment_pairs"] = tuple(tuple(p) for p in params["segment_pairs"])
        return ConceptCheck(name=self.name, segments=tuple(self.segments), **params)

    def spec(self, prediction: str, label: str) -> LabelSpec:
        return LabelSpec(prediction, label, tuple(self.segments), self.check().pairs())

    def evaluate_pair(self, prediction, label, reference, current, context) -> CheckResult:
        check = self.check()
        history = loss_history(getattr(context, "store", None), context.model.name, self.name, context.start,
                               context.end - context.start, prediction)
        return fit_cached(context, check, reference).evaluate(current, history=history, prediction=prediction, label=label)


@register_check("concept_drift", params=ConceptCheckConfig, needs=("rows", "labels"),
                exports=("auc", "calibration_ratio"), preload=("sklearn.isotonic",),
                summary="realized vs expected performance, and residual shifts per segment")
def concept_check(model_config, check_config=None) -> ConceptWindowCheck:
    return ConceptWindowCheck(model_config, check_config)
