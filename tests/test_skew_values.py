"""Feature-value skew through DuckDB: planted skews are found and named, tolerances hold,
join edge cases are reported (and a key that cannot join is refused), and the counts agree
with a pandas merge of the same small tables (the oracle)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from core.errors import SchemaError
from core.sources import Source
from skew.check import SkewCheck
from skew.feature_values import JoinSettings, Tolerance, value_skew
from skew_data import events as _events

N = 3000
KINDS = {"price": "numeric", "tenure": "numeric", "rate": "numeric", "device": "categorical", "slot": "categorical"}


def _write(df: pd.DataFrame, path) -> str:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return str(path)


def _skew(tmp_path, training: pd.DataFrame, serving: pd.DataFrame, **settings):
    t = _write(training, tmp_path / "training.parquet")
    s = _write(serving, tmp_path / "serving.parquet")
    kinds = {k: v for k, v in KINDS.items() if k in training.columns}
    return value_skew(Source(t), Source(s), "id", kinds, JoinSettings(**settings))


def _flagged(result) -> set[str]:
    return {n for n, c in result.features.items() if c.value_mismatches or c.serving_null or c.training_null}


def test_clean_data_gives_no_mismatch(tmp_path):
    events = _events()
    result = _skew(tmp_path, events, events.sample(frac=1.0, random_state=1))  # other row order
    assert result.join.matched == result.join.compared == N
    assert result.join.serving_only == result.join.training_only == result.join.duplicate_keys == 0
    assert _flagged(result) == set()
    # NaN equals NaN: the 5% missing tenures are missing on both sides and count as equal.
    assert result.features["tenure"].compared == N


def test_planted_value_skews_are_named(tmp_path):
    training = _events()
    serving = training.copy()
    serving["price"] = serving["price"] * 100  # units: cents instead of euros
    serving["tenure"] = serving["tenure"].fillna(0.0)  # a default value replacing nulls
    serving["device"] = serving["device"].replace({"tablet": "mobile"})  # a stale categorical mapping
    result = _skew(tmp_path, training, serving, max_examples=3)
    assert _flagged(result) == {"price", "tenure", "device"}
    price, tenure, device = (result.features[n] for n in ("price", "tenure", "device"))
    assert price.value_mismatches == N and price.serving_null == price.training_null == 0
    nulls = int(training["tenure"].isna().sum())
    # Null versus value is counted apart from value mismatches: training null, serving 0.0.
    assert tenure.value_mismatches == 0 and tenure.training_null == nulls and tenure.serving_null == 0
    assert device.value_mismatches == int((training["device"] == "tablet").sum())
    example = device.examples[0]
    assert example["serving"] == "mobile" and example["training"] == "tablet"
    assert training.set_index("id").loc[example["key"], "device"] == "tablet"
    assert len(price.examples) == 3
    assert all(e["serving"] == pytest.approx(e["training"] * 100) for e in price.examples)


def test_counts_match_a_pandas_merge(tmp_path):
    """Oracle: the same counts computed by pandas on the joined frame."""
    rng = np.random.default_rng(5)
    training = _events(seed=3)
    serving = training.copy()
    noisy = rng.random(N) < 0.2
    serving.loc[noisy, "rate"] = serving.loc[noisy, "rate"] + rng.normal(0, 1e-3, int(noisy.sum()))
    dropped = rng.random(N) < 0.1
    serving.loc[dropped, "price"] = np.nan
    result = _skew(tmp_path, training, serving, tolerance=Tolerance(absolute=5e-4, relative=0.0))
    joined = training.merge(serving, on="id", suffixes=("_t", "_s"))
    for name in ("rate", "price"):
        t, s = joined[f"{name}_t"], joined[f"{name}_s"]
        both = t.notna() & s.notna()
        expected_values = int((both & ~((s - t).abs() <= 5e-4)).sum())
        assert result.features[name].value_mismatches == expected_values
        assert result.features[name].serving_null == int((s.isna() & t.notna()).sum())
        assert result.features[name].training_null == int((t.isna() & s.notna()).sum())


def test_tolerance_and_rounding(tmp_path):
    training = _events()
    serving = training.copy()
    serving["price"] = serving["price"] * (1 + 1e-12)  # float noise below the default tolerance
    serving["rate"] = serving["rate"] + 1e-4  # above it
    result = _skew(tmp_path, training, serving)
    assert result.features["price"].value_mismatches == 0
    assert result.features["rate"].value_mismatches == N
    loose = _skew(tmp_path, training, serving, tolerance=Tolerance(absolute=1e-3))
    assert loose.features["rate"].value_mismatches == 0
    # Rounding to 2 decimals: a 0.001 shift changes the rounded value only near a rounding boundary.
    serving["price"] = training["price"] + 0.001
    rounded = _skew(tmp_path, training, serving, tolerances={"price": Tolerance(decimals=2)})
    expected = int((np.round(serving["price"], 2) != np.round(training["price"], 2)).sum())
    assert rounded.features["price"].value_mismatches == expected < N / 2


def test_nan_equals_nan_and_nan_is_missing(tmp_path):
    training = pd.DataFrame({"id": [1, 2, 3, 4], "price": [np.nan, np.nan, 1.0, 2.0]})
    serving = pd.DataFrame({"id": [1, 2, 3, 4], "price": [np.nan, None, 1.0, np.nan]})
    t = tmp_path / "t.parquet"
    s = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": training["id"], "price": pa.array(training["price"], from_pandas=False)}), t)
    pq.write_table(pa.table({"id": serving["id"], "price": pa.array([float("nan"), None, 1.0, float("nan")])}), s)
    result = value_skew(Source(str(t)), Source(str(s)), "id", {"price": "numeric"})
    price = result.features["price"]
    # NaN/NaN and NaN/null are both "missing on both sides"; 1.0 == 1.0; 2.0 vs NaN is missing at serving.
    assert (price.value_mismatches, price.serving_null, price.training_null) == (0, 1, 0)


def test_duplicates_and_one_sided_keys(tmp_path):
    training = _events()
    serving = training.copy()
    serving = serving[serving["id"] >= 100]  # ids 0..99: training only
    extra = _events(50, seed=9).assign(id=lambda d: d["id"] + 10_000)  # ids 10000..10049: serving only
    duplicated = training[training["id"].between(200, 209)]  # ten ids twice in training
    serving = pd.concat([serving, extra], ignore_index=True)
    training = pd.concat([training, duplicated], ignore_index=True)
    serving.loc[serving["id"].between(200, 209), "price"] = -1.0  # differ only where keys repeat
    result = _skew(tmp_path, training, serving)
    join = result.join
    assert (join.serving_rows, join.training_rows) == (N - 100 + 50, N + 10)
    assert join.matched == N - 100
    assert join.serving_only == 50 and join.training_only == 100
    assert join.duplicate_keys == join.training_duplicate_keys == 10 and join.serving_duplicate_keys == 0
    assert join.compared == N - 100 - 10
    assert join.examples["training_only"] == [0, 1, 2, 3, 4]
    assert join.examples["serving_only"] == [10_000, 10_001, 10_002, 10_003, 10_004]
    assert join.examples["duplicate"] == [200, 201, 202, 203, 204]
    # Duplicated keys are left out of the comparison, so the price change there is not counted.
    assert result.features["price"].value_mismatches == 0
    assert result.features["price"].compared == join.compared


def test_key_type_mismatch_is_refused_with_both_types(tmp_path):
    events = _events(100)
    t = _write(events, tmp_path / "t.parquet")
    s = _write(events.assign(id=events["id"].astype(str)), tmp_path / "s.parquet")
    with pytest.raises(SchemaError) as info:
        value_skew(Source(t), Source(s), "id", {"price": "numeric"})
    message = str(info.value)
    assert "'id'" in message and "BIGINT" in message and "VARCHAR" in message
    with pytest.raises(SchemaError, match=r"key column 'id' is int64 \(integer\) in the training data but string"):
        SkewCheck(key="id").run(Source(t), Source(s))
    with pytest.raises(SchemaError, match="key column 'nope' is missing"):
        value_skew(Source(t), Source(t), "nope", {"price": "numeric"})


def test_missing_and_unusable_columns_mark_only_that_feature(tmp_path):
    training = _events()
    serving = training.drop(columns=["rate"]).assign(price=lambda d: d["price"].astype(str) + "x")
    result = _skew(tmp_path, training, serving)
    assert "missing in the serving data" in result.features["rate"].message
    # Text that is not a number becomes missing at serving, counted as null versus value.
    assert result.features["price"].serving_null == N
    assert _flagged(result) == {"price"}


def test_mismatch_rate_per_segment(tmp_path):
    training = _events()
    serving = training.copy()
    on_tablet = serving["device"] == "tablet"
    serving.loc[on_tablet, "price"] = serving.loc[on_tablet, "price"] * 100  # one client's pipeline is wrong
    result = _skew(tmp_path, training, serving, segments=("device", "slot"))
    by = {(s.segment, s.value): s for s in result.segments}
    assert by[("device", "tablet")].mismatch_rate == 1.0
    assert by[("device", "mobile")].mismatch_rate == 0.0 and by[("device", "desktop")].mismatch_rate == 0.0
    assert by[("device", "tablet")].compared == int(on_tablet.sum())
    # A segment column the serving data lacks loses that breakdown, not the run.
    pq.write_table(pa.Table.from_pandas(serving, preserve_index=False), tmp_path / "s.parquet")
    pq.write_table(pa.Table.from_pandas(training, preserve_index=False), tmp_path / "t.parquet")
    report = SkewCheck(key="id", join=JoinSettings(segments=("device", "country"))).run(
        Source(tmp_path / "t.parquet"), Source(tmp_path / "s.parquet"))
    assert report.errors == ("segment column 'country' is missing in the serving data",)
    assert {s.segment for s in report.segments} == {"device"} and report.status == "alert"
    share = on_tablet.groupby(serving["slot"]).mean()
    for slot, expected in share.items():
        assert by[("slot", slot)].features["price"] == pytest.approx(expected)


def test_many_passes_give_the_same_counts(tmp_path, monkeypatch):
    """When one pass's hash table would not fit, features are split over passes; the answer is the same."""
    import skew.feature_values as fv

    # 10M build rows in 1.5 GB: a handful of features per pass; tiny inputs: all in one.
    assert 3 <= fv._features_per_pass(10_000_000, 0, fv.memory_bytes("1.5GB")) <= 8
    assert fv._features_per_pass(3_000, 2, fv.memory_bytes("1.5GB")) == fv._MAX_PER_PASS
    training = _events()
    serving = training.assign(price=training["price"] * 100, slot=training["slot"].replace({"1": "2"}))
    one = _skew(tmp_path, training, serving, segments=("device",))
    monkeypatch.setattr(fv, "_MAX_PER_PASS", 2)
    many = _skew(tmp_path, training, serving, segments=("device",))
    assert one.passes == 1 and many.passes == 3
    assert {n: (c.value_mismatches, c.serving_null, c.training_null, c.examples) for n, c in one.features.items()} \
        == {n: (c.value_mismatches, c.serving_null, c.training_null, c.examples) for n, c in many.features.items()}
    assert one.segments == many.segments


