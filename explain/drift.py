"""Attribution drift: did what drives the model change between a reference and a window?

Two kinds of evidence, because they answer different questions:

1. **SHAP of the fixed model** (mean |SHAP| ranking, per-feature change, and each feature's
   SHAP-value distribution scored by the drift kernel, `checks.drift.score_profiles`).
   A fixed model's SHAP values are a function of x alone, so they move only when P(x)
   moves (data drift, skew). On a concept-drift window, where P(x) is unchanged and only
   P(y|x) moved, they stay put - correctly, and uselessly for that question.
2. **Permutation importance with the window's own labels** (log-loss increase when a
   feature is shuffled). This measures how much the model's use of a feature *pays off*
   on this window. When P(y|x) moves, the model's reliance on the features involved stops
   paying (the importance collapses, even turns negative when the learned interaction is
   now backwards), while the other features keep theirs. Each importance carries a
   row-sampling standard error, so a change is judged by its z-score and by its size
   relative to the reference, not by a p-value alone.

So concept drift is signalled by (2) only; (1) catches attribution shifts caused by
input drift. Refitting a model per window would also show concept drift in SHAP, but it
explains a different model each time and costs a training run; shap's loss explanations
need interventional TreeSHAP, which breaks additivity on LightGBM categorical splits.
The reference for (2) must be held-out labelled data, never the training set, where an
overfitted model's importances are inflated.

Rankings are compared with Spearman's rank correlation and nDCG@k of the reference ranking
(relevance = the reference importance, order = the current ranking; SageMaker Clarify
flags nDCG < 0.9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.results import CheckResult, FeatureDrift, worst_status

SHAP_METHOD = "mean_abs_shap"
PERMUTATION_METHOD = "permutation_logloss"


@dataclass(frozen=True)
class Attribution:
    """One dataset's attributions, reduced to what drift needs (JSON-storable, no rows)."""

    rows: int
    shap: dict[str, tuple[float, float]]  # feature -> (mean |SHAP|, standard error)
    shap_profile: dict  # core.profile.DatasetProfile.to_dict() of the per-row SHAP values
    base_value: float | None = None
    additivity_error: float | None = None
    permutation: dict[str, tuple[float, float, float]] | None = None  # feature -> (importance, std, se)
    labelled_rows: int = 0
    positives: int = 0
    note: str | None = None
    explainer: str | None = None  # deep models: which x0 explainer ran ("gradient" or "deep"); None: TreeSHAP

    def to_dict(self) -> dict:
        return {
            "rows": self.rows, "shap": {k: list(v) for k, v in self.shap.items()},
            "shap_profile": self.shap_profile, "base_value": self.base_value,
            "additivity_error": self.additivity_error,
            "permutation": None if self.permutation is None else {k: list(v) for k, v in self.permutation.items()},
            "labelled_rows": self.labelled_rows, "positives": self.positives, "note": self.note,
            "explainer": self.explainer,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Attribution":
        permutation = data.get("permutation")
        return cls(
            rows=data["rows"], shap={k: tuple(v) for k, v in data["shap"].items()},
            shap_profile=data["shap_profile"], base_value=data.get("base_value"),
            additivity_error=data.get("additivity_error"),
            permutation=None if permutation is None else {k: tuple(v) for k, v in permutation.items()},
            labelled_rows=data.get("labelled_rows", 0), positives=data.get("positives", 0), note=data.get("note"),
            explainer=data.get("explainer"),
        )


@dataclass(frozen=True)
class AttributionThresholds:
    shap_distribution: tuple[float, float] = (0.1, 0.2)  # normalised Wasserstein of SHAP values [warn, alert]
    permutation_z: tuple[float, float] = (3.0, 5.0)  # |change| / its standard error [warn, alert]
    permutation_min_change: float = 0.5  # and |change| >= this share of the reference importance
    ndcg: float = 0.9  # flag a ranking whose nDCG@k falls below this
    top_k: int = 5
    min_rows: int = 500  # fewer rows in either window: insufficient_data
    min_positives: int = 30  # fewer positive labels: the permutation comparison is skipped


def ndcg_at_k(reference: dict[str, float], current: dict[str, float], k: int) -> float:
    """nDCG@k of the current ranking, with the reference importances as relevance (negatives as 0)."""
    relevance = {f: max(v, 0.0) for f, v in reference.items() if v is not None and math.isfinite(v)}
    ideal = sorted(relevance, key=lambda f: -relevance[f])[:k]
    ranked = [f for f in sorted(current, key=lambda f: -current[f]) if f in relevance][:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = sum(relevance[f] * d for f, d in zip(ideal, discounts))
    if idcg <= 0:
        return float("nan")
    return float(sum(relevance[f] * d for f, d in zip(ranked, discounts)) / idcg)


def spearman(reference: dict[str, float], current: dict[str, float]) -> float:
    from scipy.stats import spearmanr

    common = [f for f in reference if f in current]
    a = np.array([reference[f] for f in common], dtype=np.float64)
    b = np.array([current[f] for f in common], dtype=np.float64)
    if len(common) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if len(common) >= 1 and np.array_equal(a, b) else float("nan")
    return float(spearmanr(a, b).statistic)


def profile_values(values: np.ndarray, features: tuple[str, ...], spec_dict: dict | None = None):
    """Profile per-row SHAP values with the drift kernel; the spec (bin edges) comes from the reference."""
    import pyarrow as pa

    from core.profile import ProfileSpec, build_spec, profile_table

    table = pa.table({f: pa.array(values[:, i], pa.float64()) for i, f in enumerate(features)})
    spec = ProfileSpec.from_dict(spec_dict) if spec_dict else build_spec(table, {f: "numeric" for f in features})
    return spec, profile_table(table, spec)


def _grade(value: float, thresholds: tuple[float, float]) -> str:
    if value is None or not math.isfinite(value):
        return "ok"
    return "alert" if value >= thresholds[1] else "warn" if value >= thresholds[0] else "ok"


def _ranking(reference: dict[str, float], current: dict[str, float], t: AttributionThresholds) -> dict:
    ndcg = ndcg_at_k(reference, current, t.top_k)
    return {
        "spearman": spearman(reference, current), "ndcg": ndcg, "k": t.top_k,
        "flagged": bool(math.isfinite(ndcg) and ndcg < t.ndcg),
        "reference_top": sorted(reference, key=lambda f: -reference[f])[: t.top_k],
        "current_top": sorted(current, key=lambda f: -current[f])[: t.top_k],
    }


def compare(reference: Attribution, current: Attribution, kinds: dict[str, str],
            thresholds: AttributionThresholds = AttributionThresholds(), **context) -> CheckResult:
    """One FeatureDrift per model feature (score: SHAP-value Wasserstein) plus ranking statistics."""
    from checks.drift import score_profiles
    from core.profile import DatasetProfile

    t = thresholds
    ref_profile = DatasetProfile.from_dict(reference.shap_profile)
    cur_profile = DatasetProfile.from_dict(current.shap_profile)
    enough = reference.rows >= t.min_rows and current.rows >= t.min_rows
    compare_permutation = (reference.permutation is not None and current.permutation is not None
                           and min(reference.positives, current.positives) >= t.min_positives)
    features, per_feature = [], {}
    for name in kinds:
        ref_imp, cur_imp = reference.shap[name][0], current.shap[name][0]
        info = {"mean_abs_shap_reference": ref_imp, "mean_abs_shap_current": cur_imp,
                "mean_abs_shap_change": cur_imp - ref_imp,
                "mean_abs_shap_relative_change": (cur_imp - ref_imp) / ref_imp if ref_imp > 0 else None}
        statuses, reasons = [], []
        score = None
        if enough:
            score = score_profiles("wasserstein", ref_profile.features[name], cur_profile.features[name])
            statuses.append(_grade(score, t.shap_distribution))
            if statuses[-1] != "ok":
                reasons.append(f"SHAP-value distribution moved (wasserstein {score:.3f})")
        else:
            statuses.append("insufficient_data")
            reasons.append(f"fewer than {t.min_rows} rows (reference {reference.rows}, current {current.rows})")
        if compare_permutation:
            status, reason, extra = _permutation_change(name, reference.permutation[name],
                                                        current.permutation[name], t)
            info.update(extra)
            statuses.append(status)
            if reason:
                reasons.append(reason)
        info["shap_wasserstein"] = score
        per_feature[name] = info
        features.append(FeatureDrift(
            feature=name, kind=kinds[name], method="shap_wasserstein", score=score,
            threshold=t.shap_distribution[1], warn_threshold=t.shap_distribution[0],
            status=_worst_feature(statuses), reference_count=reference.rows, current_count=current.rows,
            reasons=tuple(reasons),
        ))
    rankings = {SHAP_METHOD: _ranking({k: v[0] for k, v in reference.shap.items()},
                                      {k: v[0] for k, v in current.shap.items()}, t)}
    if compare_permutation:
        rankings[PERMUTATION_METHOD] = _ranking({k: v[0] for k, v in reference.permutation.items()},
                                                {k: v[0] for k, v in current.permutation.items()}, t)
    status = worst_status(f.status for f in features)
    # Only the SHAP ranking decides (as SageMaker's nDCG): mean |SHAP| is precise on a few thousand
    # rows, while label-sparse permutation importances are noisy; their changes are judged per
    # feature with a standard error instead, and their ranking statistics are reported.
    flagged = [m for m, r in rankings.items() if r["flagged"] and enough and m == SHAP_METHOD]
    if flagged:
        status = "alert"
    notes = [n for n in (reference.note, current.note) if n]
    if reference.permutation is not None and current.permutation is None:
        notes.append("permutation importances not compared: the window has no labelled rows (yet) or one class only")
    if reference.permutation is not None and current.permutation is not None and not compare_permutation:
        notes.append(f"permutation importances not compared: fewer than {t.min_positives} positive labels")
    details = {
        "rankings": rankings,
        "ranking_flagged": flagged,
        "features": per_feature,
        "importance": importance_rows(current),
        "reference_importance": importance_rows(reference),
        "base_value": current.base_value,
        "additivity_error": current.additivity_error,
        "explainer": current.explainer,
        "labelled_rows": current.labelled_rows,
        "positives": current.positives,
        "notes": notes,
    }
    return CheckResult(check="attribution_drift", status=status, features=tuple(features),
                       reference_rows=reference.rows, current_rows=current.rows, details=details, **context)


def _permutation_change(name, ref, cur, t: AttributionThresholds) -> tuple[str, str | None, dict]:
    delta = cur[0] - ref[0]
    se = math.hypot(ref[2] or 0.0, cur[2] or 0.0)
    z = delta / se if se > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    relative = abs(delta) / abs(ref[0]) if ref[0] else math.inf if delta else 0.0
    extra = {"permutation_reference": ref[0], "permutation_current": cur[0], "permutation_change": delta,
             "permutation_z": z if math.isfinite(z) else None}
    status = "ok"
    if relative >= t.permutation_min_change:
        status = _grade(abs(z), t.permutation_z)
    reason = None
    if status != "ok":
        direction = "fell" if delta < 0 else "rose"
        reason = (f"permutation log-loss importance {direction} {ref[0]:.2e} -> {cur[0]:.2e} "
                  f"(z={z:.1f}): the model's use of '{name}' pays off differently on this window's labels")
    return status, reason, extra


def _worst_feature(statuses: list[str]) -> str:
    for level in ("alert", "warn", "insufficient_data"):
        if level in statuses:
            return level
    return "ok"


def importance_rows(attribution: Attribution) -> list[dict]:
    """The exporter's rows: one per (feature, method) -> driftline_feature_importance{model,feature,method}."""
    rows = [{"feature": f, "method": SHAP_METHOD, "importance": v[0], "std": v[1]}
            for f, v in attribution.shap.items()]
    for f, v in (attribution.permutation or {}).items():
        rows.append({"feature": f, "method": PERMUTATION_METHOD, "importance": v[0], "std": v[1], "se": v[2]})
    return rows
