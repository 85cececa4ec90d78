"""Benchmark: driftline's drift check against Evidently's DataDriftPreset on the same Parquet files.

    python -m bench.drift --rows 1000000
    python -m bench.drift --rows 10000000 --skip-evidently

A 200k-row reference and an N-row current window (20 numeric + 10 categorical
columns, categorical cardinality 5-1000, a few planted shifts in the current window)
are generated once under bench/data/ and reused. Each tool then runs as a whole,
separate process that reads the Parquet files itself; we measure its wall time, CPU
time and peak RSS (`os.wait4` rusage of that child), and compare per-feature scores
where the two use the same method (normalised Wasserstein for numerics,
Jensen-Shannon for categoricals, set per column on both sides).

driftline runs as `driftline check drift ... --format json` (the CLI, what users run)
and as bench/_driftline_runner.py (the profile kernel alone through the Python API);
`--driftline cli|api|both` picks. Results are printed as a markdown table and kept in
bench/RESULTS.md, one section per N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._parquet import write_chunks

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS = BENCH_DIR / "RESULTS.md"
DATA_VERSION = "v1"  # bump when the generator changes, so stale files are not reused
REFERENCE_ROWS = 200_000
CHUNK_ROWS = 500_000  # rows generated at a time (and, by default, written as one row group)
DISTINCT_ROWS = 20_000_000  # larger windows repeat files of these rows (hard links)

N_NUMERIC = 20
CARDINALITIES = (5, 10, 20, 50, 100, 200, 300, 500, 750, 1000)
NUMERIC_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"

# Planted shifts in the current window (column -> what moves).
SHIFTS = {
    "num_00": "mean +0.25 std",
    "num_03": "scale x1.3",
    "num_07": "null rate 1% -> 8%",
    "num_12": "mean +0.05 std (below threshold)",
    "cat_01": "top category share 36% -> 60%",
    "cat_06": "3% of values are new categories",
}


# --------------------------------------------------------------------------- data


def _numeric_column(j: int, n: int, rng: np.random.Generator, current: bool) -> pa.Array:
    kind = j % 5
    if kind == 0:
        values = rng.normal(10.0 + j, 2.0 + j % 3, n)
    elif kind == 1:
        values = rng.lognormal(1.0, 0.75, n)  # prices, dwell times
    elif kind == 2:
        values = rng.exponential(3.0, n)
    elif kind == 3:
        values = rng.beta(1.5, 40.0, n)  # a pCTR-like score
    else:
        values = rng.poisson(4.0 + j % 7, n).astype(np.int64)  # counts
    if current:
        if j == 0:
            values = values + 0.25 * (2.0 + j % 3)
        elif j == 3:
            values = values.mean() + (values - values.mean()) * 1.3
        elif j == 12:
            values = values + 0.05 * 3.0  # exponential(3): std 3
    null_rate = 0.0
    if j in (2, 7, 15):
        null_rate = 0.08 if (current and j == 7) else 0.01
    mask = rng.random(n) < null_rate if null_rate else None
    return pa.array(values, mask=mask)


def _categorical_column(j: int, n: int, rng: np.random.Generator, current: bool) -> pa.Array:
    cardinality = CARDINALITIES[j]
    weights = 1.0 / np.arange(1, cardinality + 1) ** 1.1
    if current and j == 1:
        weights = weights / weights.sum()
        weights[0] = 0.0
        weights = weights / weights.sum() * 0.4
        weights[0] = 0.6
    cdf = np.cumsum(weights / weights.sum())
    indices = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), cardinality - 1).astype(np.int32)
    names = [f"c{j}_{k:04d}" for k in range(cardinality)]
    if current and j == 6:
        new = rng.random(n) < 0.03
        indices = np.where(new, cardinality + rng.integers(0, 20, n), indices).astype(np.int32)
        names += [f"c{j}_new_{k:02d}" for k in range(20)]
    mask = rng.random(n) < 0.005 if j in (3, 8) else None
    dictionary = pa.array(names, pa.string())
    array = pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), dictionary)
    return array.dictionary_decode()  # plain strings, as logs carry them (Parquet dictionary-encodes on disk)


def _chunk(rows: int, seed: int, index: int, current: bool) -> pa.Table:
    rng = np.random.default_rng([seed, index])
    columns = {f"num_{j:02d}": _numeric_column(j, rows, rng, current) for j in range(N_NUMERIC)}
    columns.update({f"cat_{j:02d}": _categorical_column(j, rows, rng, current) for j in range(len(CARDINALITIES))})
    return pa.table(columns)


def _row_groups(chunks, row_group: int):
    """Regroup generated chunks into tables of `row_group` rows (the rows stay the same whatever the layout)."""
    held: list[pa.Table] = []
    count = 0
    for chunk in chunks:
        while chunk.num_rows:
            take = min(chunk.num_rows, row_group - count)
            held.append(chunk.slice(0, take))
            chunk, count = chunk.slice(take), count + take
            if count == row_group:
                yield pa.concat_tables(held).combine_chunks()
                held, count = [], 0
    if held:
        yield pa.concat_tables(held).combine_chunks()


def write_dataset(path: Path, rows: int, seed: int, current: bool, row_group: int = CHUNK_ROWS,
                  first_chunk: int = 0) -> Path:
    """Write `rows` rows in row groups of `row_group` rows; memory stays at a row group or two."""
    chunks = (_chunk(min(CHUNK_ROWS, rows - start), seed, first_chunk + index, current)
              for index, start in enumerate(range(0, rows, CHUNK_ROWS)))
    return write_chunks(path, _row_groups(chunks, row_group), row_group)


def write_files(folder: Path, rows: int, files: int, seed: int, current: bool, row_group: int) -> Path:
    """`rows` rows as `files` Parquet files in a folder. Beyond DISTINCT_ROWS the files are hard links
    to the first ones (same rows again): 100M rows generate in minutes and take 3 GB of disk."""
    if folder.exists():
        return folder
    per_file = rows // files
    if per_file * files != rows or per_file % CHUNK_ROWS:
        raise SystemExit(f"--files {files}: {rows:,} rows must split into files of whole {CHUNK_ROWS:,}-row chunks")
    distinct = max(1, min(files, DISTINCT_ROWS // per_file))
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        path = partial / f"part-{index:05d}.parquet"
        if index < distinct:
            write_dataset(path, per_file, seed, current, row_group, first_chunk=index * (per_file // CHUNK_ROWS))
        elif not path.exists():
            os.link(partial / f"part-{index % distinct:05d}.parquet", path)
    partial.rename(folder)
    return folder


def datasets(rows: int, row_group: int = CHUNK_ROWS, files: int | None = None) -> tuple[Path, Path]:
    """The reference file and the current window: one file, or a folder of `files` files (default:
    one file up to DISTINCT_ROWS rows, files of 1M rows beyond)."""
    ref = write_dataset(DATA_DIR / f"ref_{DATA_VERSION}_{REFERENCE_ROWS}.parquet", REFERENCE_ROWS, 1, False)
    files = files or (1 if rows <= DISTINCT_ROWS else rows // 1_000_000)
    layout = "" if row_group == CHUNK_ROWS else f"_rg{row_group}"
    if files == 1:
        cur = write_dataset(DATA_DIR / f"cur_{DATA_VERSION}_{rows}{layout}.parquet", rows, 2, True, row_group)
    else:
        cur = write_files(DATA_DIR / f"cur_{DATA_VERSION}_{rows}{layout}_f{files}", rows, files, 2, True, row_group)
    return ref, cur


# --------------------------------------------------------------------------- measuring


def measure(command: list[str], timeout: float | None = None) -> dict:
    """Run one command as its own process: wall seconds, CPU seconds, peak RSS (bytes), stdout.

    The command runs under bench/_rusage.py, a small launcher that reports the command's own
    rusage: started straight from here, its peak RSS would start at this process's (Linux
    carries the replaced image's peak across exec), which holds generated data.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "bench._rusage", usage_file.name, *command],
                                   stdout=out, stderr=err, cwd=REPO, start_new_session=True)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        usage = json.loads(Path(usage_file.name).read_text() or '{"peak_rss_bytes": 0, "cpu_s": 0}')
    return {
        "wall_s": wall,
        "cpu_s": usage["cpu_s"],
        "peak_rss_bytes": usage["peak_rss_bytes"],  # the command's own (bench/_rusage.py)
        "load_before": load,
        "returncode": process.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


def measure_best(command: list[str], repeat: int, timeout: float | None) -> dict:
    """The fastest of `repeat` runs (the one least disturbed by other load), with the largest peak RSS."""
    runs = [measure(command, timeout) for _ in range(repeat)]
    for run_ in runs:
        if run_["returncode"] != 0:
            return run_
    best = min(runs, key=lambda r: r["wall_s"])
    return dict(best, peak_rss_bytes=max(r["peak_rss_bytes"] for r in runs), runs=[r["wall_s"] for r in runs])


def _cli() -> Path:
    return Path(sys.executable).parent / "driftline"


def cli_available() -> bool:
    if not _cli().exists():
        return False
    try:
        result = subprocess.run([str(_cli()), "check", "drift", "--help"], capture_output=True, text=True,
                                timeout=120, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "--method" in result.stdout


def driftline_commands(which: str, ref: Path, cur: Path) -> dict[str, list[str]]:
    """`cli`: what users run; `api`: the kernel alone (bench/_driftline_runner.py)."""
    wanted = {"auto": ["cli"] if cli_available() else ["api"], "both": ["cli", "api"]}.get(which, [which])
    categorical = [f.name for f in pq.read_schema(ref) if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    commands = {}
    for kind in wanted:
        if kind == "cli":
            methods = [arg for name in categorical for arg in ("--method", f"{name}={CATEGORICAL_METHOD}")]
            commands["driftline CLI"] = [str(_cli()), "check", "drift", "--reference", str(ref), "--current", str(cur),
                                         "--format", "json", *methods]  # numerics: wasserstein by default
        else:
            commands["driftline API runner"] = [sys.executable, "-m", "bench._driftline_runner", str(ref), str(cur)]
    return commands


def evidently_command(ref: Path, cur: Path) -> list[str]:
    return [sys.executable, "-m", "bench._evidently_runner", str(ref), str(cur)]


def _scores(stdout: str) -> dict[str, tuple[str, float | None]]:
    data = json.loads(stdout)
    return {f["feature"]: (f["method"], f["score"]) for f in data["features"]}


def max_score_difference(driftline: dict, evidently: dict) -> tuple[float, str, int]:
    """Largest |difference| over features scored with the same method on both sides."""
    worst, where, compared = 0.0, "", 0
    for name, (method, score) in driftline.items():
        other = evidently.get(name)
        if other is None or other[0] != method or score is None or other[1] is None:
            continue
        compared += 1
        difference = abs(float(score) - float(other[1]))
        if difference >= worst:
            worst, where = difference, name
    return worst, where, compared


# --------------------------------------------------------------------------- reporting


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = psutil.virtual_memory().total
    except ImportError:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"nproc": os.cpu_count(), "ram_gib": ram / 2**30, "cpu": model}


def _fmt_rows(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows:,}"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.0f} MiB"


def _layout(current: Path, row_group: int) -> str:
    """How the window is laid out on disk, e.g. '1 file, 500k-row row groups'."""
    files = len(list(current.iterdir())) if current.is_dir() else 1
    size = f"{row_group // 1000}k" if row_group % 1000 == 0 and row_group < 1_000_000 else _fmt_rows(row_group)
    return f"{files} file{'s' if files > 1 else ''}, {size}-row row groups"


def render(result: dict) -> str:
    m = result["machine"]
    tools = result["tools"]
    layout = result.get("layout", "")
    default = layout.endswith(f"{CHUNK_ROWS // 1000}k-row row groups") and layout.startswith("1 file,")
    lines = [
        f"{SECTION_PREFIX}{_fmt_rows(result['rows'])} current rows{'' if default else f' ({layout})'}: "
        "driftline vs Evidently (`python -m bench.drift`)",
        "",
        f"{result['date']} · {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM, "
        f"load average {result.get('load', '?')} at the start · reference "
        f"{REFERENCE_ROWS:,} rows · current {result['rows']:,} rows × {N_NUMERIC} numeric + "
        f"{len(CARDINALITIES)} categorical ({layout}) · {_runs(result)}",
        "",
        "Each tool is a separate process reading the same Parquet files; wall time, CPU time and peak RSS are "
        "that process's own (its rusage, read by the bench/_rusage.py launcher). The load average is the machine's at the start of the run (other "
        "work on a shared machine stretches wall times; CPU time is less affected).",
        "",
        "| tool | wall time | CPU time | peak RSS | load avg at start | status | Evidently's wall / this | "
        "Evidently's CPU / this | this RSS / Evidently's |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    evidently = tools.get("Evidently DataDriftPreset")
    for name, t in tools.items():
        ratios = "| | | "
        if evidently is not None and name != "Evidently DataDriftPreset":
            ratios = (f"| {evidently['wall_s'] / t['wall_s']:.1f}× | {evidently['cpu_s'] / t['cpu_s']:.1f}× | "
                      f"{t['peak_rss_bytes'] / evidently['peak_rss_bytes']:.2f} ")
        lines.append(f"| {name} | {t['wall_s']:.2f} s | {t['cpu_s']:.2f} s | {_mib(t['peak_rss_bytes'])} | "
                     f"{t['load_before']:.1f} | {t.get('status', '?')} {ratios}|")
    lines.append("")
    if evidently is None:
        lines.append("- Evidently skipped (`--skip-evidently`)")
    for name, t in tools.items():
        if "max_score_diff" in t:
            lines.append(f"- {name} vs Evidently, largest per-feature score difference over {t['compared']} features "
                         f"with the same method (Wasserstein numerics, Jensen-Shannon categoricals): "
                         f"**{t['max_score_diff']:.4f}** ({t['max_score_diff_feature']})")
    headline_name = "driftline CLI" if "driftline CLI" in tools else next(iter(tools))
    headline = tools[headline_name]
    rss_ok = headline["peak_rss_bytes"] <= MAX_RSS_MIB * 2**20
    lines.append(f"- target (#17): ≤ {MAX_RSS_MIB} MiB peak RSS at any size and row-group layout, {headline_name}: "
                 f"{_mib(headline['peak_rss_bytes'])} → **{'met' if rss_ok else 'missed'}**")
    if evidently is not None and result["rows"] >= 5_000_000:
        speedup = evidently["wall_s"] / headline["wall_s"]
        lines.append(f"- target (#17) at ≥ 5M rows: ≥ 200× Evidently's speed, {headline_name}: {speedup:.0f}× wall "
                     f"({evidently['cpu_s'] / headline['cpu_s']:.0f}× CPU) → **{'met' if speedup >= 200 else 'missed'}**")
    if result["rows"] == 10_000_000:
        ok = headline["wall_s"] <= 5
        lines.append(f"- target (#17) at 10M rows: ≤ 5 s wall on 2 cores, {headline_name}: {headline['wall_s']:.1f} s "
                     f"({result['rows'] / headline['cpu_s'] / 1e6:.2f}M rows per CPU-second end to end) → "
                     f"**{'met' if ok else 'missed'}**")
    flagged = headline.get("flagged")
    if flagged is not None:
        lines.append(f"- driftline flagged (warn/alert): {', '.join(flagged) or 'none'}; planted shifts: "
                     + ", ".join(f"{k} ({v})" for k, v in SHIFTS.items()))
    return "\n".join(lines) + "\n"


SECTION_PREFIX = "### Drift check, "
MAX_RSS_MIB = 450
RESULTS_HEADER = "# Benchmark results\n"


def update_results(section: str, rows: int) -> None:
    """Replace this N's section in bench/RESULTS.md, or insert it in order of N; leave other text alone.

    A section runs from its `### Drift check, ...` heading to the next heading of level 1-3,
    so blocks other benchmarks keep in the same file (bench.skew's) are untouched.
    """
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"

    def ours() -> list[tuple[int, int, int]]:
        found, i = [], 0
        while i < len(lines):
            if lines[i].startswith(SECTION_PREFIX):
                j = i + 1
                while j < len(lines) and not lines[j].startswith(("# ", "## ", "### ")):
                    j += 1
                found.append((i, j, _section_rows(lines[i])))
                i = j
            else:
                i += 1
        return found

    replaced = None
    heading = section.splitlines()[0].strip()
    for start, end, n in ours():
        if lines[start].strip() == heading:
            del lines[start:end]
            replaced = start
            break
    sections = ours()
    later = [start for start, _, n in sections if n > rows or (n == rows and lines[start].strip() > heading)]
    if replaced is not None:
        at = replaced
    else:
        at = later[0] if later else (sections[-1][1] if sections else len(lines))
    block = section.rstrip("\n") + "\n\n"
    if at > 0 and lines[at - 1].strip():
        block = "\n" + block
    lines[at:at] = [block]
    RESULTS.write_text("".join(lines).rstrip("\n") + "\n")


def _section_rows(heading: str) -> int:
    token = heading[len(SECTION_PREFIX):].split()[0]
    return int(token[:-1]) * 1_000_000 if token.endswith("M") else int(token.replace(",", ""))


# --------------------------------------------------------------------------- main


def run(rows: int, skip_evidently: bool, which: str, repeat: int, timeout: float, write: bool,
        row_group: int = CHUNK_ROWS, files: int | None = None, evidently_repeat: int | None = None) -> dict:
    t0 = time.perf_counter()
    ref, cur = datasets(rows, row_group, files)
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {ref.name}, {cur.name}", file=sys.stderr)
    commands = driftline_commands(which, ref, cur)
    if not skip_evidently:
        commands["Evidently DataDriftPreset"] = evidently_command(ref, cur)
    # Warm the page cache (and .pyc files) so no tool pays for the first read from disk.
    for path in [ref, *(sorted(cur.iterdir()) if cur.is_dir() else [cur])]:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    measure([sys.executable, "-c", "import monitor.cli, bench._driftline_runner"])
    result: dict = {
        "rows": rows,
        "layout": _layout(cur, row_group),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "machine": machine(),
        "repeat": repeat,
        "evidently_repeat": repeat if evidently_repeat is None else evidently_repeat,
        "tools": {},
    }
    scores = {}
    for name, command in commands.items():
        runs = result["evidently_repeat"] if name == "Evidently DataDriftPreset" else repeat
        measured = measure_best(command, runs, timeout)
        if measured["returncode"] != 0:
            sys.exit(f"{name} failed ({measured['returncode']}):\n{measured['stderr'][-4000:]}")
        output = json.loads(measured["stdout"])
        scores[name] = _scores(measured["stdout"])
        measured["status"] = output.get("status")
        if name != "Evidently DataDriftPreset":
            measured["flagged"] = [f["feature"] for f in output["features"] if f["status"] in ("warn", "alert")]
        result["tools"][name] = {k: v for k, v in measured.items() if k not in ("stdout", "stderr")}
        print(f"{name}: {measured['wall_s']:.2f} s wall, {measured['cpu_s']:.2f} s CPU, "
              f"{_mib(measured['peak_rss_bytes'])}", file=sys.stderr)
    if "Evidently DataDriftPreset" in scores:
        for name in commands:
            if name == "Evidently DataDriftPreset":
                continue
            worst, where, compared = max_score_difference(scores[name], scores["Evidently DataDriftPreset"])
            result["tools"][name].update(max_score_diff=worst, max_score_diff_feature=where, compared=compared)
    result["scores"] = scores
    section = render(result)
    print(section)
    if write:
        update_results(section, rows)
    return result


def _runs(result: dict) -> str:
    repeat, evidently = result["repeat"], result.get("evidently_repeat", result["repeat"])
    if evidently == repeat or not any(name.startswith("Evidently") for name in result["tools"]):
        return f"best of {repeat} run(s) per tool"
    return f"best of {repeat} run(s) of driftline, {evidently} of Evidently"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the current window")
    parser.add_argument("--skip-evidently", action="store_true", help="time driftline only (for 10M rows)")
    parser.add_argument("--driftline", choices=("auto", "cli", "api", "both"), default="both",
                        help="cli: `driftline check drift`; api: the kernel alone (bench/_driftline_runner.py)")
    parser.add_argument("--row-group", type=int, default=CHUNK_ROWS, help="rows per Parquet row group of the window")
    parser.add_argument("--files", type=int, default=None,
                        help="files the window is written as (default: 1 up to 20M rows, 1M rows a file beyond)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest counts")
    parser.add_argument("--evidently-repeat", type=int, default=None,
                        help="runs of Evidently (default: --repeat; one takes ~5 min at 5M rows)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a tool is killed")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--json", action="store_true", help="also print the raw result as JSON")
    args = parser.parse_args(argv)
    result = run(args.rows, args.skip_evidently, args.driftline, args.repeat, args.timeout, not args.no_write,
                 args.row_group, args.files, args.evidently_repeat)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
