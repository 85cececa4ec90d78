"""Wide files (thousands of columns): the work per column is bounded, and the shortcuts taken
for them give the same results as the long way round. Timings are in bench/wide.py, not here."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from monitor.cli import app


def _wide(path, columns: int, rows: int, seed: int, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    data = {f"f{i:04d}": rng.normal(shift, 1, rows) for i in range(columns)}
    data["c"] = rng.choice(["a", "b", "c"], rows)
    pq.write_table(pa.table(data), path)
    return path


def test_one_off_drift_reads_the_reference_once_and_profiles_each_column_once(tmp_path, monkeypatch):
    """Before: the reference was read twice and every column profiled in ten row-order chunks
    (for learned thresholds the one-off check never uses): 11 kernel passes per column."""
    import core.reference as reference
    from monitor.oneoff import drift_between
    from core.sources import Source

    ref = _wide(tmp_path / "ref.parquet", 50, 2_000, 0)
    cur = _wide(tmp_path / "cur.parquet", 50, 2_000, 1, shift=0.5)
    calls = {"kernel": 0, "reads": 0}
    kernel, batches = reference.profile_batch, Source.batches

    def counting_kernel(batch, spec):
        calls["kernel"] += 1
        return kernel(batch, spec)

    def counting_batches(self, columns=None, *args, **kwargs):
        # Reads of the feature columns; naming the columns' roles samples a few candidates apart.
        calls["reads"] += self.location == str(ref) and (columns is None or len(columns) > 10)
        return batches(self, columns, *args, **kwargs)

    monkeypatch.setattr(reference, "profile_batch", counting_kernel)
    monkeypatch.setattr(Source, "batches", counting_batches)
    result = drift_between(str(ref), str(cur))
    assert calls == {"kernel": 1, "reads": 1}
    assert result.status == "alert" and len(result.features) == 51


def test_drift_of_a_wide_file_matches_the_learned_path_on_the_same_profile(tmp_path):
    """The shortcut (one chunk, profiled from the sample) gives the reference profile the chunked,
    re-read path gives: same counts and histograms, moments within float rounding."""
    from core.reference import build_reference
    from core.sources import Source

    ref = _wide(tmp_path / "ref.parquet", 30, 3_000, 0)
    kinds = {f"f{i:04d}": "numeric" for i in range(30)} | {"c": "categorical"}
    short = build_reference(Source(str(ref)), kinds, n_chunks=1)
    long = build_reference(Source(str(ref)), kinds, sample_rows=1_000)  # sample < rows: the file is read again
    again = build_reference(Source(str(ref)), kinds)  # sample holds all rows: profiled from it, 10 chunks
    assert len(again.chunks) == 10 and sum(c.rows for c in again.chunks) == 3_000
    for name in kinds:
        a, b = short.profile.features[name], again.profile.features[name]
        assert a.to_dict().keys() == b.to_dict().keys()
        if name == "c":
            assert a.to_dict() == b.to_dict()
            continue
        assert a.count == b.count and np.array_equal(a.bin_counts, b.bin_counts) and a.sketch == b.sketch
        assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.m2 == pytest.approx(b.m2, rel=1e-12)
    assert long.profile.rows == 3_000


def test_wide_quality_validated_in_column_groups_equals_validated_whole(tmp_path, monkeypatch):
    import checks.expectations as expectations

    ref = _wide(tmp_path / "ref.parquet", 12, 500, 0)
    cur = _wide(tmp_path / "cur.parquet", 12, 500, 1, shift=3.0)
    args = ["check", "quality", "--reference", str(ref), "--current", str(cur), "--format", "json"]
    whole = CliRunner().invoke(app, args, catch_exceptions=False)
    monkeypatch.setattr(expectations, "GROUP_COLUMNS", 5)  # 13 columns: three groups
    grouped = CliRunner().invoke(app, args, catch_exceptions=False)
    assert whole.exit_code == grouped.exit_code == 0
    assert json.loads(whole.stdout) == json.loads(grouped.stdout)
    assert json.loads(whole.stdout)["status"] == "alert"  # the shifted columns leave their ranges


def test_wide_quality_natively_equals_great_expectations_through_the_cli(tmp_path, monkeypatch):
    """The one-off command end to end (suite derived, frame validated in column groups, judged):
    the same JSON with the derived expectations evaluated natively or all by GX."""
    import checks.expectations as expectations
    import checks.native_expectations as native

    ref = _wide(tmp_path / "ref.parquet", 12, 500, 0)
    cur = _wide(tmp_path / "cur.parquet", 12, 500, 1, shift=3.0)
    args = ["check", "quality", "--reference", str(ref), "--current", str(cur), "--format", "json"]
    monkeypatch.setattr(expectations, "GROUP_COLUMNS", 5)
    ours = CliRunner().invoke(app, args, catch_exceptions=False)
    monkeypatch.setattr(native, "evaluate", lambda *args, **kwargs: None)
    theirs = CliRunner().invoke(app, args, catch_exceptions=False)
    assert ours.exit_code == theirs.exit_code == 0
    assert ours.stdout == theirs.stdout
    assert json.loads(ours.stdout)["status"] == "alert"


def _mixed(path, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    data = {f"n{i}": rng.normal(i, 1 + i, rows) for i in range(7)}
    data["n3"][rng.random(rows) < 0.1] = np.nan
    data["s0"] = rng.choice(["a", "b", "c", "d"], rows)
    data["s1"] = rng.choice([f"v{k}" for k in range(40)], rows)
    pq.write_table(pa.table(data), path, row_group_size=1500)
    return path


def test_wide_parquet_read_in_column_groups_gives_the_profiles_and_sample_of_one_read(tmp_path, monkeypatch):
    """A wide file is read a group of columns at a time (core/wide.py): the reference's sample, chunk
    profiles and profile, a window's profile and the scan report are those of one read of every column,
    to the last bit (rows are cut into the same batches, so sums add in the same order)."""
    import core.sources as sources
    import core.wide as wide
    from core.reference import build_reference
    from core.wide import profile_source, sample_source

    # Small batches, cut at other rows for 3 columns than for 9 unless the group read follows the whole.
    monkeypatch.setattr(sources, "DEFAULT_BATCH_BYTES", 20_000)
    monkeypatch.setattr(sources, "MIN_BATCH_ROWS", 100)
    path = _mixed(tmp_path / "mixed.parquet", 5_000, 0)
    kinds = {**{f"n{i}": "numeric" for i in range(7)}, "s0": "categorical", "s1": "categorical", "gone": "numeric"}
    reads = {"batches": 0}
    batches = sources.Source.batches

    def counting(self, *args, **kwargs):
        reads["batches"] += 1
        return batches(self, *args, **kwargs)

    monkeypatch.setattr(sources.Source, "batches", counting)

    def run(group: int):
        monkeypatch.setattr(wide, "WIDE_GROUP_COLUMNS", group)
        reads["batches"] = 0
        reference_source, current_source = sources.Source(str(path)), sources.Source(str(path))
        built = build_reference(reference_source, kinds, n_chunks=4, sample_rows=1_000)  # sample < rows: read again
        sample = sample_source(sources.Source(str(path)), 700, list(kinds), seed=3)
        current = profile_source(current_source, built.spec)
        return built, sample, current, reference_source.report, current_source.report, reads["batches"]

    whole, grouped = run(10_000), run(3)
    assert grouped[-1] > 2 * whole[-1]  # the groups were read apart
    assert grouped[0].spec == whole[0].spec
    assert grouped[0].profile.to_dict() == whole[0].profile.to_dict()
    assert [c.to_dict() for c in grouped[0].chunks] == [c.to_dict() for c in whole[0].chunks]
    for mine, theirs in ((grouped[0].sample, whole[0].sample), (grouped[1], whole[1])):  # NaN == NaN here
        assert mine.schema == theirs.schema and mine.to_pandas().equals(theirs.to_pandas())
    assert grouped[2].to_dict() == whole[2].to_dict()
    assert grouped[2].features["gone"].message == "column 'gone' is missing"
    assert (grouped[3], grouped[4]) == (whole[3], whole[4])
    assert grouped[4].rows == 5_000 and grouped[4].files == 1
    # A row limit counts the rows once: the file's 5,000 pass, 4,999 trip it.
    from core.errors import LimitExceededError

    spec = whole[0].spec
    assert profile_source(sources.Source(str(path), limits=sources.Limits(max_rows=5_000)), spec).rows == 5_000
    with pytest.raises(LimitExceededError):
        profile_source(sources.Source(str(path), limits=sources.Limits(max_rows=4_999)), spec)


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 (Unix) to read one child's rusage")
def test_check_drift_on_a_wide_file_holds_no_reader_state_for_every_column(tmp_path):
    """Arrow's Parquet reader keeps ~50 KB per column it reads in step, and the column metadata: reading
    4,000 columns at once peaked at ~640 MiB here, read 1,000 at a time ~420 MiB (10,000 columns:
    1.43 GB -> ~0.75 GB, bench/wide.py). Memory only, no wall clock."""
    from bench.wide import write_files
    from tests.test_streaming_memory import _peak_rss

    reference, current = write_files(tmp_path, 4_000, 2_000)
    peak, stdout = _peak_rss(["check", "drift", "--reference", str(reference), "--current", str(current),
                              "--format", "json"])
    result = json.loads(stdout)
    assert len(result["features"]) == 4_000 and result["current_rows"] == 2_000
    assert {f["status"] for f in result["features"]} <= {"ok", "warn", "alert"}  # every column scored
    assert peak <= 520 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"


def test_a_wide_file_read_in_column_groups_opens_each_file_once(tmp_path, monkeypatch):
    """Each column group read the files again; they stay open from one group to the next (opening
    one of 10,000 columns took ~60 ms), within OPEN_FILES_COLUMNS, and are closed after the read.
    The same profile either way."""
    import core.sources as sources
    import core.wide as wide
    from core.profile import build_spec
    from core.wide import profile_source

    folder = tmp_path / "data"
    folder.mkdir()
    for day in range(2):
        _wide(folder / f"part{day}.parquet", 40, 300, day)
    opened, closed = [], []
    parquet_file = sources.pq.ParquetFile

    class Counting(parquet_file):
        def __init__(self, path, *args, **kwargs):
            opened.append(path)
            super().__init__(path, *args, **kwargs)

        def close(self, *args, **kwargs):
            closed.append(self)
            return super().close(*args, **kwargs)

    monkeypatch.setattr(sources.pq, "ParquetFile", Counting)
    monkeypatch.setattr(wide, "WIDE_GROUP_COLUMNS", 10)  # 5 groups
    source = sources.Source(str(folder))
    spec = build_spec(source.sample(300, None))

    def profile(budget: int):
        monkeypatch.setattr(sources, "OPEN_FILES_COLUMNS", budget)
        opened.clear(), closed.clear()
        source = sources.Source(str(folder))
        profiled = profile_source(source, spec)
        assert source.open_files is None and len(closed) == len(opened)  # all closed after the read
        return profiled.to_dict(), sorted(opened)

    kept, opened_kept = profile(10_000)
    assert len(opened_kept) == 2 and len(set(opened_kept)) == 2  # each file once
    one_kept, opened_one = profile(41)  # room for one file's 41 columns: the other is opened per group
    assert len(opened_one) == 1 + 5
    none_kept, opened_none = profile(0)
    assert len(opened_none) == 2 * 5
    assert kept == one_kept == none_kept
