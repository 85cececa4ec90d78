"""Permutation importance: identical to scikit-learn's, planted features, grouped shuffles, bad labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explain.models import LightGBMModel, as_sklearn
from explain.permutation import binary_labels, permutation_importance, permutation_scores, roc_auc
from core.errors import SchemaError
from tests.explain_fixtures import synthetic, train

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return LightGBMModel.from_file(train(synthetic(6000, seed=1), tmp_path_factory.mktemp("perm") / "m.txt"))


@pytest.fixture(scope="module")
def held_out():
    frame = synthetic(2000, seed=5)
    return frame.drop(columns="label"), frame["label"].to_numpy()


def test_equals_sklearn_permutation_importance_exactly(model, held_out):
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.metrics import get_scorer

    X, y = held_out
    scoring = {"neg_log_loss": get_scorer("neg_log_loss"), "roc_auc": get_scorer("roc_auc")}
    ours = permutation_scores(model, X, y, n_repeats=4, seed=3, scoring=scoring)
    theirs = sk_permutation_importance(as_sklearn(model), X, y, scoring=scoring, n_repeats=4, random_state=3)
    for name in scoring:
        np.testing.assert_array_equal(ours.importances[name], theirs[name].importances)
    # The built-in fast path (shuffling encoded columns, own metrics) gives the same numbers.
    fast = permutation_scores(model, X, y, n_repeats=4, seed=3)
    np.testing.assert_allclose(fast.importances["log_loss"], theirs["neg_log_loss"].importances, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast.importances["auc"], theirs["roc_auc"].importances, rtol=1e-12, atol=1e-15)


def test_auc_and_log_loss_match_sklearn_metrics(model, held_out):
    from sklearn.metrics import log_loss, roc_auc_score

    X, y = held_out
    p = model.predict(X)
    p[:50] = 0.5  # ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    result = permutation_importance(model, X, y, n_repeats=2)
    assert result.details["baseline"]["log_loss"] == pytest.approx(log_loss(y, model.predict(X)), rel=1e-12)


def test_planted_strong_feature_first_and_no_effect_feature_near_zero(model, held_out):
    X, y = held_out
    result = permutation_importance(model, X, y, n_repeats=5, seed=0)
    by_name = {f.feature: f for f in result.features}
    assert result.ranking()[0] == "strong"
    assert by_name["strong"].extra["auc_delta"] > 0.1
    noise = by_name["noise"]
    # "about zero" = within three row-sampling standard errors, and tiny next to the strong feature
    assert abs(noise.importance) <= 3 * noise.extra["se"]
    assert abs(noise.importance) < 0.02 * by_name["strong"].importance
    assert len(result.to_dict()["features"]) == len(model.features)


class _Average:
    """P(y) = sigmoid(3 * mean(left, right)): twin columns that can stand in for each other.
    Records every matrix it scores, to inspect the shuffles."""

    name = "average"
    features = ("left", "right", "other")

    def __init__(self):
        self.seen = []

    def encode(self, frame):
        return frame[list(self.features)].to_numpy(dtype=np.float64)

    def predict_matrix(self, matrix):
        self.seen.append(matrix.copy())
        return 1 / (1 + np.exp(-(1.5 * (matrix[:, 0] + matrix[:, 1]) + 0.1 * matrix[:, 2])))

    def predict(self, frame):
        return self.predict_matrix(self.encode(frame))


def test_a_group_is_shuffled_with_one_shared_row_permutation():
    rng = np.random.default_rng(0)
    twin = rng.normal(size=3000)
    frame = pd.DataFrame({"left": twin, "right": twin + 0.1 * rng.normal(size=3000), "other": rng.normal(size=3000)})
    y = (rng.random(3000) < _Average().predict(frame)).astype(int)
    single = {f.feature: f.importance for f in permutation_importance(_Average(), frame, y, n_repeats=3).features}
    recorder = _Average()
    grouped = permutation_importance(recorder, frame, y, n_repeats=3, groups={"pair": ["left", "right"]})
    pair = next(f for f in grouped.features if f.feature == "pair")
    assert pair.extra["columns"] == ["left", "right"]
    # A twin stands in for its shuffled partner; shuffling both loses much more.
    assert pair.importance > 2 * max(single["left"], single["right"]) > 0
    # Every scored matrix of the group keeps each row's (left, right) pair together.
    original = {tuple(r) for r in frame[["left", "right"]].to_numpy()}
    shuffled = recorder.seen[1:4]  # baseline first, then the group's repeats
    for matrix in shuffled:
        assert {tuple(r) for r in matrix[:, :2]} == original
        assert not np.array_equal(matrix[:, 0], frame["left"].to_numpy())
    # A group of one is exactly the feature on its own.
    alone = permutation_scores(_Average(), frame, y, groups={"solo": ["other"]}, seed=0)
    plain = permutation_scores(_Average(), frame, y, seed=0)
    np.testing.assert_array_equal(alone.importances["log_loss"][alone.units.index("solo")],
                                  plain.importances["log_loss"][plain.units.index("other")])


def test_bad_groups_and_labels_are_schema_errors(model, held_out):
    X, y = held_out
    with pytest.raises(SchemaError, match="'nope' is not a model feature"):
        permutation_importance(model, X, y, groups={"g": ["strong", "nope"]})
    with pytest.raises(SchemaError, match="in two groups"):
        permutation_importance(model, X, y, groups={"g": ["strong", "weak"], "h": ["weak"]})
    with pytest.raises(SchemaError, match="label column 'click' is not binary"):
        binary_labels([0, 1, 2], "click")
    with pytest.raises(SchemaError, match="not binary"):
        binary_labels(["yes", "no"], "click")
    with pytest.raises(SchemaError, match="null"):
        binary_labels([0, None, 1], "click")
    assert binary_labels([True, False]).tolist() == [1, 0]
