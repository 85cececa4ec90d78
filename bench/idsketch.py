"""Benchmark: the ID sketches (core/idsketch.py) on a large ID column, against exact counts.

    python -m bench.idsketch --rows 10000000 --distinct 3000000 --write

IDs: a Zipf(1.2) head over 100k values plus `distinct` values seen at least once, shuffled,
fed in 1M-row Arrow batches (as a reader would) to one IdSketch with the reference's
defaults (2,000 heavy-hitter counters, HyperLogLog p=14, count-min 2^20 x 4, Bloom filter 2^27 bits). Reports the
update throughput, the sketch's memory against the raw column's, and each sketch's error
against exact counts (numpy's unique) next to its stated bound.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from bench._results import read_block, write_block
from core.idsketch import IdSketch, hash_ids

START, END = "<!-- bench.idsketch: start -->", "<!-- bench.idsketch: end -->"


def run(rows: int, distinct: int, batch: int = 1_000_000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    head = rng.zipf(1.2, rows - distinct) % 100_000 + distinct  # overlaps nothing of the tail
    ids = np.concatenate([np.arange(distinct), head])
    rng.shuffle(ids)
    array = pa.array(ids)
    sketch = IdSketch.empty(capacity=2000, p=14, count_width=1 << 20, count_depth=4)
    started = time.perf_counter()
    for lo in range(0, rows, batch):
        sketch = sketch.update(array.slice(lo, batch))
    seconds = time.perf_counter() - started
    keys, counts = np.unique(ids, return_counts=True)
    truth_distinct = len(keys)
    held = dict(zip((int(k) for k in sketch.heavy.keys.to_pylist()), sketch.heavy.counts.tolist()))
    index = np.searchsorted(keys, np.fromiter(held, dtype=keys.dtype, count=len(held)))
    under = counts[index] - np.fromiter(held.values(), dtype=np.int64, count=len(held))
    unheld = np.ones(len(keys), dtype=bool)
    unheld[index] = False
    sample = rng.choice(len(keys), 200_000, replace=False)
    over = sketch.counts.estimate(pa.array(keys[sample])) - counts[sample]
    fresh = hash_ids(pa.array(np.arange(10**12, 10**12 + 200_000)))
    unseen, _ = sketch.held(fresh)
    return {
        "rows": rows, "distinct": truth_distinct, "seconds": seconds, "rows_per_s": rows / seconds,
        "sketch_bytes": sketch.nbytes, "column_bytes": array.nbytes,
        "hh_bound": sketch.heavy.error, "hh_max_under": int(max(under.max(), counts[unheld].max())),
        "hll_error": abs(sketch.distinct.estimate() - truth_distinct) / truth_distinct,
        "hll_rse": sketch.distinct.relative_error,
        "cm_negative": int((over < 0).sum()), "cm_eps_rows": sketch.counts.epsilon * rows,
        "cm_share_over_bound": float((over > sketch.counts.epsilon * rows).mean()), "cm_delta": sketch.counts.delta,
        "cm_zero_share": float(np.mean(over == 0)),
        "fresh_found": float(unseen.mean()), "fresh_found_cm": float((sketch.counts.estimate_hashes(fresh) == 0).mean()),
        "bloom_fp": sketch.seen.false_positive_rate,
    }


def render(r: dict) -> str:
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"\n## ID sketches (`python -m bench.idsketch`)\n\n{when}, 2-core shared dev VM (load average "
            f"{load} at the end: other helpers' jobs). {r['rows']:,} rows, {r['distinct']:,} distinct IDs, "
            "1M-row batches, one IdSketch (2,000 counters, HLL p=14, count-min 2^20 x 4, Bloom 2^27 bits x 4).\n\n"
            "| measure | value | stated bound |\n|---|---:|---|\n"
            f"| update | {r['seconds']:.1f} s ({r['rows_per_s'] / 1e6:.2f}M rows/s) | |\n"
            f"| sketch memory | {r['sketch_bytes'] / 2**20:.1f} MiB (the int64 column: "
            f"{r['column_bytes'] / 2**20:.0f} MiB) | fixed by the parameters |\n"
            f"| heavy hitters: largest undercount of any ID | {r['hh_max_under']:,} | {r['hh_bound']:,.0f} "
            "= (rows - counted) / 2,001 |\n"
            f"| HyperLogLog relative error | {r['hll_error']:.4f} | standard error {r['hll_rse']:.4f} |\n"
            f"| count-min: undercounts / over by > e/w x rows ({r['cm_eps_rows']:,.0f}) | {r['cm_negative']} / "
            f"{r['cm_share_over_bound']:.5f} of 200k IDs | 0 / at most {r['cm_delta']:.4f} |\n"
            f"| count-min: IDs estimated exactly | {r['cm_zero_share']:.3f} | |\n"
            f"| 200k fresh IDs found unseen: Bloom filter / count-min zero alone | {r['fresh_found']:.5f} / "
            f"{r['fresh_found_cm']:.3f} | Bloom: 1 - {r['bloom_fp']:.1e} (its false-positive rate) |\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--distinct", type=int, default=3_000_000)
    parser.add_argument("--write", action="store_true", help="write the block into bench/RESULTS.md")
    args = parser.parse_args()
    text = render(run(args.rows, args.distinct))
    print(text)
    if args.write:
        before, _, after = read_block(START, END)
        write_block(START, END, before, text, after)


if __name__ == "__main__":
    main()
