"""Where the CPU time of profiling a window goes: decode, numeric binning, sketch, categorical counting, merge.

    python -m bench.drift_breakdown [--rows 10000000] [--row-group 500000] [--write]

Uses bench.drift's data (generated if absent). Two passes over the window, one thread each so
the parts add up: (1) decode only, Parquet to Arrow batches as the engine reads them (process
CPU time, Arrow's decoding threads included); (2) decode and profile, the kernel's parts timed
with per-thread CPU time. The end-to-end figures (two workers, the CLI) are bench.drift's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")  # as the CLI does, before pyarrow loads

from bench._results import read_block, write_block  # noqa: E402
from bench.drift import CHUNK_ROWS, SECTION_PREFIX, datasets  # noqa: E402

MOMENTS = "numeric: moments (sum, min, max, squared deviations)"
HISTOGRAM = "numeric: binning, histogram and quantile sketch (compiled)"
START, END = "<!-- bench.drift_breakdown: start -->", "<!-- bench.drift_breakdown: end -->"


def breakdown(rows: int, row_group: int = CHUNK_ROWS) -> dict[str, float]:
    from core import numeric_kernel
    from core import profile as kernel
    from core.reference import build_reference
    from core.sources import Source
    from monitor.oneoff import drift_features

    reference_path, current_path = datasets(rows, row_group)
    reference, current = Source(reference_path), Source(current_path)
    kinds = drift_features(reference, None, {})
    spec = build_reference(reference, kinds, n_chunks=1).spec
    columns = list(kinds)
    spent: dict[str, float] = defaultdict(float)

    started = time.process_time()
    for _ in current.batches(columns, dictionary_strings=True):
        pass
    spent["decode: Parquet pages to Arrow batches (strings as dictionary indices)"] = time.process_time() - started

    def timed(name, function):
        def wrapper(*args, **kwargs):
            begin = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - begin
        return wrapper

    patches = [
        *((numeric_kernel.PASSES, name, timed(MOMENTS, getattr(numeric_kernel.PASSES, name)))
          for name in ("scan", "scan_finite", "squared_deviations")),
        *((numeric_kernel.PASSES, name, timed(HISTOGRAM, getattr(numeric_kernel.PASSES, name)))
          for name in ("bin_indices", "histogram", "sketch_counts")),
        (kernel.NumericProfile, "from_array", staticmethod(timed("numeric: all", kernel.NumericProfile.from_array))),
        (kernel.CategoricalProfile, "from_array",
         staticmethod(timed("categorical: counting dictionary indices", kernel.CategoricalProfile.from_array))),
        (kernel.DatasetProfile, "merge", timed("merge of batch profiles", kernel.DatasetProfile.merge)),
    ]
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, patched in patches:
        setattr(owner, name, patched)
    try:
        started = time.process_time()
        kernel.profile_batches(current.batches(columns, dictionary_strings=True), spec, workers=1)
        spent["total: decode and profile, one worker"] = time.process_time() - started
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    numeric = spent.pop("numeric: all")
    spent["numeric: the rest (nulls, integer value counts, conversions, sketch assembly)"] = (
        numeric - spent[MOMENTS] - spent[HISTOGRAM])
    return dict(spent)


def render(rows: int, spent: dict[str, float], row_group: int = CHUNK_ROWS) -> str:
    total = spent["total: decode and profile, one worker"]
    lines = [
        f"## Where the time goes: profiling {rows:,} rows × 30 features (`python -m bench.drift_breakdown`)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, 2-core shared dev VM (load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} at the end). CPU seconds, one worker so the parts "
        "add up; decode measured alone (its Arrow threads included), kernel parts with per-thread CPU time. "
        f"The window: bench.drift's current file (20 numeric, 10 string columns, {row_group:,}-row row groups).",
        "",
        "| part | CPU s | share | rows per CPU-second |",
        "|---|---:|---:|---:|",
    ]
    order = sorted((k for k in spent if not k.startswith("total")), key=lambda k: -spent[k])
    for name in [*order, "total: decode and profile, one worker"]:
        lines.append(f"| {name} | {spent[name]:.2f} | {spent[name] / total:.0%} | {rows / spent[name] / 1e6:.1f}M |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift_breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--row-group", type=int, default=CHUNK_ROWS, help="rows per row group of the window's file")
    parser.add_argument("--write", action="store_true", help="record the table in bench/RESULTS.md")
    args = parser.parse_args(argv)
    text = render(args.rows, breakdown(args.rows, args.row_group), args.row_group)
    print(text)
    if args.write:
        before, block, after = read_block(START, END)
        if block is None and SECTION_PREFIX in before + after:  # a first block goes above bench.drift's sections
            whole = before + after
            cut = whole.index(SECTION_PREFIX)
            before, after = whole[:cut], "\n" + whole[cut:]
        write_block(START, END, before, text, after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
