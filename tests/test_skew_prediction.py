"""Prediction skew: replaying the logged features through the right model reproduces the
logged scores exactly; a wrong model, or a logged version that was scored by another
model, is flagged per version; plain LightGBM files with pandas categoricals replay the
way LightGBM's own predict does (the oracle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from core.errors import DataSourceError
from skew.prediction import LightGBMAdapter, load_adapter, prediction_skew, world_adapter


@pytest.fixture(scope="module")
def day(small_world) -> pa.Table:
    serving = ds.dataset(small_world.serving_path, partitioning="hive")
    return serving.to_table(filter=ds.field("dt") == small_world.serving_day(0))


@pytest.fixture(scope="module")
def other_model(small_world, tmp_path_factory):
    """A second model on the same features: trained on a slice of the history with other settings."""
    import lightgbm as lgb
    import pyarrow.parquet as pq

    from monitor.demo.world import FEATURES, _matrix

    history = pq.read_table(small_world.reference_path).slice(0, 20_000).to_pandas()
    vocab = small_world.manifest()["vocabulary"]
    cols = {f: history[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in small_world.numeric_features}
    for f in small_world.categorical_features:
        codes = pd.Categorical(history[f], categories=vocab[f]).codes
        cols[f] = np.where(codes < 0, np.nan, codes.astype(np.float64))
    data = lgb.Dataset(_matrix(cols), label=history["click"], feature_name=list(FEATURES),
                       categorical_feature=list(small_world.categorical_features), params={"verbose": -1})
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1}, data, 20)
    path = tmp_path_factory.mktemp("models") / "v2.txt"
    booster.save_model(str(path))
    return LightGBMAdapter(lgb.Booster(model_file=str(path)), vocab, name="v2")


def _batches(table: pa.Table, rows: int = 1000):
    return table.to_batches(max_chunksize=rows)


def test_replay_reproduces_the_logged_scores_exactly(small_world, day):
    result = prediction_skew(_batches(day), {None: world_adapter(small_world.root)}, "score", "model_version",
                             "example_id")
    assert result.compared == day.num_rows > 0
    assert result.mismatches == 0 and result.max_abs_diff == 0.0 and result.mean_abs_diff == 0.0
    assert result.status == "ok" and [v.model_version for v in result.by_version] == ["lgbm-v1"]
    # The directory form (world.json + model/model.txt) gives the same adapter.
    assert isinstance(load_adapter(small_world.root), LightGBMAdapter)


def test_a_wrong_model_is_flagged(day, other_model):
    result = prediction_skew(_batches(day), {None: other_model}, "score", "model_version", "example_id")
    assert result.status == "alert" and result.mismatch_rate > 0.9 and result.max_abs_diff > 0.01
    worst = result.examples[0]
    assert abs(worst["logged"] - worst["replayed"]) == pytest.approx(result.max_abs_diff)
    assert worst["key"].startswith("ex-") and worst["model_version"] == "lgbm-v1"


def test_a_shifted_model_version_is_flagged_per_version(small_world, day, other_model):
    """30% of the traffic was scored by v2 while still logged as lgbm-v1 (a leaking canary);
    rows honestly logged as lgbm-v2 replay through their own artifact."""
    frame = day.to_pandas()
    v2_scores = other_model(frame)
    rng = np.random.default_rng(0)
    leaked = rng.random(len(frame)) < 0.3
    honest = ~leaked & (rng.random(len(frame)) < 0.2)
    frame.loc[leaked, "score"] = v2_scores[leaked]
    frame.loc[honest, "score"] = v2_scores[honest]
    frame.loc[honest, "model_version"] = "lgbm-v2"
    adapters = {"lgbm-v1": world_adapter(small_world.root), "lgbm-v2": other_model}
    result = prediction_skew(_batches(pa.Table.from_pandas(frame, preserve_index=False)), adapters, "score",
                             "model_version", "example_id")
    versions = {v.model_version: v for v in result.by_version}
    assert versions["lgbm-v2"].status == "ok" and versions["lgbm-v2"].mismatches == 0
    assert versions["lgbm-v1"].status == "alert"
    differs = np.abs(v2_scores - day.column("score").to_numpy()) > 1e-6
    assert versions["lgbm-v1"].mismatches == int((leaked & differs).sum())
    assert result.status == "alert" and any("lgbm-v1" in r for r in result.reasons)
    # A version without an artifact is reported, not guessed.
    partial = prediction_skew(_batches(pa.Table.from_pandas(frame, preserve_index=False)),
                              {"lgbm-v1": world_adapter(small_world.root)}, "score", "model_version")
    missing = {v.model_version: v for v in partial.by_version}["lgbm-v2"]
    assert missing.status == "insufficient_data" and "no model artifact" in missing.message


def test_plain_lightgbm_file_with_pandas_categoricals(tmp_path):
    """Features from booster.feature_name(); text columns mapped with the categories stored in the
    model file. Oracle: LightGBM's own predict on the training-style pandas frame."""
    import lightgbm as lgb

    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({
        "price": rng.lognormal(3, 0.5, n),
        "device": pd.Categorical(rng.choice(["mobile", "desktop", "tablet"], n)),
        "os": pd.Categorical(rng.choice(["ios", "android", "windows"], n)),
    })
    y = ((frame["device"] == "mobile") ^ (rng.random(n) < 0.3)).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_per_group": 5},
                        lgb.Dataset(frame, label=y), 15)
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    adapter = load_adapter(path)
    assert adapter.features == ("price", "device", "os")
    logs = frame.assign(device=frame["device"].astype(str), os=frame["os"].astype(str))
    logs.loc[:9, "os"] = "symbian"  # unseen at training: missing for LightGBM
    expected = booster.predict(logs.assign(device=pd.Categorical(logs["device"]), os=pd.Categorical(logs["os"])))
    replayed = adapter(pa.Table.from_pandas(logs, preserve_index=False))
    assert np.array_equal(replayed, expected)
    table = pa.Table.from_pandas(logs.assign(score=expected), preserve_index=False)
    result = prediction_skew(_batches(table, 700), {None: adapter}, "score")
    assert result.mismatches == 0 and result.compared == n and result.by_version[0].model_version is None