def test_windowed_hive_partitions_and_csv(tmp_path):
    """Only the window's events are joined (dt= partitions and the timestamp); CSV reads too."""
    start = datetime(2024, 6, 3, tzinfo=timezone.utc)
    for role in ("training", "serving"):
        for day in range(2):
            events = _events(500, seed=day).assign(id=lambda d, day=day: d["id"] + day * 1000)
            events["ts"] = [start + timedelta(days=day, seconds=int(i)) for i in range(500)]
            if role == "serving" and day == 1:
                events["price"] = events["price"] * 100  # skew on the second day only
            folder = tmp_path / role / f"dt={(start + timedelta(days=day)):%Y-%m-%d}"
            folder.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(events, preserve_index=False), folder / "part-0.parquet")
    training = Source(tmp_path / "training", timestamp_column="ts")
    serving = Source(tmp_path / "serving", timestamp_column="ts")
    kinds = {"price": "numeric", "device": "categorical"}
    first = value_skew(training, serving, "id", kinds, start=start, end=start + timedelta(days=1), timestamp="ts")
    second = value_skew(training, serving, "id", kinds, start=start + timedelta(days=1),
                        end=start + timedelta(days=2), timestamp="ts")
    assert first.join.matched == second.join.matched == 500 and first.join.training_only == 0
    assert first.features["price"].value_mismatches == 0 and second.features["price"].value_mismatches == 500
    events = _events(400)
    pacsv.write_csv(pa.Table.from_pandas(events, preserve_index=False), tmp_path / "t.csv")
    pacsv.write_csv(pa.Table.from_pandas(events.assign(rate=events["rate"] + 1), preserve_index=False),
                    tmp_path / "s.csv")
    from_csv = value_skew(Source(tmp_path / "t.csv"), Source(tmp_path / "s.csv"), "id", KINDS)
    assert _flagged(from_csv) == {"rate"} and from_csv.join.compared == 400
