"""Benchmark: DCN-V2 training throughput and AUC on a Criteo-shaped synthetic set, against
LightGBM on the same data.

    python -m bench.train                                   # CPU, 300k rows
    python -m bench.train --device cuda --batch 65536 --rows 20000000 --epochs 1 --deep 1024,1024,512,256

13 numeric features (heavy-tailed counts, some missing) and 26 categorical ones
(cardinalities 3 to 200k, Zipf-like frequencies); clicks from a known logistic model
with per-category effects and four pairwise crosses (what the cross network is for), at
a Criteo-like ~25% CTR. Rows are split at random 80/10/10 into train, validation (early
stopping) and test (AUC). Both models go through driftline's trainers (`dcn_v2`,
`lightgbm`), the code `driftline retrain` runs. Throughput is the training loop's samples
per second (the trainer's own measure: batches forward + backward + step, excluding
preprocessing and validation). The result is printed as markdown and kept in
bench/RESULTS.md between this benchmark's markers (other sections are left alone).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- bench.train: start -->", "<!-- bench.train: end -->"
N_NUMERIC, N_CATEGORICAL = 13, 26
CROSSES = ((0, 1), (2, 5), (3, 8), (6, 12))


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, tuple[str, ...], tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    cards = np.geomspace(3, 200_000, N_CATEGORICAL).astype(int)
    logit = np.full(rows, -1.6)
    data: dict[str, np.ndarray] = {}
    for i in range(N_NUMERIC):
        counts = np.floor(rng.lognormal(1.0 + 0.2 * i, 1.2, rows))
        weight = rng.normal(0, 0.15)
        logit += weight * (np.log1p(counts) - 1.5)
        counts[rng.random(rows) < 0.05 * (i % 4)] = np.nan  # some columns have missing values
        data[f"I{i + 1}"] = counts
    codes = []
    for j, card in enumerate(cards):
        # Zipf-like: a few values carry most rows, a long tail of rare ones.
        value = np.minimum((card * rng.random(rows) ** 3).astype(np.int64), card - 1)
        codes.append(value)
        if j < 14:  # main effects on half of the fields
            logit += rng.normal(0, 0.35, card)[value]
        data[f"C{j + 1}"] = value
    for a, b in CROSSES:
        table = rng.normal(0, 0.6, 4096)
        logit += table[(codes[a] * 7919 + codes[b] * 104_729) % 4096]
    data["click"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    numeric = tuple(f"I{i + 1}" for i in range(N_NUMERIC))
    categorical = tuple(f"C{j + 1}" for j in range(N_CATEGORICAL))
    return pd.DataFrame(data), numeric, categorical


def _split(frame: pd.DataFrame, seed: int = 1):
    order = np.random.default_rng(seed).permutation(len(frame))
    a, b = int(0.8 * len(frame)), int(0.9 * len(frame))
    take = lambda idx: frame.iloc[np.sort(idx)].reset_index(drop=True)  # noqa: E731
    return take(order[:a]), take(order[a:b]), take(order[b:])


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs ({cpu}), 1-min load average {load:.1f} before the run"


def run(args) -> dict:
    import torch

    from retrain.base import Dataset, FeatureSet, get_trainer
    from retrain.evaluate import auc

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = _machine()
    started = time.perf_counter()
    frame, numeric, categorical = make_data(args.rows, args.seed)
    train_df, valid_df, test_df = _split(frame)
    features = FeatureSet(numeric, categorical)
    train, valid = Dataset(train_df, features, ("click",)), Dataset(valid_df, features, ("click",))
    generate_s = time.perf_counter() - started
    y = test_df["click"].to_numpy()

    dcn = get_trainer("dcn_v2")
    params = dcn.validate_params({
        "embedding_dim": 16, "cross_layers": args.cross_layers, "cross_rank": args.cross_rank or None,
        "deep_layers": [int(w) for w in args.deep.split(",") if w], "structure": "parallel",
        "batch_size": args.batch, "epochs": args.epochs, "patience": 1, "learning_rate": args.lr,
        "device": args.device, "compile": args.compile, "min_category_count": 2, "seed": args.seed})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = dcn.fit(train, valid, params)
    dcn_wall, dcn_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    dcn_auc = auc(y, model.predict(test_df))
    on_gpu = model.info["device"] == "cuda"
    result = {"rows": args.rows, "train_rows": len(train), "test_rows": len(test_df),
              "ctr": float(frame["click"].mean()),
              "device": model.info["device"], "gpu": torch.cuda.get_device_name() if on_gpu else None,
              "batch": args.batch, "epochs_run": model.info["epochs_run"], "best_epoch": model.info["best_epoch"],
              "bf16": model.info["bf16"], "compiled": model.info["compiled"],
              "samples_per_second": model.info["samples_per_second"], "dcn_fit_wall_s": dcn_wall,
              "dcn_fit_cpu_s": dcn_cpu, "dcn_auc": dcn_auc, "threads": torch.get_num_threads(),
              "params": sum(p.numel() for p in model.module.parameters()), "generate_s": generate_s,
              "machine": machine, "torch": torch.__version__, "arch": f"cross {args.cross_layers} x "
              f"{'full-rank' if not args.cross_rank else f'rank {args.cross_rank} MoE'}, deep {args.deep}, parallel"}
    if not args.skip_lightgbm:
        lgb = get_trainer("lightgbm")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        booster = lgb.fit(train, valid, lgb.validate_params({"num_threads": args.threads or 2, "num_leaves": 63,
                                                            "num_boost_round": 500, "learning_rate": 0.1}))
        result.update(lgb_fit_wall_s=time.perf_counter() - wall0, lgb_fit_cpu_s=time.process_time() - cpu0,
                      lgb_auc=auc(y, booster.predict(test_df)), lgb_trees=booster.booster.num_trees())
    return result


def markdown(r: dict) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = r["gpu"] or r["machine"]
    lines = [f"#### {r['rows']:,} rows on {r['device']} ({where}), batch {r['batch']:,}", "",
             f"{when} · torch {r['torch']}, {r['threads']} CPU threads · DCN-V2 {r['arch']}, embedding 16, "
             f"{r['params']:,} parameters · bf16 {r['bf16']}, compiled {r['compiled']} · CTR {r['ctr']:.3f}", "",
             "| model | test AUC | training throughput (wall) | samples per fit-CPU-second | fit wall | fit CPU |",
             "|---|---:|---:|---:|---:|---:|",
             f"| DCN-V2 ({r['epochs_run']} epochs, best {r['best_epoch']}) | {r['dcn_auc']:.4f} | "
             f"{r['samples_per_second']:,.0f} samples/s | "
             f"{r['epochs_run'] * r['train_rows'] / r['dcn_fit_cpu_s']:,.0f} | "
             f"{r['dcn_fit_wall_s']:.1f} s | {r['dcn_fit_cpu_s']:.1f} s |"]
    if "lgb_auc" in r:
        lines.append(f"| LightGBM ({r['lgb_trees']} trees) | {r['lgb_auc']:.4f} | – | – | "
                     f"{r['lgb_fit_wall_s']:.1f} s | {r['lgb_fit_cpu_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def record(section: str) -> None:
    """Append this run to our own section of RESULTS.md (between the markers)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    header = (f"{START}\n## DCN-V2 training: `python -m bench.train`\n\n"
              "Throughput = samples per second of the training loop (forward, backward, optimiser step). The CPU "
              "runs shared 2 cores with other engineers' jobs: wall times are inflated, CPU time is the comparable "
              "number.\n\n")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        body, tail = rest.split(END, 1)
        text = head + START + body + section + "\n" + END + tail
    else:
        text = text.rstrip() + "\n\n" + header + section + "\n" + END + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the module")
    parser.add_argument("--deep", default="512,256", help="deep tower widths")
    parser.add_argument("--cross-layers", type=int, default=3)
    parser.add_argument("--cross-rank", type=int, default=0, help="0: full-rank cross layers")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lightgbm", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()
    section = markdown(run(args))
    print(section)
    if not args.no_record:
        record(section)


if __name__ == "__main__":
    main()
