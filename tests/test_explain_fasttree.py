"""explain/fasttree.py (Fast TreeSHAP v2) equals LightGBM's pred_contrib to 1e-9 on small models with
numeric and native categorical splits, every missing-value mode, NaN, unseen and odd category
codes, repeated features on a path and single-leaf trees; explain.tree uses it and says so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("numba")

from explain import fasttree  # noqa: E402
from explain.models import LightGBMModel  # noqa: E402
from explain.tree import PRED_CONTRIB, shap_importance, shap_values  # noqa: E402
from tests.explain_fixtures import synthetic, train  # noqa: E402

TOLERANCE = 1e-9


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """3 numerics (one with NaN, one with many zeros) + 2 categoricals, label from all of them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame.loc[rng.random(n) < 0.1, "x0"] = np.nan
    frame.loc[rng.random(n) < 0.2, "x1"] = 0.0
    wide = rng.integers(0, 40, n).astype(float)
    wide[rng.random(n) < 0.05] = np.nan
    frame["wide"] = wide
    frame["small"] = rng.integers(0, 5, n).astype(float)
    z = (np.nan_to_num(frame.x0, nan=1.0) + 0.5 * frame.x1 * frame.x2 + (np.nan_to_num(wide, nan=1) % 3 == 0)
         - (frame.small == 2))
    return frame, (z + rng.normal(size=n) > 0.5).astype(int)


def _booster(params: dict, rounds: int = 25, objective: str = "binary", init_model=None):
    frame, label = _frame(3000, seed=0)
    target = label if objective == "binary" else label + frame.x2.to_numpy()
    return lgb.train({**dict(objective=objective, num_leaves=31, max_depth=6, learning_rate=0.2, min_data_in_leaf=5,
                             min_data_per_group=5, cat_smooth=1, num_threads=2, deterministic=True, seed=0,
                             verbose=-1), **params},
                     lgb.Dataset(frame, target, categorical_feature=["wide", "small"]), rounds,
                     init_model=init_model)


def _rows() -> np.ndarray:
    """Held-out rows plus the edge cases LightGBM decides in its own way."""
    matrix, _ = _frame(400, seed=1)
    matrix = matrix.to_numpy(dtype=np.float64)
    wide = 3
    matrix[0:20, wide] = 57.0  # a category never seen in training: right at every split
    matrix[20:40, wide] = np.nan
    matrix[40:45, wide] = -0.5  # truncates to 0
    matrix[45:50, wide] = -3.0  # negative: right
    matrix[50:55, wide] = 3.7  # truncates to 3
    matrix[55:60, wide] = 1e12  # beyond int: right
    matrix[60:70, 0] = 1e-40  # counts as 0 (LightGBM's dense-row conversion)
    matrix[70:80, 1] = -0.0
    matrix[80:90, :] = np.nan
    matrix[90:100, :] = 0.0
    return matrix


def _assert_matches(booster, matrix):
    ours = fasttree.contributions(fasttree.prepare(booster), matrix)
    theirs = booster.predict(matrix, pred_contrib=True)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= TOLERANCE
    assert np.max(np.abs(ours.sum(axis=1) - booster.predict(matrix, raw_score=True))) <= TOLERANCE  # additivity
    return ours


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"use_missing": False}],
                         ids=["missing-nan", "zero-as-missing", "no-missing"])
def test_equals_pred_contrib_across_missing_modes(params):
    booster = _booster(params)
    kinds = {(node["decision_type"], node["missing_type"]) for node in _splits(booster)}
    assert any(kind == "==" for kind, _ in kinds) and any(kind == "<=" for kind, _ in kinds)
    _assert_matches(booster, _rows())


def test_paths_that_split_twice_on_a_feature():
    booster = _booster({}, rounds=10)
    repeated = False
    for tree in booster.dump_model()["tree_info"]:
        repeated |= _repeats(tree["tree_structure"], ())
    assert repeated  # the unwinding case of LightGBM's recursion is exercised
    _assert_matches(booster, _rows())


