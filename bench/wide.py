"""Wide files: `check drift` and `check quality` on a 10,000-column x 2,000-row Parquet file.

    .venv/bin/python -m bench.wide [--columns 10000] [--rows 2000] [--skip-quality] [--write]

Writes a reference and a current file (float64 columns, the current shifted by 0.1 sd) into a
temporary folder, runs each command as its own process under `/usr/bin/time -v`, and prints
wall time, CPU time and peak RSS with the load average (the dev VM's 2 cores are shared:
wall time is only as good as the load beside it; CPU time and RSS are not). `--write` records
the figures in bench/RESULTS.md. Run by hand, not in CI: quality on 10,000 columns takes minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench._results import read_block, write_block

START, END = "<!-- bench.wide: start -->", "<!-- bench.wide: end -->"


def write_files(folder: Path, columns: int, rows: int) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    paths = []
    for name, shift in (("reference", 0.0), ("current", 0.1)):
        path = folder / f"{name}.parquet"
        pq.write_table(pa.table({f"f{i:05d}": rng.normal(shift, 1.0, rows) for i in range(columns)}), path)
        paths.append(path)
    return paths[0], paths[1]


def timed(args: list[str]) -> dict:
    """Run `python -m monitor.cli ARGS` under /usr/bin/time -v: wall, user + system CPU, peak RSS."""
    load = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "monitor.cli", *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started

    def field(label: str) -> float:
        return float(re.search(rf"{label}: ([\d.]+)", done.stderr).group(1))

    return {"wall_s": wall, "cpu_s": field(r"User time \(seconds\)") + field(r"System time \(seconds\)"),
            "rss_gb": field(r"Maximum resident set size \(kbytes\)") / 1e6, "exit": done.returncode,
            "load": load}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--columns", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference, current = write_files(Path(tmp), options.columns, options.rows)
        commands = {"check drift": ["check", "drift"]}
        if not options.skip_quality:
            commands["check quality"] = ["check", "quality"]
        for name, head in commands.items():
            figures = timed([*head, "--reference", str(reference), "--current", str(current), "--format", "json"])
            rows.append((name, figures))
            print(f"{name}: {figures['wall_s']:.1f} s wall, {figures['cpu_s']:.1f} s CPU, "
                  f"{figures['rss_gb']:.2f} GB peak RSS, exit {figures['exit']}, "
                  f"load {figures['load'][0]:.2f}", flush=True)
    if options.write:
        record(rows, options.columns, options.rows)


def record(rows: list, columns: int, n_rows: int) -> None:
    before, _, after = read_block(START, END)
    lines = [
        f"## Wide files: `python -m bench.wide` ({columns:,} columns x {n_rows:,} rows)",
        "",
        f"{date.today().isoformat()}, 2-core shared dev VM; float64 columns, current shifted by 0.1 sd; "
        "each command its own process under /usr/bin/time.",
        "",
        "| command | wall | CPU (user + sys) | peak RSS | exit | load average (1, 5, 15 min) at start |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in rows:
        lines.append(f"| `{name}` | {f['wall_s']:.1f} s | {f['cpu_s']:.1f} s | {f['rss_gb']:.2f} GB | {f['exit']} | "
                     + ", ".join(f"{v:.2f}" for v in f["load"]) + " |")
    write_block(START, END, before, "\n".join(lines) + "\n", after)


if __name__ == "__main__":
    main()
