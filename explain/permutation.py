"""Permutation importance on a labelled, held-out window, for any model.

How much worse the model scores when a feature's values are shuffled across rows: the
log-loss increase and the AUC drop, `n_repeats` shuffles each, with their standard
deviation. Correlated features can be permuted as a group (one shared row permutation
per group), so a twin feature cannot stand in for a shuffled one.

The shuffles are drawn exactly as `sklearn.inspection.permutation_importance` draws them
(one RandomState seeded from `seed`, re-seeded per column, shuffles compounding), so with
the same scorer, seed and repeats the numbers are identical (tested through
`explain.models.as_sklearn`). The built-in path encodes the frame once and shuffles
encoded columns, and also reports each log-loss importance's row-sampling standard error
(std of the per-row loss increase / sqrt(n)): the noise that matters when comparing two
windows.

Never run this on the training set: an overfitted model's importances there are inflated
(the demo model's `partner` looks important on its training rows and is not on any
serving day).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from explain.models import MatrixModel, Model, as_sklearn
from explain.results import ExplainResult, FeatureImportance, sorted_importances
from core.errors import SchemaError

Scorer = Callable  # sklearn convention: scorer(estimator, X, y) -> float, greater is better


def binary_labels(values, column: str = "label") -> np.ndarray:
    """0/1 labels as int8; anything else (nulls, 2, 'yes') is a SchemaError naming the column."""
    import pandas as pd

    series = pd.Series(values)
    if series.isna().any():
        raise SchemaError(f"label column '{column}' has {int(series.isna().sum())} null values")
    if series.dtype == bool:
        return series.to_numpy().astype(np.int8)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() | ~numeric.isin([0, 1])
    if bad.any():
        examples = ", ".join(map(repr, series[bad].unique()[:3].tolist()))
        raise SchemaError(f"label column '{column}' is not binary 0/1 (values such as {examples})")
    return numeric.to_numpy().astype(np.int8)


def log_loss_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row log loss, probabilities clipped to [eps, 1 - eps] as scikit-learn does."""
    from scipy.special import xlogy

    eps = np.finfo(np.float64).eps
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return -(xlogy(y, p) + xlogy(1 - y, 1 - p))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half (equals sklearn's roc_auc_score); NaN with one class."""
    from scipy.stats import rankdata

    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass(frozen=True)
class PermutationScores:
    """Raw permutation outcome: importances[metric] is units x repeats (baseline - permuted, as sklearn)."""

    units: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    baseline: dict[str, float]
    importances: dict[str, np.ndarray]
    row_se: np.ndarray | None  # per unit, for the built-in log loss only


def _units(features: tuple[str, ...], groups: dict[str, list[str]] | None) -> dict[str, tuple[str, ...]]:
    units: dict[str, tuple[str, ...]] = {}
    grouped: set[str] = set()
    for name, members in (groups or {}).items():
        unknown = [m for m in members if m not in features]
        if unknown:
            raise SchemaError(f"group '{name}': '{unknown[0]}' is not a model feature")
        overlap = grouped & set(members)
        if overlap:
            raise SchemaError(f"group '{name}': feature '{sorted(overlap)[0]}' is in two groups")
        grouped |= set(members)
        units[name] = tuple(members)
    for feature in features:
        if feature not in grouped:
            units[feature] = (feature,)
    return units


def _seeded(seed: int) -> int:
    """The per-column seed scikit-learn derives from random_state=seed."""
    return int(np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1))


def permutation_scores(model: Model, frame, y, *, n_repeats: int = 5, seed: int = 0,
                       groups: dict[str, list[str]] | None = None,
                       scoring: dict[str, Scorer] | None = None) -> PermutationScores:
    """Shuffle each unit (feature or group) `n_repeats` times and score; see the module docstring."""
    if n_repeats < 1:
        raise SchemaError("n_repeats must be at least 1")
    y = binary_labels(y)
    if len(y) != len(frame):
        raise SchemaError(f"{len(y)} labels for {len(frame)} rows")
    units = _units(tuple(model.features), groups)
    column_seed = _seeded(seed)
    if scoring is None:
        return _builtin(model if isinstance(model, MatrixModel) else _FrameModel(model), frame, y, units,
                        n_repeats, column_seed)
    return _scored(model, frame, y, units, n_repeats, column_seed, scoring)


class _FrameModel:
    """Any Model as a MatrixModel whose "matrix" is an object array of the feature columns (deep
    rankers encode inside predict); shuffling its columns shuffles the frame's."""

    def __init__(self, model: Model) -> None:
        self.model, self.features = model, tuple(model.features)

    def encode(self, frame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"data lacks model feature column '{missing[0]}'")
        return frame[list(self.features)].to_numpy(dtype=object)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame({f: pd.Series(matrix[:, i]).infer_objects() for i, f in enumerate(self.features)})
        return np.asarray(self.model.predict(frame), dtype=np.float64)


