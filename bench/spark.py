"""Benchmark: the Spark engine (local[2]) against the embedded engine on one 10M-row window.

    python -m bench.spark --rows 10000000

The window and reference are bench.drift's (30 features: 20 numeric, 10 categorical),
generated once under bench/data/. Each engine runs as a separate process
(bench/_spark_runner.py); we sample the whole process tree's RSS (the Spark JVM and its
Python workers are grandchildren) for the peak, and time the phases Spark reports. Both
merged profiles are compared: the counts must be identical. Results go to
bench/RESULTS.md between this script's markers. On one machine the embedded engine is
expected to win; the Spark path is there to scale out with the same answers.

With all checks on: each run also judges a labelled window of the same size with the three
label checks (bench/_spark_labels.py) from its label profile; the `-rows` runs do it the way
the label checks did before label profiles (the window's label rows on the driver), for the
before/after comparison.
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
        f"{result['date']} · 2-core shared dev VM: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM · "
        f"`uptime` before the runs: {result['uptime']} · pyspark {result['pyspark']}, master {result['master']} · "
        f"{result['rows']:,} rows × 30 features (20 numeric, 10 categorical), one Parquet file",
        "",
        f"All checks on: the feature profile (drift checks) of that window, then calibration, performance and "
        f"concept_drift (segments os, offer_id, slot and their pairs) on a scored, labelled window of "
        f"{result['rows']:,} rows (score, click, 3 segments) against a 1M-row scored reference. `-rows`: the label "
        f"checks as they were before label profiles (the window's label columns collected to the driver).",
        "",
        "| engine | label checks from | wall time | CPU time (process tree) | peak RSS (process tree) | "
        "serving rows to the driver |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        engine, _, rows_mode = run["engine"].partition("-")
        if "failed" in run:
            lines.append(f"| {engine} | rows (before) | failed: {run['failed']} | | | |")
            continue
        to_driver = run["labels"].get("serving_rows_to_driver")
        lines.append(f"| {engine} | {'rows (before)' if rows_mode else 'label profile'} | {run['wall_s']:.1f} s | "
                     f"{run['cpu_s']:.1f} s | {run['peak_rss_bytes'] / 2**20:,.0f} MiB | "
                     f"{'-' if to_driver is None else f'{to_driver:,}'} |")
    for name in ("spark", "spark-rows"):
        spark = next((r for r in result["runs"] if r["engine"] == name and "failed" not in r), None)
        if spark is None:
            continue
        lines += ["", f"Where the `{name}` run's time goes:", "", "| phase | seconds |", "|---|---:|"]
        for phase, seconds in spark["phases"].items():
            lines.append(f"| {phase} | {seconds:.2f} |" if phase != "partitions" else f"| partitions | {seconds} |")
    local = next(r for r in result["runs"] if r["engine"] == "local")["phases"]
    lines += ["", "The embedded engine's phases: " + "; ".join(f"{k} {v:.2f} s" for k, v in local.items())]
    c = result["comparison"]
    lines += ["", f"- label checks, same answers on every completed run: **{'yes' if result['labels_agree'] else 'NO'}** "
                  f"({result['label_summary']})",
              f"- same answers: counts, histograms, sketches and category counts identical: "
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

    from bench._spark_labels import label_datasets

    reference, current = datasets(rows)
    label_reference, label_current = label_datasets(rows)
    load = os.getloadavg()[0]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    runs, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("local-rows", "local", "spark-rows", "spark"):
            out = Path(tmp) / f"{engine}.json"
            command = [sys.executable, "-m", "bench._spark_runner", engine, str(reference), str(current), str(out),
                       master, str(label_reference), str(label_current)]
            try:
                measured = measure(command)
            except RuntimeError as exc:  # the row path may not survive a large window: that is a result too
                if not engine.endswith("-rows"):
                    raise
                print(f"{engine}: failed: {str(exc)[-300:]}", flush=True)
                lines = str(exc).strip().splitlines()
                cause = next((line for line in lines if "OutOfMemoryError" in line), lines[-1])
                runs.append({"engine": engine, "failed": cause.strip()[:200]})
                continue
            print(f"{engine}: {measured['wall_s']:.1f} s wall, {measured['peak_rss_bytes'] / 2**20:,.0f} MiB peak",
                  flush=True)
            runs.append(measured)
            profiles[engine] = json.loads(out.read_text())
    done = [r for r in runs if "failed" not in r]
    answers = [r["labels"]["results"] for r in done]
    statuses = [{name: (v["status"], v["current_rows"], v.get("segments_alert")) for name, v in a.items()}
                for a in answers]
    mine = next(r["labels"]["results"] for r in done if r["engine"] == "local")
    agree = all(s == statuses[0] for s in statuses) and all(
        abs(r["labels"]["results"]["performance"]["auc"] - mine["performance"]["auc"]) <= 1e-9
        for r in done if not r["engine"].endswith("-rows")) and all(
        abs(a["performance"]["auc"] - mine["performance"]["auc"]) <= mine["performance"]["auc_bound"]
        for a in answers)
    statuses_text = ", ".join(f"{n} {v['status']}" for n, v in mine.items())
    label_summary = (f"statuses {statuses_text}; calibration alerts "
                     f"{', '.join(mine['calibration']['segments_alert']) or 'none'}; AUC "
                     f"{mine['performance']['auc']:.5f} (binned, bound {mine['performance']['auc_bound']:.1e})")
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "load_before": f"{load:.1f}", "uptime": uptime, "pyspark": pyspark.__version__, "master": master,
              "rows": rows, "runs": runs, "comparison": compare(profiles["local"], profiles["spark"]),
              "labels_agree": agree, "label_summary": label_summary}
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
