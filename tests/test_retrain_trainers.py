"""The trainer registry and protocol, LightGBM, encodings and recalibration (oracles:
scikit-learn's IsotonicRegression and LogisticRegression; LightGBM's own text model)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigError
from retrain import base
from retrain.base import Dataset, FeatureSet, PluginError, TrainingError, get_trainer, known_trainers, load_model
from retrain.encoding import NumericScaler, Vocabulary, as_text
from retrain.evaluate import auc, calibration_ratio
from retrain.recalibrate import fit_isotonic, fit_platt
from trainer_plugins import plugins  # noqa: F401  (fixture)

FEATURES = FeatureSet(("x", "price"), ("colour", "device"))


def _data(n: int, seed: int, ctr_factor: float = 1.0) -> pd.DataFrame:
    """A known logistic world: colour=red and device=ios interact; price lowers clicks."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue", "rare"], n, p=[0.4, 0.35, 0.2499, 0.0001])
    device = rng.choice(["ios", "android"], n)
    x = rng.normal(0, 1, n)
    price = rng.lognormal(3, 1, n)
    main = -2.5 + 0.8 * x - 0.3 * np.log(price)
    z = main + 2.0 * ((colour == "red") == (device == "ios"))
    p = ctr_factor / (1 + np.exp(-z))
    return pd.DataFrame({"x": x, "price": price, "colour": colour, "device": device,
                         "click": (rng.random(n) < p).astype(np.int8), "true_logit": z, "no_interaction": main})


@pytest.fixture(scope="module")
def splits():
    frame = _data(40_000, 1)
    return (Dataset(frame.iloc[:28_000].reset_index(drop=True), FEATURES, ("click",)),
            Dataset(frame.iloc[28_000:34_000].reset_index(drop=True), FEATURES, ("click",)),
            frame.iloc[34_000:].reset_index(drop=True))


LGB = {"num_threads": 1, "min_data_in_leaf": 50, "num_boost_round": 200}


@pytest.fixture(scope="module")
def lgb_model(splits):
    trainer = get_trainer("lightgbm")
    return trainer.fit(splits[0], splits[1], trainer.validate_params(LGB))


# -- registry and protocol -------------------------------------------------------------

def test_builtin_trainers_are_registered():
    assert {"lightgbm", "dcn_v2", "esmm", "mmoe", "recalibrate"} <= set(known_trainers())


def test_unknown_trainer_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown trainer 'xgboost' \(known: .*dcn_v2.*lightgbm"):
        get_trainer("xgboost")


def test_bad_params_are_named():
    trainer = get_trainer("lightgbm")
    with pytest.raises(ConfigError, match=r"params\.num_leavs: Extra inputs are not permitted \(known: .*num_leaves"):
        trainer.validate_params({"num_leavs": 31})
    with pytest.raises(ConfigError, match=r"params\.learning_rate: .*greater than 0"):
        trainer.validate_params({"learning_rate": -0.1})
    with pytest.raises(ConfigError, match=r"params\.structure: .*'stacked' or 'parallel'"):
        get_trainer("dcn_v2").validate_params({"structure": "sideways"})


def test_entry_point_trainers_load_one_at_a_time(plugins):
    # Listing names every plugin and imports none of them (one of them cannot be imported).
    assert {"outside", "broken", "halfdone", "explodes", "lightgbm"} <= set(known_trainers())
    assert "dl_test_broken" not in sys.modules
    assert type(get_trainer("outside")).__name__ == "Outside" and get_trainer("outside").name == "outside"
    # A broken plugin leaves every other trainer working.
    assert type(get_trainer("lightgbm")).__name__ == "LightGBMTrainer"
    assert "dl_test_broken" not in sys.modules


@pytest.mark.parametrize("name, message", [
    ("broken", r"trainer plugin 'broken' \(dl_test_broken:Trainer, from driftline-test-plugins\) failed to load: "
               r"ModuleNotFoundError: No module named 'a_module_that_is_not_installed_anywhere'"),
    ("halfdone", r"trainer plugin 'halfdone' \(dl_test_half:Half, .*\) does not implement load"),
])
def test_a_broken_plugin_is_one_error_naming_it(plugins, name, message):
    with pytest.raises(PluginError, match=message) as caught:
        get_trainer(name)
    assert "\n" not in str(caught.value)


def test_a_plugin_raising_in_fit_is_one_error_naming_it(plugins, splits):
    train, valid, _ = splits
    with pytest.raises(TrainingError, match=r"^trainer 'explodes' failed in fit: ZeroDivisionError: the plugin"):
        base.run_fit(get_trainer("explodes"), train, valid, None)


@pytest.mark.parametrize("labels, message", [
    ([], "is empty"),
    ([0] * 50, "single class"),
    ([0, 2] * 25, "must be 0/1"),
])
def test_untrainable_data_is_refused_with_the_column_named(labels, message):
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float), "price": 1.0, "colour": "red",
                          "device": "ios", "click": labels})
    data = Dataset(frame, FEATURES, ("click",))
    with pytest.raises(TrainingError, match=message):
        get_trainer("lightgbm").fit(data, data, get_trainer("lightgbm").validate_params({}))


# -- encodings ----------------------------------------------------------------------------

def test_vocabulary_min_count_oov_and_nulls():
    frame = pd.DataFrame({"c": ["a", "a", "b", "b", "b", "z", None]})
    vocab = Vocabulary.fit(frame, ("c",), min_count=2)
    assert vocab.values["c"] == ("b", "a")  # most frequent first; 'z' (1 row) is out of vocabulary
    codes = vocab.codes(pd.DataFrame({"c": ["a", "b", "z", "new", None]}), "c")
    assert codes.tolist() == [1, 0, -1, -1, -1]
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    hashed = Vocabulary.fit(frame, ("c",), hash_buckets=7)
    out = hashed.codes(pd.DataFrame({"c": ["a", "a", "never-seen", None]}), "c")
    assert out[0] == out[1] and 0 <= out[2] < 7 and out[3] == -1


