"""Hive `dt=`/`hour=` partitions are pruned by window: a window opens only the files that can hold its rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.sources import Source

START = datetime(2026, 11, 27, tzinfo=timezone.utc)
DAYS = 2


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two days of hourly partitions, 60 rows an hour, one a minute (the last a microsecond before the hour)."""
    root = tmp_path_factory.mktemp("logs")
    for hour in range(24 * DAYS):
        begin = START + timedelta(hours=hour)
        ts = [begin + timedelta(minutes=m) for m in range(59)] + [begin + timedelta(hours=1, microseconds=-1)]
        folder = root / f"dt={begin:%Y-%m-%d}" / f"hour={begin:%H}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                                 "x": np.full(60, float(hour))}), folder / "part-0.parquet")
    return root


def read(logs, start, end):
    source = Source(logs, timestamp_column="ts")
    rows = sum(b.num_rows for b in source.batches(["x"], start, end))
    return rows, source.report.files


@pytest.mark.parametrize("start, end, rows, files", [
    (START + timedelta(hours=5), START + timedelta(hours=6), 60, 1),                          # one hour
    (START, START + timedelta(days=1), 24 * 60, 24),                                          # a day ending at midnight
    (START + timedelta(hours=23), START + timedelta(hours=25), 120, 2),                       # across midnight
    (START + timedelta(hours=5, minutes=30), START + timedelta(hours=6, minutes=30), 60, 2),  # off the hour
    (START + timedelta(hours=47), START + timedelta(days=3), 60, 1),                          # past the data
    (START + timedelta(hours=7, microseconds=-1), START + timedelta(hours=7), 1, 1),           # the last microsecond
    (START - timedelta(days=1), START + timedelta(days=DAYS), DAYS * 24 * 60, DAYS * 24),     # everything
])
def test_a_window_opens_only_its_partitions_and_reads_all_its_rows(logs, start, end, rows, files):
    assert read(logs, start, end) == (rows, files)


def test_the_rows_are_those_of_an_unpruned_read(logs):
    start, end = START + timedelta(hours=22, minutes=15), START + timedelta(hours=26, minutes=45)
    source = Source(logs, timestamp_column="ts")
    pruned = pa.Table.from_batches(list(source.batches(["ts", "x"], start, end))).sort_by("ts")
    whole = pq.read_table(logs).select(["ts", "x"]).sort_by("ts")
    mask = (whole["ts"].to_numpy() >= np.datetime64(start.replace(tzinfo=None), "us")) & (
        whole["ts"].to_numpy() < np.datetime64(end.replace(tzinfo=None), "us"))
    assert pruned.equals(whole.filter(pa.array(mask)))


def test_naive_window_bounds_count_as_utc(logs):
    naive = START.replace(tzinfo=None)
    assert read(logs, naive + timedelta(hours=3), naive + timedelta(hours=4)) == (60, 1)


def test_a_data_column_named_hour_is_not_taken_for_a_partition_key(tmp_path):
    """Daily partitions whose rows carry their local hour (UTC+5): every row of the window is read."""
    ts = [START + timedelta(minutes=10 * i) for i in range(144)]
    folder = tmp_path / f"dt={START:%Y-%m-%d}"
    folder.mkdir()
    pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                             "hour": pa.array([(t.hour + 5) % 24 for t in ts], pa.int32())}), folder / "part-0.parquet")
    assert read(tmp_path, START + timedelta(hours=3), START + timedelta(hours=4)) == (6, 1)


@pytest.mark.parametrize("tz", ["UTC", None])
def test_row_groups_inside_the_window_are_read_whole_and_the_cut_one_filtered(tmp_path, tz):
    """Row groups whose timestamp statistics lie inside the window skip the row filter; the row
    group the window cuts is filtered: the rows are exactly those of a filtered full read."""
    ts = [START + timedelta(minutes=m) for m in range(600)]
    path = tmp_path / "logs.parquet"
    table = pa.table({"ts": pa.array(ts if tz else [t.replace(tzinfo=None) for t in ts], pa.timestamp("us", tz=tz)),
                      "x": np.arange(600.0)})
    pq.write_table(table, path, row_group_size=100)  # six row groups of 100 minutes
    start, end = START + timedelta(minutes=150), START + timedelta(minutes=500)  # cuts group 1, ends at group 5
    source = Source(path, timestamp_column="ts")
    read = pa.Table.from_batches(list(source.batches(["x"], start, end)))
    assert read.column("x").to_pylist() == [float(m) for m in range(150, 500)]