def _builtin(model: MatrixModel, frame, y, units, n_repeats, column_seed) -> PermutationScores:
    matrix = model.encode(frame)
    index = {f: i for i, f in enumerate(model.features)}
    base_p = model.predict_matrix(matrix)
    base_rows = log_loss_rows(y, base_p)
    baseline = {"log_loss": float(base_rows.mean()), "auc": roc_auc(y, base_p)}
    loss = np.empty((len(units), n_repeats))
    auc = np.empty((len(units), n_repeats))
    row_se = np.empty(len(units))
    for u, columns in enumerate(units.values()):
        rng = np.random.RandomState(column_seed)
        order = np.arange(len(y))
        permuted = matrix.copy()
        deltas = np.zeros(len(y))
        for r in range(n_repeats):
            rng.shuffle(order)
            for column in columns:
                j = index[column]
                permuted[:, j] = permuted[order, j]
            p = model.predict_matrix(permuted)
            rows = log_loss_rows(y, p)
            deltas += rows - base_rows
            loss[u, r] = rows.mean() - baseline["log_loss"]  # = sklearn's neg_log_loss importance
            auc[u, r] = baseline["auc"] - roc_auc(y, p)
        deltas /= n_repeats
        row_se[u] = deltas.std(ddof=1) / np.sqrt(len(y)) if len(y) > 1 else np.nan
    return PermutationScores(tuple(units), units, baseline, {"log_loss": loss, "auc": auc}, row_se)


def _scored(model, frame, y, units, n_repeats, column_seed, scoring) -> PermutationScores:
    """Score permuted frames with sklearn-convention scorers (exactly sklearn's procedure)."""
    if scoring is None:
        from sklearn.metrics import get_scorer

        scoring = {"neg_log_loss": get_scorer("neg_log_loss"), "roc_auc": get_scorer("roc_auc")}
    estimator = as_sklearn(model)
    positions = {name: i for i, name in enumerate(frame.columns)}
    baseline = {name: float(scorer(estimator, frame, y)) for name, scorer in scoring.items()}
    importances = {name: np.empty((len(units), n_repeats)) for name in scoring}
    for u, columns in enumerate(units.values()):
        rng = np.random.RandomState(column_seed)
        order = np.arange(len(y))
        permuted = frame.copy()
        for r in range(n_repeats):
            rng.shuffle(order)
            for column in columns:
                shuffled = permuted.iloc[order, positions[column]]
                shuffled.index = permuted.index
                permuted[column] = shuffled
            for name, scorer in scoring.items():
                importances[name][u, r] = baseline[name] - scorer(estimator, permuted, y)
    return PermutationScores(tuple(units), units, baseline, importances, None)


MIN_ROWS = 100  # labelled rows below which permutation importance is insufficient_data


def permutation_importance(model: Model, frame, y, *, n_repeats: int = 5, seed: int = 0,
                           groups: dict[str, list[str]] | None = None, min_rows: int = MIN_ROWS) -> ExplainResult:
    """Log-loss increase (importance) and AUC drop per feature or group, largest first."""
    scores = permutation_scores(model, frame, y, n_repeats=n_repeats, seed=seed, groups=groups)
    loss, auc = scores.importances["log_loss"], scores.importances["auc"]
    items = []
    for u, unit in enumerate(scores.units):
        extra = {
            "se": float(scores.row_se[u]) if scores.row_se is not None else None,
            "auc_delta": float(auc[u].mean()),
            "auc_std": float(auc[u].std()),
        }
        if scores.columns[unit] != (unit,):
            extra["columns"] = list(scores.columns[unit])
        items.append(FeatureImportance(unit, float(loss[u].mean()), float(loss[u].std()), extra))
    y = binary_labels(y)
    reasons = []
    if len(frame) < min_rows:  # a shuffle of a handful of rows barely moves: zeros that mean nothing
        reasons.append(f"only {len(frame)} labelled rows (fewer than {min_rows}): importances are not measurable")
    if len(y) and y.min() == y.max():
        reasons.append(f"every label is {int(y[0])}: the AUC drop is undefined")
    return ExplainResult(
        method="permutation",
        model=model.name,
        rows=len(frame),
        features=sorted_importances(items),
        details={"metric": "log_loss increase", "baseline": scores.baseline, "n_repeats": n_repeats,
                 "seed": seed, "positives": int(y.sum()), "groups": {k: list(v) for k, v in (groups or {}).items()}},
        status="insufficient_data" if len(frame) < min_rows else "ok",
        reasons=tuple(reasons),
    )
