"""Data quality on Spark (GX's Spark datasource, local[2]) gives the embedded engine's answers.

Same suite, same data: per-expectation success flags, unexpected and missing counts and the
check status are equal. Only the offending-value samples, observed type names and the counts
of type-list expectations may differ (each backend reports its own).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_quality import KINDS, window
from typer.testing import CliRunner

from checks.expectations import save_suite
from checks.quality import derive_suite, quality_between, read_for_suite, validate_table
from checks.quality_spark import validate_on_spark
from core.sources import Source

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
ROWS = 5000
COMPARED = ("expectation", "column", "success", "status", "element_count", "unexpected_count", "missing_count",
            "message")


def as_table(data: dict, nulls: np.ndarray | None = None) -> pa.Table:
    """The window with real NaNs in `tenure` (Parquet keeps NaN and null apart; pandas merges them)."""
    columns = {k: pa.array(v, from_pandas=k != "tenure") for k, v in data.items()}
    if nulls is not None:
        columns["tenure"] = pa.array(data["tenure"], mask=nulls)
    seconds = np.random.default_rng(0).integers(0, 86400, len(data["id"]))
    columns["ts"] = pa.array([T0 + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def write_parts(table: pa.Table, directory, parts: int = 3):
    directory.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for index, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        pq.write_table(table.slice(a, b - a), directory / f"part-{index:03d}.parquet")
    return directory


def faulty_window() -> tuple[pa.Table, set]:
    """One planted fault per column, so each is judged on its own."""
    data = window(ROWS, seed=9, id_offset=10**6)
    rng = np.random.default_rng(9)
    hit = rng.random(ROWS) < 0.05
    data["amount"][hit] *= 100.0  # out of range
    data["tenure"][rng.random(ROWS) < 0.12] = np.nan  # null-rate jump: NaNs and nulls
    nulls = rng.random(ROWS) < 0.08
    data["device"][hit] = "smartwatch"  # unseen category
    data["id"][:50] = data["id"][50:100]  # duplicated ids
    failed = {("expect_column_values_to_be_between", "amount"), ("expect_column_values_to_not_be_null", "tenure"),
              ("expect_column_values_to_be_in_set", "device"), ("expect_column_values_to_be_unique", "id")}
    return as_table(data, nulls), failed


@pytest.fixture(scope="module")
def suite():
    return derive_suite(as_table(window(20_000, seed=0)), KINDS, "id", ["score"], ["click"])


@pytest.fixture(scope="module")
def small_suite(suite, tmp_path_factory):
    """Two columns' expectations: enough for the bad-input cases, cheaper to validate."""
    kept = {"amount", "device"}
    small = {**suite, "expectations": [e for e in suite["expectations"] if e["kwargs"].get("column") in kept]}
    return str(save_suite(small, tmp_path_factory.mktemp("suite") / "suite.json"))


def embedded(suite: dict, directory, start=None, end=None, timestamp_column=None, sample_rows=1_000_000):
    source = Source(directory, timestamp_column=timestamp_column)
    table, rows = read_for_suite(source.batches(None, start, end), suite, sample_rows, source.schema)
    return validate_table(suite, table, rows)


def compared(result) -> list[tuple]:
    """What must agree. Type lists: pandas checks object columns value by value, Spark by schema only (no counts)."""
    rows = []
    for record in (result if isinstance(result, dict) else result.to_dict())["details"]["expectations"]:
        counted = record["expectation"] != "expect_column_values_to_be_in_type_list"
        rows.append(tuple(record[k] if counted or not k.endswith("count") else None for k in COMPARED))
    return rows


@pytest.mark.parametrize("kind", ["clean", "faults"])
def test_statuses_and_counts_match_the_embedded_engine(spark_engine, suite, tmp_path, kind):
    table, failed = (as_table(window(ROWS, seed=1, id_offset=10**6)), set()) if kind == "clean" else faulty_window()
    directory = write_parts(table, tmp_path / "window")
    local = embedded(suite, directory)
    spark = validate_on_spark(suite, spark_engine.source(str(directory)), 1_000_000)
    assert compared(spark) == compared(local)
    assert spark.status == local.status == ("ok" if kind == "clean" else "alert")
    assert {(r["expectation"], r["column"]) for r in spark.details["expectations"] if not r["success"]} == failed
    assert [(f.feature, f.status) for f in spark.features] == [(f.feature, f.status) for f in local.features]
    assert spark.details["validated_rows"] == spark.details["window_rows"] == ROWS and not spark.details["sampled"]
    if kind == "faults":
        device = next(r for r in spark.details["expectations"] if r["column"] == "device" and not r["success"])
        assert [v["value"] for v in device["offending_values"]] == ["smartwatch"]
    json.dumps(spark.to_dict(), allow_nan=False)


