"""Train/serve skew on Spark: the key join, the replay and the whole check give the
embedded engine's (pyarrow + DuckDB) counts, examples and statuses."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import SchemaError
from core.sources import Source
from skew.check import SkewCheck
from skew.feature_values import JoinSettings, Tolerance, value_skew
from skew.spark_values import spark_value_skew
from skew_data import events

KINDS = {"price": "numeric", "tenure": "numeric", "rate": "numeric", "device": "categorical", "slot": "categorical"}


def planted(tmp_path, n: int = 3000):
    """Serving logs with every kind of value skew, one-sided and duplicated keys, split over files."""
    training = events(n)
    serving = training.copy()
    tablet = serving["device"] == "tablet"
    serving.loc[tablet, "price"] *= 100  # one client's pipeline serves cents
    serving["tenure"] = serving["tenure"].fillna(0.0)  # a default replacing nulls
    serving.loc[serving.index % 7 == 0, "device"] = serving["device"].replace({"desktop": "mobile"})
    serving.loc[serving.index % 11 == 0, "rate"] += 1e-13  # below the tolerance: not a mismatch
    serving.loc[serving.index % 13 == 0, "rate"] = np.nan  # missing at serving only
    serving = pd.concat([serving.iloc[40:], serving.iloc[100:103]])  # 40 training-only, 3 duplicated keys
    extra = events(25, seed=9).assign(id=np.arange(n, n + 25))  # serving-only keys
    serving = pd.concat([serving, extra]).sample(frac=1.0, random_state=3)
    for name, frame, parts in (("training", training, 3), ("serving", serving, 2)):
        (tmp_path / name).mkdir()
        for i, chunk in enumerate(np.array_split(frame, parts)):
            pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), tmp_path / name / f"p{i}.parquet")
    return tmp_path / "training", tmp_path / "serving"


def test_value_skew_counts_and_examples_match_duckdb(spark_engine, tmp_path):
    training, serving = planted(tmp_path)
    settings = JoinSettings(segments=("device", "slot"), max_examples=3,
                            tolerances={"price": Tolerance(decimals=1)})
    local = value_skew(Source(training), Source(serving), "id", KINDS, settings)
    remote = spark_value_skew(spark_engine.source(str(training)), spark_engine.source(str(serving)), "id", KINDS,
                              settings)
    assert remote.join == local.join
    assert local.join.duplicate_keys == 3 and local.join.training_only == 40 and local.join.serving_only == 25
    assert set(remote.features) == set(local.features)
    for name, counts in local.features.items():
        assert dataclasses.asdict(remote.features[name]) == dataclasses.asdict(counts), name
    flagged = {n for n, c in local.features.items() if c.value_mismatches or c.serving_null or c.training_null}
    assert flagged == {"price", "tenure", "device", "rate"}
    assert [dataclasses.asdict(s) for s in remote.segments] == [dataclasses.asdict(s) for s in local.segments]


def test_missing_and_retyped_columns_mark_only_that_feature(spark_engine, tmp_path):
    training = events(500)
    serving = training.drop(columns=["rate"]).assign(tenure=training["tenure"].astype(str))
    serving["price"] = serving["price"].map(lambda v: f"{v:.2f}")  # numbers as text: compared as numbers
    serving["slot"] = pd.Timestamp("2026-01-01").as_unit("us")  # a timestamp where a category was
    for name, frame in (("t.parquet", training), ("s.parquet", serving)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / name)
    kinds = dict(KINDS, slot="numeric")
    local = value_skew(Source(tmp_path / "t.parquet"), Source(tmp_path / "s.parquet"), "id", kinds)
    remote = spark_value_skew(spark_engine.source(str(tmp_path / "t.parquet")),
                              spark_engine.source(str(tmp_path / "s.parquet")), "id", kinds)
    assert remote.features["rate"].message == local.features["rate"].message
    assert "column 'rate' is missing in the serving data" in remote.features["rate"].message
    assert remote.features["slot"].message.startswith("column 'slot' has type TIMESTAMP")
    assert remote.features["price"] == local.features["price"] and remote.features["price"].compared == 500


def test_the_whole_check_and_a_missing_key(spark_engine, tmp_path):
    training, serving = planted(tmp_path)
    check = SkewCheck(key="id", features=KINDS, join=JoinSettings(segments=("device",)))
    local = check.run(Source(training), Source(serving))
    remote = check.run(spark_engine.source(str(training)), spark_engine.source(str(serving)), engine=spark_engine)
    assert remote.status == local.status == "alert"
    assert [(f.feature, f.status, f.compared, f.value_mismatches) for f in remote.features] == \
        [(f.feature, f.status, f.compared, f.value_mismatches) for f in local.features]
    for mine, theirs in zip(local.features, remote.features):
        assert theirs.distribution_score == pytest.approx(mine.distribution_score, rel=1e-9, abs=1e-12)
    with pytest.raises(SchemaError, match="key column 'order_id' is missing in the training data"):
        SkewCheck(key="order_id").run(spark_engine.source(str(training)), spark_engine.source(str(serving)),
                                      engine=spark_engine)


def test_scheduled_check_on_spark_matches_on_the_demo_skew_day(spark, small_world, demo_raw_config):
    from monitor.config import parse_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    demo_raw_config["models"][0]["profile_granularity"] = None
    config = parse_config(demo_raw_config, "test", small_world.root.parent)
    skew_day = [i for i in small_world.incidents() if i["kind"] == "skew"][0]["day"]
    day = [d for d in range(small_world.serving_days) if small_world.serving_day(d) == skew_day][0]
    start = small_world.serving_start + timedelta(days=day)
    store = ResultsStore(config.store_url())
    try:
        results = {}
        for engine in ("local", "spark"):
            runner = ModelRunner(config, config.models[0], store, engine=engine)
            results[engine] = runner.run(start, start + timedelta(days=1), checks=["train_serve_skew"])[0]
    finally:
        store.close()
    local, remote = results["local"], results["spark"]
    assert remote.status == local.status == "alert"
    assert set(remote.alerting_features) == set(local.alerting_features) == {"cart_value", "user_tenure_days"}
    assert remote.details["join"] == local.details["join"]
    assert remote.details["value_skew"] == local.details["value_skew"]
    assert remote.details["prediction"]["compared"] == local.details["prediction"]["compared"] > 0
    assert remote.details["prediction"]["mismatch_rate"] == local.details["prediction"]["mismatch_rate"] == 0.0


def test_cli_check_skew_with_engine_spark(spark, tmp_path):
    import json

    from typer.testing import CliRunner

    from monitor.cli import app

    training, serving = planted(tmp_path)
    args = ["check", "skew", "--training", str(training), "--serving", str(serving), "--key", "id",
            "--segments", "device", "--format", "json"]
    runner = CliRunner()
    local = json.loads(runner.invoke(app, args, catch_exceptions=False).stdout)
    result = runner.invoke(app, [*args, "--engine", "spark"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    remote = json.loads(result.stdout)
    assert remote["status"] == local["status"] == "alert"
    assert remote["join"] == local["join"]
    assert [(f["feature"], f["status"], f["value_mismatches"]) for f in remote["features"]] == \
        [(f["feature"], f["status"], f["value_mismatches"]) for f in local["features"]]
