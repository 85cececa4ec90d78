"""The Spark engine gives the embedded engine's profiles and check results (local[2] Spark).

Counts, histograms, sketches and category counts must be identical; moments may differ
by floating-point rounding (the merge order differs). Partitionings are drawn at random:
the merge law again, this time across Spark partitions.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.drift import DriftCheck
from core.engines import LocalEngine
from core.errors import DataSourceError, SchemaError
from core.profile import FeatureError, build_spec
from core.sources import Source

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def sample_table(rows: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, rows)
    x[rng.random(rows) < 0.03] = np.nan
    x[rng.random(rows) < 0.005] = np.inf
    price = rng.lognormal(3, 1, rows)
    clicks = rng.integers(0, 12, rows).astype(np.int64)
    device = rng.choice(["ios", "android", "web", "tv"], rows, p=[0.4, 0.4, 0.15, 0.05]).astype(object)
    device[rng.random(rows) < 0.02] = None
    seconds = rng.integers(0, 2 * 86400, rows)
    return pa.table({
        "x": pa.array(x, mask=rng.random(rows) < 0.02),
        "price": price,
        "clicks": clicks,
        "device": pa.array(device, pa.string()),
        "flag": pa.array(rng.random(rows) < 0.3),
        "ts": pa.array([T0 + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")),
    })


def write_parts(table: pa.Table, directory, cuts: list[int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < table.num_rows)), table.num_rows]
    for index, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(table.slice(a, b - a), directory / f"part-{index:03d}.parquet")


FEATURES = {"x": "numeric", "price": "numeric", "clicks": "numeric", "device": "categorical", "flag": "categorical"}


def assert_same_profile(local, spark) -> None:
    assert spark.rows == local.rows
    assert set(spark.features) == set(local.features)
    for name, mine in local.features.items():
        theirs = spark.features[name].to_dict()
        mine = mine.to_dict()
        if mine["kind"] == "numeric":
            for key in ("rows", "null_count", "nan_count", "inf_count", "count", "bin_counts", "sketch", "edges",
                        "min", "max"):
                assert theirs[key] == mine[key], (name, key)
            assert theirs["mean"] == pytest.approx(mine["mean"], rel=1e-12, abs=1e-12)
            assert theirs["m2"] == pytest.approx(mine["m2"], rel=1e-9)
            assert np.allclose(theirs["bin_sums"], mine["bin_sums"], rtol=1e-12, atol=1e-9)
        else:
            assert theirs == mine, name


@pytest.fixture(scope="module")
def reference_table():
    return sample_table(6000, seed=1)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(1, 4999), max_size=5), repartition=st.integers(1, 5))
def test_profiles_match_over_random_partitionings(spark_engine, reference_table, tmp_path_factory, cuts,
                                                  repartition):
    data = sample_table(5000, seed=2, shift=0.3)
    directory = tmp_path_factory.mktemp("parts")
    write_parts(data, directory, cuts)
    spec = build_spec(reference_table, FEATURES)
    local = LocalEngine().profile(Source(directory), list(FEATURES), spec)
    source = spark_engine.source(str(directory))
    spark = source.run(lambda frame: _profile_repartitioned(frame, spec, repartition), list(FEATURES))
    assert_same_profile(local, spark)


def _profile_repartitioned(frame, spec, partitions):
    from core.engines.spark.profile import profile_frame

    return profile_frame(frame.repartition(partitions), spec)[0]


def test_window_filter_and_tree_reduce_match(spark_engine, reference_table, tmp_path, monkeypatch):
    import core.engines.spark.profile as spark_profile

    write_parts(sample_table(8000, seed=3), tmp_path / "logs", [2000, 5000])
    spec = build_spec(reference_table, FEATURES)
    start, end = T0 + timedelta(hours=6), T0 + timedelta(hours=30)
    local = LocalEngine().profile(Source(tmp_path / "logs", timestamp_column="ts"), list(FEATURES), spec, start, end)
    assert 0 < local.rows < 8000
    monkeypatch.setattr(spark_profile, "TREE_REDUCE_ABOVE", 0)  # force the executor-side tree reduce
    source = spark_engine.source(str(tmp_path / "logs"), timestamp_column="ts")
    assert_same_profile(local, spark_engine.profile(source, list(FEATURES), spec, start, end))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_text_formats_match(spark_engine, reference_table, tmp_path, fmt):
    import pyarrow.csv as pacsv

    table = sample_table(3000, seed=4).drop_columns(["ts", "x"])  # no NaN/inf in text formats
    path = tmp_path / f"current.{'csv' if fmt == 'csv' else 'jsonl'}"
    if fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        path.write_text("\n".join(__import__("json").dumps(row) for row in table.to_pylist()) + "\n")
    features = {k: v for k, v in FEATURES.items() if k != "x"}
    spec = build_spec(reference_table, features)
    local = LocalEngine().profile(Source(path), list(features), spec)
    spark = spark_engine.profile(spark_engine.source(str(path)), list(features), spec)
    assert_same_profile(local, spark)


def test_reference_and_drift_statuses_match(spark_engine, reference_table, tmp_path):
    from core.reference import build_reference

    write_parts(reference_table, tmp_path / "ref", [1000, 4000])
    shifted = sample_table(5000, seed=5, shift=0.6)
    write_parts(shifted, tmp_path / "cur", [2500])
    local_ref = build_reference(Source(tmp_path / "ref"), FEATURES)
    spark_ref = spark_engine.reference(spark_engine.source(str(tmp_path / "ref")), FEATURES)
    assert spark_ref.spec.to_dict() == local_ref.spec.to_dict()  # whole reference sampled: same edges
    assert_same_profile(local_ref.profile, spark_ref.profile)
    assert sum(c.rows for c in spark_ref.chunks) == reference_table.num_rows and len(spark_ref.chunks) >= 2
    local_cur = LocalEngine().profile(Source(tmp_path / "cur"), list(FEATURES), local_ref.spec)
    spark_cur = spark_engine.profile(spark_engine.source(str(tmp_path / "cur")), list(FEATURES), spark_ref.spec)
    local_result = DriftCheck().fit(local_ref.profile).evaluate(local_cur)
    spark_result = DriftCheck().fit(spark_ref.profile).evaluate(spark_cur)
    assert spark_result.status == local_result.status == "alert"
    for mine, theirs in zip(local_result.features, spark_result.features):
        assert (theirs.feature, theirs.status) == (mine.feature, mine.status)
        assert theirs.score == pytest.approx(mine.score, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------ bad input, as the embedded engine


def test_missing_column_is_a_feature_error_in_both(spark_engine, reference_table, tmp_path):
    write_parts(sample_table(2000, seed=6).drop_columns(["price"]), tmp_path / "cur", [])
    spec = build_spec(reference_table, FEATURES)
    local = LocalEngine().profile(Source(tmp_path / "cur"), list(FEATURES), spec)
    spark = spark_engine.profile(spark_engine.source(str(tmp_path / "cur")), list(FEATURES), spec)
    assert isinstance(spark.features["price"], FeatureError)
    assert spark.features["price"].message == local.features["price"].message == "column 'price' is missing"
    assert spark.features["clicks"].count == local.features["clicks"].count == 2000


def test_corrupt_file_is_skipped_and_named(spark_engine, reference_table, tmp_path):
    write_parts(sample_table(3000, seed=7), tmp_path / "cur", [1000, 2000])
    (tmp_path / "cur" / "part-001.parquet").write_bytes(b"PAR1 this is not parquet at all")
    spec = build_spec(reference_table, FEATURES)
    local_source = Source(tmp_path / "cur")
    local = LocalEngine().profile(local_source, list(FEATURES), spec)
    source = spark_engine.source(str(tmp_path / "cur"))
    spark = spark_engine.profile(source, list(FEATURES), spec)
    assert spark.rows == local.rows == 2000
    assert [path for path, _ in source.report.bad_files] == [str(tmp_path / "cur" / "part-001.parquet")]
    assert source.report.partial and local_source.report.partial
    again = spark_engine.profile(source, list(FEATURES), spec)  # a later job skips it, recorded once
    assert again.rows == 2000 and len(source.report.bad_files) == 1


def test_empty_window_and_missing_timestamp(spark_engine, reference_table, tmp_path):
    write_parts(sample_table(1000, seed=8), tmp_path / "cur", [])
    spec = build_spec(reference_table, FEATURES)
    later = T0 + timedelta(days=30)
    source = spark_engine.source(str(tmp_path / "cur"), timestamp_column="ts")
    empty = spark_engine.profile(source, list(FEATURES), spec, later, later + timedelta(days=1))
    assert empty.rows == 0
    wrong = spark_engine.source(str(tmp_path / "cur"), timestamp_column="event_time")
    with pytest.raises(SchemaError, match="timestamp column 'event_time' is missing") as spark_error:
        spark_engine.profile(wrong, list(FEATURES), spec, T0, later)
    with pytest.raises(SchemaError) as local_error:
        LocalEngine().profile(Source(tmp_path / "cur", timestamp_column="event_time"), list(FEATURES), spec, T0, later)
    assert str(spark_error.value) == str(local_error.value)


def test_missing_location_names_it(spark_engine, tmp_path):
    with pytest.raises(DataSourceError, match="nowhere: no such file or directory"):
        spark_engine.source(str(tmp_path / "nowhere"))


def test_missing_java_or_pyspark_says_what_to_install(monkeypatch):
    import builtins

    from core.engines.spark import session
    from core.errors import MissingDependencyError

    monkeypatch.setenv("JAVA_HOME", "/nonexistent-jdk")
    with pytest.raises(MissingDependencyError, match="Java 17 or newer: apt-get install openjdk-17-jre-headless"):
        session.require_spark()
    real_import = builtins.__import__

    def no_pyspark(name, *args, **kwargs):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    with pytest.raises(MissingDependencyError, match=r"pip install 'driftline\[spark\]'"):
        session.require_spark()


def test_uris_are_listed_by_spark(spark_engine, reference_table, tmp_path):
    """A URI goes through Spark's own filesystems (here file://; s3a:// or hdfs:// alike)."""
    write_parts(sample_table(3000, seed=10), tmp_path / "cur", [1000])
    (tmp_path / "cur" / "part-001.parquet").write_bytes(b"PAR1 garbage")
    spec = build_spec(reference_table, FEATURES)
    local = LocalEngine().profile(Source(tmp_path / "cur"), list(FEATURES), spec)
    source = spark_engine.source(f"file://{tmp_path / 'cur'}")
    assert len(source.files) == 2 and all(f.startswith("file:") for f in source.files)
    assert_same_profile(local, spark_engine.profile(source, list(FEATURES), spec))
    assert [path.rsplit("/", 1)[1] for path, _ in source.report.bad_files] == ["part-001.parquet"]
    with pytest.raises(DataSourceError, match="nowhere"):
        spark_engine.source(f"file://{tmp_path / 'nowhere'}")


