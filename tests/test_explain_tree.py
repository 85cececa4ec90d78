"""SHAP on LightGBM: pred_contrib = shap.TreeExplainer = brute-force Shapley values; additivity;
planted features; sampling error; gain/split importances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from explain.models import LightGBMModel
from explain.tree import sample_frame, shap_importance, shap_values
from tests.explain_fixtures import synthetic, train


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = train(synthetic(6000, seed=1), tmp_path_factory.mktemp("tree") / "model.txt")
    return LightGBMModel.from_file(path)


@pytest.fixture(scope="module")
def rows():
    return synthetic(3000, seed=2)


def test_pred_contrib_equals_shap_tree_explainer(model, rows):
    shap = pytest.importorskip("shap")
    frame = rows.iloc[:300]
    ours = shap_values(model, frame)
    explainer = shap.TreeExplainer(model.booster, feature_perturbation="tree_path_dependent")
    theirs = explainer.shap_values(ours.matrix)
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    np.testing.assert_allclose(ours.values, theirs, rtol=0, atol=1e-10)
    assert ours.base_value == pytest.approx(float(np.ravel(explainer.expected_value)[-1]), abs=1e-10)


def _goes_left(node, value) -> bool:
    if node["decision_type"] == "==":
        return int(value) in {int(c) for c in str(node["threshold"]).split("||")}
    return value <= node["threshold"]


def _count(node) -> float:
    return node.get("leaf_count", node.get("internal_count"))


def _expected(node, x, subset) -> float:
    """E[tree(x) | x_S] the path-dependent way: unknown features follow both children by cover."""
    if "leaf_value" in node:
        return node["leaf_value"]
    left, right = node["left_child"], node["right_child"]
    if node["split_feature"] in subset:
        return _expected(left if _goes_left(node, x[node["split_feature"]]) else right, x, subset)
    weights = _count(left), _count(right)
    return (weights[0] * _expected(left, x, subset) + weights[1] * _expected(right, x, subset)) / sum(weights)


def test_pred_contrib_equals_brute_force_shapley_values(model, rows):
    """Exact Shapley values of the path-dependent value function, by enumerating every subset."""
    trees = [t["tree_structure"] for t in model.booster.dump_model()["tree_info"]]
    frame = rows.iloc[:12]
    ours = shap_values(model, frame)
    m = len(model.features)
    for x, phi in zip(ours.matrix, ours.values):
        value = {}
        for size in range(m + 1):
            for subset in itertools.combinations(range(m), size):
                value[subset] = sum(_expected(t, x, set(subset)) for t in trees)
        for i in range(m):
            others = [j for j in range(m) if j != i]
            exact = 0.0
            for size in range(m):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                for subset in itertools.combinations(others, size):
                    exact += weight * (value[tuple(sorted(subset + (i,)))] - value[subset])
            assert phi[i] == pytest.approx(exact, abs=1e-9)
        assert ours.base_value == pytest.approx(value[()], abs=1e-9)


def test_values_plus_base_equal_the_raw_score(model, rows):
    values = shap_values(model, rows)
    raw = model.booster.predict(values.matrix, raw_score=True)
    np.testing.assert_allclose(values.base_value + values.values.sum(axis=1), raw, rtol=0, atol=1e-9)
    assert values.additivity_error < 1e-9
    # and the raw score is the log-odds of the predicted probability
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), model.predict(rows), rtol=1e-12)


def test_planted_strong_feature_ranks_first_and_noise_is_near_zero(model, rows):
    result, _ = shap_importance(model, rows, sample=None)
    ranking = result.ranking()
    importance = result.importances()
    assert ranking[0] == "strong"
    assert set(ranking[1:3]) == {"a", "colour"}  # the interaction pair
    # SHAP explains the model, which spends a few splits on noise; permutation importance on
    # held-out rows is the "no effect means ~0" test (test_explain_permutation).
    assert ranking[-1] == "noise" and importance["noise"] < 0.1 * importance["strong"]
    assert result.to_dict()["additivity_error"] < 1e-9


def test_sample_importance_is_within_its_sampling_error_of_the_full_data(model, rows):
    full, _ = shap_importance(model, rows, sample=None)
    part, _ = shap_importance(model, rows, sample=500, seed=3)
    assert part.rows == 500 and full.rows == len(rows)
    truth = full.importances()
    for item in part.features:
        # the population here is finite (3000 rows), so 4 standard errors is generous
        assert abs(item.importance - truth[item.feature]) <= 4 * item.std + 1e-12
        assert item.std > 0 or truth[item.feature] == 0


def test_gain_and_split_importances_are_the_boosters(model, rows):
    result, _ = shap_importance(model, rows, sample=200)
    gain = dict(zip(model.features, model.booster.feature_importance("gain")))
    split = dict(zip(model.features, model.booster.feature_importance("split")))
    for item in result.features:
        assert item.extra["gain"] == pytest.approx(gain[item.feature])
        assert item.extra["split"] == split[item.feature]
    assert sum(i.extra["gain_share"] for i in result.features) == pytest.approx(1.0)


def test_sample_frame_is_uniform_without_replacement(rows):
    sample = sample_frame(rows, 100, seed=4)
    assert len(sample) == 100 and sample.index.is_unique
    assert sample_frame(rows, 10**6) is rows
