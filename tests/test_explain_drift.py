"""Attribution drift: ranking statistics, identical windows, concept drift (labels) vs data drift (SHAP)."""

from __future__ import annotations

import pytest

from explain.check import attribute
from explain.drift import Attribution, AttributionThresholds, compare, ndcg_at_k, spearman
from explain.models import LightGBMModel
from tests.explain_fixtures import synthetic, train

KINDS = {"strong": "numeric", "weak": "numeric", "noise": "numeric", "a": "numeric", "colour": "categorical"}


def test_ndcg_and_spearman_laws():
    reference = {"a": 4.0, "b": 2.0, "c": 1.0, "d": 0.0}
    assert ndcg_at_k(reference, reference, 3) == 1.0
    assert spearman(reference, reference) == 1.0
    # Hand-computed: current order b, a, c with relevance 2, 4, 1 against the ideal 4, 2, 1.
    current = {"a": 3.0, "b": 5.0, "c": 1.0, "d": 0.0}
    ideal = 4 + 2 / 1.5849625007211563 + 1 / 2
    assert ndcg_at_k(reference, current, 3) == pytest.approx((2 + 4 / 1.5849625007211563 + 1 / 2) / ideal)
    reversed_ = {k: -v for k, v in reference.items()}
    assert ndcg_at_k(reference, reversed_, 2) < 0.3
    assert spearman(reference, reversed_) == pytest.approx(-1.0)
    # Negative importances count as irrelevant, not as negative gains.
    assert ndcg_at_k({"a": 1.0, "b": -5.0}, {"a": 0.0, "b": 1.0}, 2) == pytest.approx(1 / 1.5849625007211563)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = LightGBMModel.from_file(train(synthetic(8000, seed=1), tmp_path_factory.mktemp("drift") / "m.txt"))
    reference_frame = synthetic(6000, seed=7)
    reference, _, spec = attribute(model, reference_frame, "label", n_repeats=2, seed=0, shap_rows=2000)
    return model, reference_frame, reference, spec


def _current(model, frame, spec) -> Attribution:
    return attribute(model, frame, "label", spec, n_repeats=2, seed=0, shap_rows=2000)[0]


def test_identical_windows_give_ndcg_one_and_no_alert(setup):
    model, frame, reference, spec = setup
    result = compare(reference, _current(model, frame, spec), KINDS)
    assert result.status == "ok"
    for ranking in result.details["rankings"].values():
        assert ranking["ndcg"] == 1.0 and ranking["spearman"] == pytest.approx(1.0) and not ranking["flagged"]
    assert all(f.status == "ok" and f.score == 0.0 for f in result.features)
    assert Attribution.from_dict(reference.to_dict()) == reference


def test_a_fresh_window_from_the_same_world_stays_quiet(setup):
    model, _, reference, spec = setup
    result = compare(reference, _current(model, synthetic(6000, seed=8), spec), KINDS)
    assert result.status == "ok", [(f.feature, f.reasons) for f in result.features if f.status != "ok"]


def test_concept_drift_alerts_on_the_interacting_features_through_labelled_permutation(setup):
    model, _, reference, spec = setup
    result = compare(reference, _current(model, synthetic(6000, seed=9, flip=True), spec), KINDS)
    statuses = {f.feature: f.status for f in result.features}
    assert result.status == "alert"
    assert statuses["a"] == "alert" and statuses["colour"] == "alert"
    assert statuses["strong"] == "ok" and statuses["noise"] == "ok"
    per_feature = result.details["features"]
    assert per_feature["a"]["permutation_current"] < 0 < per_feature["a"]["permutation_reference"]
    # SHAP of the fixed model does not see it: P(x) did not move.
    shap = result.details["rankings"]["mean_abs_shap"]
    assert shap["ndcg"] > 0.99 and not shap["flagged"]
    assert all(per_feature[f]["shap_wasserstein"] < 0.1 for f in KINDS)
    assert result.details["rankings"]["permutation_logloss"]["ndcg"] < 0.9


def test_input_drift_moves_the_shap_distribution(setup):
    model, _, reference, spec = setup
    result = compare(reference, _current(model, synthetic(6000, seed=10, shift=1.5), spec), KINDS)
    strong = next(f for f in result.features if f.feature == "strong")
    assert strong.status == "alert" and strong.score > 0.2
    assert result.details["features"]["strong"]["mean_abs_shap_change"] != 0


def test_small_windows_are_insufficient_data(setup):
    model, frame, reference, spec = setup
    small = _current(model, frame.iloc[:100], spec)
    result = compare(reference, small, KINDS, AttributionThresholds(min_rows=500))
    assert result.status == "insufficient_data"


def test_importance_rows_for_the_exporter(setup):
    model, frame, reference, spec = setup
    rows = compare(reference, reference, KINDS).details["importance"]
    methods = {(r["feature"], r["method"]) for r in rows}
    assert methods == {(f, m) for f in KINDS for m in ("mean_abs_shap", "permutation_logloss")}
    assert all(set(r) >= {"feature", "method", "importance", "std"} for r in rows)
