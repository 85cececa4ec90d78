"""`check drift` holds a bounded amount of memory whatever the window's row-group layout (#17).

The dataset scanner decoded whole row groups and read ahead by row groups, so the peak grew
with the row-group size (a 1M-row group of 20 columns is ~160 MB decoded, several in flight);
now Parquet streams in batches of ~16 MiB. Each run here is its own process, as users run it
(`python -m monitor.cli`), and its peak RSS is the kernel's rusage of that one child. Memory
only: no wall-clock asserts (bench/drift.py times the same thing at 1M-100M rows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS = 3_000_000
REFERENCE_ROWS = 100_000
CHUNK = 500_000
N_NUMERIC, N_CATEGORICAL = 16, 4
# The runs below peak at ~300 MiB (imports ~120 MiB of it); before the fix the 1M-row-group
# file took ~650 MiB. The bound leaves room for allocator and library differences.
MAX_PEAK_MIB = 450
REPO = Path(__file__).resolve().parents[1]


def _chunk(rows: int, rng: np.random.Generator, shift: float) -> pa.Table:
    columns = {f"num_{j:02d}": rng.normal(shift + j, 1 + j % 3, rows) for j in range(N_NUMERIC)}
    for j in range(N_CATEGORICAL):
        names = pa.array([f"c{j}_{k:03d}" for k in range(50 * (j + 1))])
        columns[f"cat_{j}"] = names.take(pa.array(rng.integers(0, len(names), rows)))
    return pa.table(columns)


def _write(path: Path, rows: int, row_group: int, seed: int, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, _chunk(1, rng, shift).schema) as writer:
        held: list[pa.Table] = []
        for start in range(0, rows, CHUNK):
            held.append(_chunk(min(CHUNK, rows - start), rng, shift))
            if sum(t.num_rows for t in held) >= row_group or start + CHUNK >= rows:
                writer.write_table(pa.concat_tables(held), row_group_size=row_group)
                held = []
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    return {
        "reference": _write(folder / "ref.parquet", REFERENCE_ROWS, CHUNK, 0),
        65_536: _write(folder / "cur_64k.parquet", ROWS, 65_536, 1, shift=0.1),
        1_000_000: _write(folder / "cur_1m.parquet", ROWS, 1_000_000, 1, shift=0.1),
    }


# Linux starts a child's ru_maxrss at the peak of the image it replaced at exec, and a child
# spawned with vfork (as subprocess does) replaces this test process, which holds the generated
# data: so a small launcher process starts the CLI and reports the CLI's own rusage.
_LAUNCHER = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(process.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024]), file=sys.stderr)
"""


def _peak_rss(args: list[str]) -> tuple[int, str]:
    """(peak RSS in bytes, stdout) of `python -m monitor.cli ARGS` run as its own process."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "monitor.cli", *args],
                          capture_output=True, text=True, cwd=REPO, env=env)
    code, peak = json.loads(done.stderr.strip().splitlines()[-1])  # Linux reports ru_maxrss in KiB
    assert code == 0, done.stderr[-2000:]
    return peak, done.stdout


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 (Unix) to read one child's rusage")
@pytest.mark.parametrize("row_group", [65_536, 1_000_000])
def test_check_drift_memory_does_not_grow_with_row_groups(data, row_group):
    metadata = pq.ParquetFile(data[row_group]).metadata
    assert metadata.num_rows == ROWS and metadata.row_group(0).num_rows == row_group
    peak, stdout = _peak_rss(["check", "drift", "--reference", str(data["reference"]),
                                 "--current", str(data[row_group]), "--format", "json"])
    result = json.loads(stdout)
    assert result["current_rows"] == ROWS
    assert {f["feature"] for f in result["features"] if f["status"] != "ok"} >= {"num_00"}  # the planted shift
    assert peak <= MAX_PEAK_MIB * 2**20, f"peak RSS {peak / 2**20:.0f} MiB with {row_group}-row groups"