def test_bad_models_and_missing_columns(tmp_path, day, small_world):
    (tmp_path / "model.txt").write_text("not a model\n")
    with pytest.raises(DataSourceError, match="not a LightGBM text model"):
        load_adapter(tmp_path / "model.txt")
    with pytest.raises(DataSourceError, match="model file not found"):
        load_adapter(tmp_path / "absent.txt")
    result = prediction_skew(_batches(day.drop_columns(["cart_value"])), {None: world_adapter(small_world.root)},
                             "score", "model_version")
    assert result.status == "error" and "cart_value" in result.by_version[0].message


def test_trainer_interface_models_and_a_transform_mismatch(small_world, tmp_path):
    """A model saved through retrain/'s trainer interface replays through its own encoding; logged
    features that went through another transform than the one the score was computed on are caught."""
    import pyarrow.parquet as pq

    from retrain.base import Dataset, FeatureSet, get_trainer

    history = pq.read_table(small_world.reference_path).slice(0, 8000).to_pandas()
    features = FeatureSet(tuple(small_world.numeric_features), tuple(small_world.categorical_features))
    trainer = get_trainer("lightgbm")
    params = trainer.validate_params({"num_boost_round": 10, "num_threads": 1, "min_data_in_leaf": 50})
    model = trainer.fit(Dataset(history.iloc[:6000], features, ("click",)),
                        Dataset(history.iloc[6000:], features, ("click",)), params)
    model.save(tmp_path / "saved")
    adapter = load_adapter(tmp_path / "saved")
    assert set(adapter.features) == set(features.names)
    logs = history.assign(score=model.predict(history))
    same = prediction_skew(_batches(pa.Table.from_pandas(logs, preserve_index=False)), {None: adapter}, "score")
    assert same.mismatches == 0 and same.compared == len(history)
    skewed = logs.assign(cart_value=logs["cart_value"] * 100)  # the log holds cents, the model saw euros
    result = prediction_skew(_batches(pa.Table.from_pandas(skewed, preserve_index=False)), {None: adapter}, "score")
    expected = int((np.abs(model.predict(skewed) - logs["score"].to_numpy()) > 1e-6).sum())
    assert result.mismatches == expected > 0
