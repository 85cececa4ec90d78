"""Wide files (thousands of columns): the work per column is bounded, and the shortcuts taken
for them give the same results as the long way round. Timings are in bench/wide.py, not here."""

from __future__ import annotations

import json

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