def test_reference_chunks_reduced_on_the_executors_match(spark_engine, reference_table, tmp_path, monkeypatch):
    import core.engines.spark.profile as spark_profile

    write_parts(reference_table, tmp_path / "ref", [1500, 3000, 4500])
    collected = spark_engine.reference(spark_engine.source(str(tmp_path / "ref")), FEATURES, n_chunks=4)
    monkeypatch.setattr(spark_profile, "TREE_REDUCE_ABOVE", 0)  # reduceByKey per chunk instead of collect
    reduced = spark_engine.reference(spark_engine.source(str(tmp_path / "ref")), FEATURES, n_chunks=4)
    assert_same_profile(collected.profile, reduced.profile)
    assert [c.rows for c in reduced.chunks] == [c.rows for c in collected.chunks]
    assert sum(c.rows for c in reduced.chunks) == reference_table.num_rows


@pytest.mark.parametrize("partitions, limit", [(1, 2_999), (4, 2_999)])
def test_max_rows_holds_inside_the_profile_job(spark_engine, reference_table, tmp_path, monkeypatch, partitions,
                                               limit):
    """A partition over the limit stops on its executor; partitions each under it but over it together
    are refused before the driver merges any of them (as the label-profile job does)."""
    import core.engines.spark.profile as spark_profile
    from core.errors import LimitExceededError

    write_parts(sample_table(3_000, seed=12), tmp_path / "cur", [])
    spec = build_spec(reference_table, FEATURES)
    decoded = []
    decode = spark_profile._decode
    monkeypatch.setattr(spark_profile, "_decode", lambda payload: decoded.append(1) or decode(payload))
    source = spark_engine.source(str(tmp_path / "cur"))

    def profile(frame):
        return spark_profile.profile_frame(frame.repartition(partitions), spec, max_rows=limit, location="cur")

    with pytest.raises(LimitExceededError, match=f"cur: more than {limit} rows in the window") as raised:
        source.run(profile, list(FEATURES))
    stopped_on_executor = spark_profile.TOO_MANY_ROWS in str(raised.value.__cause__ or "")
    assert stopped_on_executor == (partitions == 1) and decoded == []
    assert source.run(lambda frame: spark_profile.profile_frame(frame, spec, max_rows=3_000), list(FEATURES))[0].rows \
        == 3_000


def test_limits_hold_on_spark(spark_engine, reference_table, tmp_path):
    from core.errors import LimitExceededError
    from core.sources import Limits

    write_parts(sample_table(2000, seed=11), tmp_path / "cur", [])
    spec = build_spec(reference_table, FEATURES)
    rows = spark_engine.source(str(tmp_path / "cur"), limits=Limits(max_rows=1999))
    with pytest.raises(LimitExceededError, match="more than 1999 rows in the window"):
        spark_engine.profile(rows, list(FEATURES), spec)
    with pytest.raises(LimitExceededError, match="exceeds the limit of 1000"):
        spark_engine.source(str(tmp_path / "cur"), limits=Limits(max_bytes=1000))