def test_regression_and_single_leaf_trees():
    stump = _booster({"min_data_in_leaf": 10_000}, rounds=1, objective="regression")  # cannot split: one leaf
    assert stump.dump_model()["tree_info"][0]["num_leaves"] == 1
    grown = _booster({}, rounds=8, objective="regression", init_model=stump)
    assert [t["num_leaves"] for t in grown.dump_model()["tree_info"]][0] == 1
    assert max(t["num_leaves"] for t in grown.dump_model()["tree_info"]) > 1
    for booster in (stump, grown):
        ours = _assert_matches(booster, _rows())
    assert np.all(ours[:, -1] == ours[0, -1])


def test_equals_shap_tree_explainer():
    shap = pytest.importorskip("shap")
    booster = _booster({})
    matrix = _rows()[:100]
    theirs = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent").shap_values(matrix)
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    ours = fasttree.contributions(fasttree.prepare(booster), matrix)
    assert np.max(np.abs(ours[:, :-1] - theirs)) <= TOLERANCE


def test_threads_and_blocks_do_not_change_values():
    booster = _booster({}, rounds=5)
    plan, matrix = fasttree.prepare(booster), _rows()
    one = fasttree.contributions(plan, matrix, threads=1, block=1000)
    two = fasttree.contributions(plan, matrix, threads=2, block=7)
    np.testing.assert_array_equal(one, two)
    assert fasttree.contributions(plan, matrix[:0]).shape == (0, matrix.shape[1] + 1)
    with pytest.raises(ValueError, match="columns"):
        fasttree.contributions(plan, matrix[:, :2])


def test_unsupported_boosters_are_refused_with_a_reason():
    frame, label = _frame(600, seed=0)
    multiclass = lgb.train(dict(objective="multiclass", num_class=3, verbose=-1, num_threads=1),
                           lgb.Dataset(frame, label + (frame.small.to_numpy() > 2)), 3)
    with pytest.raises(fasttree.Unsupported, match="multiclass"):
        fasttree.prepare(multiclass)
    with pytest.raises(fasttree.Unsupported, match="entries"):
        fasttree.prepare(_booster({}, rounds=3), table_budget=8)
    linear = lgb.train(dict(objective="regression", linear_tree=True, num_leaves=4, verbose=-1, num_threads=1),
                       lgb.Dataset(frame[["x1", "x2"]], frame.x2.to_numpy() * 2), 2)
    with pytest.raises(fasttree.Unsupported, match="linear"):
        fasttree.prepare(linear)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return LightGBMModel.from_file(train(synthetic(3000, seed=1), tmp_path_factory.mktemp("fast") / "model.txt"))


def test_explain_tree_uses_the_fast_path_and_says_so(model):
    rows = synthetic(500, seed=2)
    fast, slow = shap_values(model, rows), shap_values(model, rows, fast=False)
    assert fast.algorithm == fasttree.ALGORITHM and slow.algorithm == PRED_CONTRIB
    assert np.max(np.abs(fast.values - slow.values)) <= TOLERANCE
    assert fast.base_value == pytest.approx(slow.base_value, abs=TOLERANCE)
    assert fast.additivity_error <= TOLERANCE
    result, _ = shap_importance(model, rows, sample=200)
    assert result.details["algorithm"] == fasttree.ALGORITHM


def test_explain_tree_falls_back_to_pred_contrib(model, monkeypatch):
    monkeypatch.setattr(fasttree, "DEFAULT_TABLE_BUDGET", 4)
    fresh = LightGBMModel(lgb.Booster(model_str=model.booster.model_to_string()), "fresh", {})
    values = shap_values(fresh, synthetic(50, seed=3))
    assert values.algorithm.startswith(PRED_CONTRIB) and "more than 4 entries" in values.algorithm
    assert values.additivity_error <= TOLERANCE


def _splits(booster):
    def walk(node):
        if "leaf_value" not in node:
            yield node
            yield from walk(node["left_child"])
            yield from walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        yield from walk(tree["tree_structure"])


def _repeats(node, seen) -> bool:
    if "leaf_value" in node:
        return False
    feature = node["split_feature"]
    return (feature in seen or _repeats(node["left_child"], seen + (feature,))
            or _repeats(node["right_child"], seen + (feature,)))
