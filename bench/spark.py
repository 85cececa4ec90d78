"""Benchmark: the Spark engine (local[2]) against the embedded engine on one 10M-row window.

    python -m bench.spark --rows 10000000

The window and reference are bench.drift's (30 features: 20 numeric, 10 categorical),
generated once under bench/data/. Each engine runs as a separate process
(bench/_spark_runner.py); we sample the whole process tree's RSS (the Spark JVM and its
Python workers are grandchildren) for the peak, and time the phases Spark reports. Both
merged profiles are compared: the counts must be identical. Results go to
bench/RESULTS.md between this script's markers. On one machine the embedded engine is
expected to win; the Spark path is there to scale out with the same answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench._results import read_block, write_block
from bench.drift import datasets, machine

START, END = "<!-- bench.spark: start -->", "<!-- bench.spark: end -->"


def measure(command: list[str]) -> dict:
    """Wall time, CPU time and peak RSS of the whole process tree (sampled every 0.1 s)."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(process.pid)
    peak, cpu = 0, {}
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            rss = 0
            for p in tree:
                try:
                    rss += p.memory_info().rss
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system + times.children_user + times.children_system
                except psutil.Error:
                    continue
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.strip()[-2000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values()), "peak_rss_bytes": peak, **json.loads(stdout)}


def compare(local: dict, spark: dict) -> dict:
    """Counts identical? And the largest relative difference of a numeric mean."""
    same, worst = local["rows"] == spark["rows"], 0.0
    for name, mine in local["features"].items():
        theirs = spark["features"][name]
        if mine["kind"] == "numeric":
            for key in ("count", "null_count", "nan_count", "inf_count", "bin_counts", "sketch"):
                same &= mine[key] == theirs[key]
            if mine["count"]:
                worst = max(worst, abs(mine["mean"] - theirs["mean"]) / max(abs(mine["mean"]), 1e-300))
        else:
            same &= mine == theirs
    return {"counts_identical": bool(same), "max_relative_mean_difference": worst}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        "## Spark engine vs embedded engine (`python -m bench.spark`)",
        "",
        f"{result['date']} · {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM · 1-min load average "
        f"{result['load_before']} before the runs · pyspark {result['pyspark']}, master {result['master']} · "
        f"{result['rows']:,} rows × 30 features (20 numeric, 10 categorical), one Parquet file",
        "",
        "| engine | wall time | CPU time (process tree) | peak RSS (process tree) |",
        "|---|---:|---:|---:|",
    ]
    for run in result["runs"]:
        lines.append(f"| {run['engine']} | {run['wall_s']:.1f} s | {run['cpu_s']:.1f} s | "
                     f"{run['peak_rss_bytes'] / 2**20:,.0f} MiB |")
    spark = next(r for r in result["runs"] if r["engine"] == "spark")
    lines += ["", "Where the Spark run's time goes:", "", "| phase | seconds |", "|---|---:|"]
    for phase, seconds in spark["phases"].items():
        lines.append(f"| {phase} | {seconds:.2f} |" if phase != "partitions" else f"| partitions | {seconds} |")
    c = result["comparison"]
    lines += ["", f"- same answers: counts, histograms, sketches and category counts identical: "
                  f"**{'yes' if c['counts_identical'] else 'NO'}**; largest relative difference of a mean: "
                  f"{c['max_relative_mean_difference']:.1e} (merge order)",
              "- the kernel's share (Arrow hand-over to Python and the profile kernel) is the profile job minus "
              "the warm read-only pass; the merge is the driver's share; the process tree's CPU time includes the "
              "warm-up pass"]
    return "\n".join(lines) + "\n"


def update_results(section: str) -> None:
    before, _, after = read_block(START, END)
    write_block(START, END, before, section, after)


def run(rows: int, master: str, write: bool) -> dict:
    import pyspark

    reference, current = datasets(rows)
    load = os.getloadavg()[0]
    runs, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("local", "spark"):
            out = Path(tmp) / f"{engine}.json"
            command = [sys.executable, "-m", "bench._spark_runner", engine, str(reference), str(current), str(out),
                       master]
            measured = measure(command)
            print(f"{engine}: {measured['wall_s']:.1f} s wall, {measured['peak_rss_bytes'] / 2**20:,.0f} MiB peak",
                  flush=True)
            runs.append(measured)
            profiles[engine] = json.loads(out.read_text())
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "load_before": f"{load:.1f}", "pyspark": pyspark.__version__, "master": master, "rows": rows,
              "runs": runs, "comparison": compare(profiles["local"], profiles["spark"])}
    section = render(result)
    print(section)
    if write:
        update_results(section)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the window")
    parser.add_argument("--master", default="local[2]", help="Spark master")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    run(args.rows, args.master, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