def test_integral_floats_and_ints_map_to_the_same_category():
    assert as_text(pd.Series([3, 4])).tolist() == as_text(pd.Series([3.0, 4.0])).tolist() == ["3", "4"]
    assert as_text(pd.Series([3.0, np.nan])).isna().tolist() == [False, True]


def test_numeric_scaler_log_transform_and_nulls():
    frame = pd.DataFrame({"v": [0.0, 9.0, 99.0, np.nan, -9.0]})
    scaler = NumericScaler.fit(frame, ("v",))
    t = np.sign(frame["v"]) * np.log1p(np.abs(frame["v"]))
    expected = ((t - t.mean()) / t.std(ddof=0)).fillna(0.0).to_numpy()
    np.testing.assert_allclose(scaler.transform(frame, ("v",))[:, 0], expected, rtol=1e-6)
    assert NumericScaler.from_dict(scaler.to_dict()) == scaler


# -- LightGBM -------------------------------------------------------------------------

def test_lightgbm_learns_the_planted_interaction_and_round_trips_exactly(lgb_model, splits, tmp_path):
    _, _, test = splits
    scores = lgb_model.predict(test)
    y = test["click"].to_numpy()
    # Close to the true model's AUC, and clearly above a model blind to the interaction.
    assert auc(y, scores) >= auc(y, test["true_logit"].to_numpy()) - 0.03
    assert auc(y, scores) > auc(y, test["no_interaction"].to_numpy()) + 0.03
    lgb_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.txt", "vocabulary.json"]
    assert (tmp_path / "m" / "model.txt").read_text().startswith("tree")  # LightGBM's text format
    assert np.array_equal(load_model(tmp_path / "m").predict(test), scores)
    # Early stopping kept at most the rounds asked for, and the saved model is the kept one.
    assert lgb_model.booster.num_trees() <= LGB["num_boost_round"]


def test_lightgbm_unseen_category_scores_like_a_missing_one(lgb_model, splits):
    rows = splits[2].head(3).copy()
    unseen, missing = rows.copy(), rows.copy()
    unseen["colour"] = "purple"
    missing["colour"] = None
    assert np.array_equal(lgb_model.predict(unseen), lgb_model.predict(missing))


def test_lightgbm_from_file_wraps_a_booster_trained_elsewhere(lgb_model, splits, tmp_path):
    from retrain.lightgbm_trainer import LightGBMModel

    lgb_model.booster.save_model(str(tmp_path / "model.txt"))
    vocabulary = {f: list(v) for f, v in lgb_model.vocab.values.items()}
    wrapped = LightGBMModel.from_file(tmp_path / "model.txt", FEATURES, vocabulary, ("click",))
    assert np.array_equal(wrapped.predict(splits[2]), lgb_model.predict(splits[2]))


# -- recalibration ------------------------------------------------------------------------

def test_isotonic_matches_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(3000), 3)  # with ties
    labels = (rng.random(3000) < scores ** 2).astype(float)
    x, y = fit_isotonic(scores, labels)
    oracle = IsotonicRegression(out_of_bounds="clip").fit(scores, labels)
    grid = np.linspace(-0.1, 1.1, 500)
    np.testing.assert_allclose(np.interp(grid, x, y), oracle.predict(grid), atol=1e-12)
    assert np.all(np.diff(y) >= 0)


def test_platt_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    scores = rng.uniform(0.01, 0.3, 5000)
    labels = (rng.random(5000) < 0.6 * scores).astype(float)
    a, b = fit_platt(scores, labels)
    z = np.log(scores / (1 - scores)).reshape(-1, 1)
    oracle = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(z, labels)
    assert a == pytest.approx(oracle.coef_[0, 0], rel=1e-4)
    assert b == pytest.approx(oracle.intercept_[0], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_recalibrate_repairs_a_planted_calibration_decay(method, lgb_model, tmp_path):
    decayed = _data(30_000, 9, ctr_factor=0.6)  # true CTR fell to 0.6x, features unchanged
    recent = Dataset(decayed.iloc[:20_000].reset_index(drop=True), FEATURES, ("click",))
    test = decayed.iloc[20_000:].reset_index(drop=True)
    y = test["click"].to_numpy()
    assert calibration_ratio(y, lgb_model.predict(test)) > 1.4  # over-predicts by ~1/0.6
    trainer = get_trainer("recalibrate")
    fixed = trainer.fit(recent, recent.take(slice(0, 0)), trainer.validate_params({"method": method}), base=lgb_model)
    assert calibration_ratio(y, fixed.predict(test)) == pytest.approx(1.0, abs=0.1)
    assert auc(y, fixed.predict(test)) == pytest.approx(auc(y, lgb_model.predict(test)), abs=0.01)  # monotone map
    fixed.save(tmp_path / "r")
    assert (tmp_path / "r" / "base" / "model.txt").exists() and (tmp_path / "r" / "calibration.json").exists()
    assert np.array_equal(load_model(tmp_path / "r").predict(test), fixed.predict(test))


def test_recalibrate_needs_a_production_model_and_enough_rows(splits):
    trainer = get_trainer("recalibrate")
    with pytest.raises(ConfigError, match="needs a production model"):
        trainer.fit(splits[0], splits[1], trainer.validate_params({}))
