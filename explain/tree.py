"""SHAP for tree models: exact path-dependent TreeSHAP, LightGBM's `pred_contrib` values.

`pred_contrib` is what `shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")`
returns for LightGBM (same algorithm, same values, tested), in raw log-odds space: the values
plus the base value add up to `raw_score` exactly. shap's interventional mode with
background data is not used: on LightGBM models with categorical splits it breaks
additivity by up to several logits.

LightGBM boosters with one output (binary, regression) are explained by explain/fasttree.py,
the same values computed the Fast TreeSHAP v2 way (several times faster: bench/RESULTS.md);
other models, and boosters outside what it covers, use `pred_contrib`.
Which one ran is in `ShapValues.algorithm` and the result's details["algorithm"].

Exact TreeSHAP still costs O(trees x leaves x depth) per row, so global importances come from a
bounded uniform sample, with the standard error of each mean |SHAP| reported beside it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from explain.models import LightGBMModel, TreeModel
from explain.results import ExplainResult, FeatureImportance, sorted_importances
from core.errors import SchemaError

DEFAULT_SAMPLE = 5000
PRED_CONTRIB = "path-dependent TreeSHAP (LightGBM pred_contrib)"


@dataclass(frozen=True)
class ShapValues:
    """Per-row attributions (not a result record: arrays stay in memory)."""

    features: tuple[str, ...]
    values: np.ndarray  # n x features, raw (log-odds) space
    base_value: float
    raw: np.ndarray  # the model's raw score per row
    matrix: np.ndarray  # the encoded model input (for plots)
    algorithm: str = PRED_CONTRIB  # what computed the values

    @property
    def additivity_error(self) -> float:
        """max |base + sum(values) - raw| over the rows."""
        if not len(self.raw):
            return 0.0
        return float(np.max(np.abs(self.base_value + self.values.sum(axis=1) - self.raw)))


def sample_frame(frame, rows: int | None, seed: int = 0):
    """A uniform sample of `rows` rows without replacement (the frame itself when smaller)."""
    if rows is None or len(frame) <= rows:
        return frame
    rng = np.random.default_rng(seed)
    return frame.iloc[np.sort(rng.choice(len(frame), size=rows, replace=False))]


def shap_values(model: TreeModel, frame, fast: bool = True) -> ShapValues:
    """Exact path-dependent TreeSHAP of every row; `fast=False` forces the model's own `contributions`."""
    if not isinstance(model, TreeModel):
        raise SchemaError(f"model {getattr(model, 'name', model)!r} has no TreeSHAP path (use --method permutation)")
    matrix = model.encode(frame)
    contrib, algorithm = _contributions(model, matrix, fast)
    contrib = np.asarray(contrib, dtype=np.float64)
    width = len(model.features) + 1
    if contrib.ndim != 2 or contrib.shape[1] != width:
        raise SchemaError(f"model {model.name!r}: expected {width} contribution columns, got {contrib.shape}")
    base = float(contrib[0, -1]) if len(contrib) else float("nan")
    return ShapValues(model.features, contrib[:, :-1], base, np.asarray(model.raw_score(matrix)), matrix, algorithm)


# Fast TreeSHAP plans (or the reason there is none) per booster, built once per model object.
_PLANS: "weakref.WeakKeyDictionary[object, object]" = weakref.WeakKeyDictionary()


def _contributions(model: TreeModel, matrix: np.ndarray, fast: bool) -> tuple[np.ndarray, str]:
    if not fast or not isinstance(model, LightGBMModel):
        return model.contributions(matrix), PRED_CONTRIB
    booster = model.booster
    from explain import fasttree

    plan = _PLANS.get(booster)
    if plan is None:
        try:
            plan = fasttree.prepare(booster)
            if plan.num_features != len(model.features):
                raise fasttree.Unsupported(f"{plan.num_features} features in the trees, "
                                           f"{len(model.features)} in the model")
        except (ImportError, KeyError, TypeError, ValueError) as exc:  # Unsupported is a ValueError
            plan = f"fast path not used: {exc if isinstance(exc, fasttree.Unsupported) else repr(exc)}"
        _PLANS[booster] = plan
    if isinstance(plan, str):
        return model.contributions(matrix), f"{PRED_CONTRIB}; {plan}"
    return fasttree.contributions(plan, matrix, threads=2), fasttree.ALGORITHM


def importance_from_values(values: np.ndarray, features: tuple[str, ...]) -> list[FeatureImportance]:
    """Mean |SHAP| per feature with its standard error std(|SHAP|)/sqrt(n)."""
    magnitude = np.abs(values)
    n = len(magnitude)
    means = magnitude.mean(axis=0) if n else np.full(len(features), np.nan)
    errors = magnitude.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(features), np.nan)
    return [FeatureImportance(f, float(m), float(e)) for f, m, e in zip(features, means, errors)]


def shap_importance(model: TreeModel, frame, sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                    values: ShapValues | None = None) -> tuple[ExplainResult, ShapValues]:
    """Global importance = mean |SHAP| over a bounded sample; gain and split importances beside it."""
    rows = sample_frame(frame, sample, seed)
    values = values or shap_values(model, rows)
    gain, split = model.tree_importance("gain"), model.tree_importance("split")
    total_gain = gain.sum() or 1.0
    items = [
        FeatureImportance(item.feature, item.importance, item.std,
                          {"gain": float(gain[i]), "gain_share": float(gain[i] / total_gain), "split": int(split[i])})
        for i, item in enumerate(importance_from_values(values.values, model.features))
    ]
    result = ExplainResult(
        method="shap",
        model=model.name,
        rows=len(values.raw),
        features=sorted_importances(items),
        base_value=values.base_value,
        additivity_error=values.additivity_error,
        details={"space": "raw log-odds", "algorithm": values.algorithm,
                 "sampled_from": len(frame), "seed": seed},
    )
    return result, values
