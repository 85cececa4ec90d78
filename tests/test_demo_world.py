"""The demo world is deterministic, well-formed, and its planted incidents are really there."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from monitor.demo.world import ensure_world, generate_world, load_world, score_frame

ROWS = 6000  # enough clicks per day to see the offer x OS interaction flip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world"), seed=7, rows_per_day=ROWS)


@pytest.fixture(scope="module")
def serving(world) -> pd.DataFrame:
    return ds.dataset(world.serving_path, partitioning="hive").to_table().to_pandas()


def _day(world, serving, day_index):
    return serving[serving["dt"] == world.serving_day(day_index)]


def _tables(w):
    ref = pq.read_table(w.reference_path)
    srv = ds.dataset(w.serving_path, partitioning="hive").to_table().sort_by("example_id")
    return ref, srv


def test_same_seed_same_data_different_seed_differs(tmp_path):
    kw = dict(rows_per_day=800, history_days=3, serving_days=2)
    a = generate_world(tmp_path / "a", seed=3, **kw)
    b = generate_world(tmp_path / "b", seed=3, **kw)
    c = generate_world(tmp_path / "c", seed=4, **kw)
    ref_a, srv_a = _tables(a)
    ref_b, srv_b = _tables(b)
    ref_c, srv_c = _tables(c)
    assert ref_a.equals(ref_b) and srv_a.equals(srv_b)
    assert a.model_path.read_text() == b.model_path.read_text()
    assert a.ground_truth_path.read_text() == b.ground_truth_path.read_text()
    assert not ref_a.equals(ref_c) and not srv_a.equals(srv_c)


def test_layout_and_schema(world, serving):
    assert world.reference_path == world.root / "reference" / "history.parquet"
    assert world.serving_start.utcoffset().total_seconds() == 0
    assert world.serving_days == 7
    parts = sorted(world.serving_path.glob("dt=*/hour=*/part-0.parquet"))
    assert len(parts) == 7 * 24
    ref = pq.read_table(world.reference_path)
    features = list(world.numeric_features + world.categorical_features)
    assert len(features) == 11
    assert set(features + ["example_id", "ts", "click", "conversion"]) == set(ref.column_names)
    assert str(ref.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert ref.num_rows == 14 * ROWS and len(serving) == 7 * ROWS
    for col in ("score", "model_version", "label_ts"):
        assert col in serving.columns
    assert (serving["label_ts"] > serving["ts"]).all()
    ids = pd.concat([ref.column("example_id").to_pandas(), serving["example_id"]])
    assert ids.is_unique
    # Each partition holds only its own hour of its own day.
    assert (serving["ts"].dt.hour == serving["hour"]).all()
    assert (serving["hour_of_day"] == serving["hour"]).all()
    assert (serving["ts"].dt.strftime("%Y-%m-%d") == serving["dt"]).all()
    assert (serving["conversion"] <= serving["click"]).all()
    assert 0.02 < ref.column("click").to_numpy().mean() < 0.05


def test_manifest_load_and_ensure(world, tmp_path):
    assert load_world(world.root) == world
    assert ensure_world(world.root, seed=7, rows_per_day=ROWS) == world
    with pytest.raises(FileNotFoundError):
        load_world(tmp_path / "nothing")
    manifest = json.loads((world.root / "world.json").read_text())
    assert manifest["seed"] == 7 and manifest["params"]["rows_per_day"] == ROWS
    assert set(manifest["vocabulary"]) == set(world.categorical_features)


def test_ground_truth_incidents(world):
    by_name = {i["name"]: i for i in world.incidents()}
    expected = {"device_mix_shift": (1, "data_drift"), "train_serve_skew": (3, "skew"),
                "concept_drift": (4, "concept_drift"), "calibration_decay": (5, "calibration"),
                "price_rise": (6, "data_drift")}
    assert {n: (i["day_index"], i["kind"]) for n, i in by_name.items()} == expected
    for inc in by_name.values():
        assert inc["day"] == world.serving_day(inc["day_index"])
    assert world.clean_days() == [world.serving_day(d) for d in (0, 2)]
    # The week ends on an incident: the latest window of every schedule has something to show.
    assert max(i["day_index"] for i in by_name.values()) == world.serving_days - 1


def test_device_mix_shift(world, serving):
    mobile = {d: (_day(world, serving, d)["device"] == "mobile").mean() for d in range(7)}
    assert mobile[1] > 0.7 and all(0.38 < mobile[d] < 0.52 for d in (0, 2, 6))  # day 6: prices only
    day1 = _day(world, serving, 1)
    assert set(day1.loc[day1["device"] == "mobile", "os"]) == {"android", "ios"}


def test_train_serve_skew(world, serving):
    day0, day3 = _day(world, serving, 0), _day(world, serving, 3)
    ratio = day3["cart_value"].median() / day0["cart_value"].median()
    assert 80 < ratio < 125
    assert day3["user_tenure_days"].isna().all()
    assert 0.01 < day0["user_tenure_days"].isna().mean() < 0.06
    assert np.array_equal(score_frame(world, day3), day3["score"].to_numpy())


def test_concept_drift_flips_offer_os_interaction(world, serving):
    offers = world.ground_truth()["interaction_offers"]

    def favoured_gap(df):  # CTR on the favoured OS minus CTR on the other one
        fav = np.where(df["offer_id"].isin(offers["ios_favoured"]), 1,
                       np.where(df["offer_id"].isin(offers["android_favoured"]), -1, 0))
        os_sign = np.where(df["os"] == "ios", 1, np.where(df["os"] == "android", -1, 0))
        mask = (fav != 0) & (os_sign != 0)
        click = df["click"].to_numpy()
        return click[mask & (fav == os_sign)].mean() - click[mask & (fav != os_sign)].mean()

    assert favoured_gap(_day(world, serving, 0)) > 0.02
    assert favoured_gap(_day(world, serving, 4)) < -0.02
    # Inputs look the same: the device/os mix is that of a clean day.
    assert abs((_day(world, serving, 4)["os"] == "ios").mean()
               - (_day(world, serving, 0)["os"] == "ios").mean()) < 0.03


def test_calibration_decay(world, serving):
    ctr = {d: _day(world, serving, d)["click"].mean() for d in range(7)}
    assert all(ctr[5] < 0.8 * ctr[d] for d in (0, 2))
    score5 = _day(world, serving, 5)["score"].mean()
    assert score5 > 1.3 * ctr[5]  # the model still predicts the old base rate


def test_price_rise_on_the_last_day(world, serving):
    """Every offer's price is 1.3x its list price on day 6; the rest of the traffic is as on a clean day,
    and clicks respond to the new prices the way the true label model says (a little fewer)."""
    from monitor.demo.world import PRICE_RISE_FACTOR

    def offer_price(day):  # median price per offer
        return _day(world, serving, day).groupby("offer_id", observed=True)["offer_price"].median()

    ratio = offer_price(6) / offer_price(0)
    assert np.allclose(ratio, PRICE_RISE_FACTOR, rtol=0.02)
    for d in (0, 2):
        assert abs((_day(world, serving, 6)["device"] == "mobile").mean()
                   - (_day(world, serving, d)["device"] == "mobile").mean()) < 0.03
    assert np.array_equal(score_frame(world, _day(world, serving, 6)), _day(world, serving, 6)["score"].to_numpy())


def test_model_reproduces_logged_score_and_ranks(world, serving):
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    booster = lgb.Booster(model_file=str(world.model_path))
    assert booster.num_trees() >= 50
    assert set(booster.feature_name()) == set(world.numeric_features + world.categorical_features)
    day0 = _day(world, serving, 0)
    assert np.array_equal(score_frame(world, day0), day0["score"].to_numpy())
    assert (serving["model_version"] == "lgbm-v1").all()
    assert roc_auc_score(day0["click"], day0["score"]) > 0.6