def test_a_pandas_only_suite_judges_spark_windows_alike(spark_engine, suite, tmp_path):
    """A suite saved before Spark type names existed (or written by hand) still passes a clean window."""
    from checks.quality_spark import with_spark_type_names

    pandas_only = {**suite, "expectations": [
        {**e, "kwargs": {**e["kwargs"], "type_list": [t for t in e["kwargs"]["type_list"] if not t.endswith("Type")]}}
        if e["type"] == "expect_column_values_to_be_in_type_list" else e for e in suite["expectations"]]}
    widened = with_spark_type_names(pandas_only)
    lists = {e["kwargs"]["column"]: e["kwargs"]["type_list"] for e in widened["expectations"]
             if e["type"] == "expect_column_values_to_be_in_type_list"}
    assert "StringType" in lists["device"] and "BooleanType" not in lists["device"]
    assert "DoubleType" in lists["amount"] and "StringType" not in lists["amount"]
    directory = write_parts(as_table(window(2000, seed=5, id_offset=10**7)), tmp_path / "window", 1)
    spark = validate_on_spark(pandas_only, spark_engine.source(str(directory)), 1_000_000)
    assert spark.status == "ok", [r for r in spark.details["expectations"] if not r["success"]]


# ------------------------------------------------------------------ bad input, as the embedded engine


def test_missing_column_gives_the_embedded_errors(spark_engine, small_suite, tmp_path):
    directory = write_parts(as_table(window(2000, seed=2)).drop_columns(["device"]), tmp_path / "window", 1)
    local = quality_between(str(directory), suite_path=small_suite)
    spark = quality_between(str(directory), suite_path=small_suite, engine=spark_engine)
    assert compared(spark) == compared(local)
    device = [r for r in spark.details["expectations"] if r["column"] == "device"]
    assert [r["status"] for r in device] == ["alert", "error", "error", "error"]  # does not exist; the rest cannot run
    assert {r["message"] for r in device[1:]} == {"column 'device' is missing"}
    assert spark.status == local.status == "alert"


def test_corrupt_file_is_recorded_and_the_rest_validated(spark_engine, small_suite, tmp_path):
    directory = write_parts(as_table(window(3000, seed=3)), tmp_path / "window")
    (directory / "part-001.parquet").write_bytes(b"PAR1 this is not parquet at all")
    local = quality_between(str(directory), suite_path=small_suite)
    spark = quality_between(str(directory), suite_path=small_suite, engine=spark_engine)
    assert compared(spark) == compared(local)
    assert spark.partial and local.partial
    assert [b.split(": ")[0] for b in spark.bad_files] == [str(directory / "part-001.parquet")]
    assert spark.details["validated_rows"] == local.details["validated_rows"] == 2000
    assert spark.status == local.status == "ok"


def test_empty_window_is_insufficient_data(spark_engine, small_suite, tmp_path):
    from checks.expectations import load_suite

    suite = load_suite(small_suite)
    directory = write_parts(as_table(window(1000, seed=4)), tmp_path / "window", 1)
    later = T0 + timedelta(days=30)
    local = embedded(suite, directory, later, later + timedelta(days=1), "ts")
    source = spark_engine.source(str(directory), timestamp_column="ts")
    spark = validate_on_spark(suite, source, 1_000_000, later, later + timedelta(days=1))
    assert spark.status == local.status == "insufficient_data"
    assert spark.details["window_rows"] == local.details["window_rows"] == 0


# ------------------------------------------------------------------ the window check and the CLI


def test_window_check_on_the_spark_engine_samples_big_windows(spark_engine, small_suite, tmp_path):
    from checks.quality import QualityWindowCheck
    from checks.settings import QualityCheckConfig

    directory = write_parts(as_table(window(ROWS, seed=5)), tmp_path / "window")
    runner = SimpleNamespace(engine=spark_engine, config=SimpleNamespace(base_dir=tmp_path))
    context = SimpleNamespace(runner=runner, start=T0, end=T0 + timedelta(days=1), result_context={"model": "m"},
                              serving_source=lambda: spark_engine.source(str(directory), timestamp_column="ts"))
    model = SimpleNamespace(model_schema=SimpleNamespace(predictions=("score",), labels=()))
    check = QualityWindowCheck(model, QualityCheckConfig(suite=small_suite, sample_rows=2000))
    result = check.run(context)
    assert result.status == "ok" and result.model == "m"
    assert result.details["sampled"] and result.details["window_rows"] == ROWS
    assert 1700 < result.details["validated_rows"] < 2300  # a Bernoulli sample of expected size 2000


def test_cli_check_quality_with_engine_spark(spark, small_suite, tmp_path):
    from monitor.cli import app

    directory = write_parts(faulty_window()[0], tmp_path / "window", 2)
    args = ["check", "quality", "--suite", small_suite, "--current", str(directory), "--format", "json",
            "--fail-on", "alert"]
    runner = CliRunner()
    local = runner.invoke(app, args, catch_exceptions=False)
    remote = runner.invoke(app, [*args, "--engine", "spark", "--spark-master", "local[2]"], catch_exceptions=False)
    assert remote.exit_code == local.exit_code == 1, remote.output
    mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
    assert theirs["status"] == mine["status"] == "alert"
    assert compared(theirs) == compared(mine)
    bad = runner.invoke(app, [*args, "--engine", "spark", "--spark-conf", "executor.memory=2g"])
    assert bad.exit_code == 2 and "--spark-conf" in bad.stderr
