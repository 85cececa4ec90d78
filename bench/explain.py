"""Benchmark: exact TreeSHAP and permutation importance on a 300-tree LightGBM CTR model.

    python -m bench.explain                      # 10k rows explained, 5k sample vs 20k "full" data
    python -m bench.explain --full-rows 100000   # a larger full-data ranking (slow: ~2 ms a row)
    python -m bench.explain --deep               # deep SHAP at x0, 2k rows of a DCN-V2-sized model

A CTR-like dataset (20 numeric + 10 categorical features, ~5% positives, a few strong
effects and an interaction) trains a 300-tree model (depth <= 8, 255 leaves at most,
native categoricals). Measured: exact TreeSHAP as explain/ runs it (explain/fasttree.py,
its per-model precomputation included) on 10k rows (target <= 20 s), LightGBM's own
`pred_contrib` on `--contrib-rows` of them for comparison, the largest difference between
the two, agreement with shap.TreeExplainer, additivity, the Spearman correlation of the mean
|SHAP| ranking from a 5k-row sample with the full-data ranking (target >= 0.95), and
permutation importance on 10k labelled rows. Prints a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 20, 10


def dataset(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"num_{i:02d}": rng.normal(size=rows) * (1 + i % 3) for i in range(N_NUMERIC)}
    for i in range(N_CATEGORICAL):
        cardinality = [5, 20, 100, 400][i % 4]
        weights = 1.0 / np.arange(1, cardinality + 1)
        data[f"cat_{i:02d}"] = pd.Categorical(rng.choice(cardinality, rows, p=weights / weights.sum()),
                                              categories=range(cardinality))
    frame = pd.DataFrame(data)
    effect = np.random.default_rng(1000).normal(0, 0.6, 400)
    z = (-3.2 + 0.8 * frame.num_00 + 0.5 * np.tanh(frame.num_01) - 0.3 * frame.num_02 / 3
         + effect[frame.cat_00.cat.codes] + effect[frame.cat_02.cat.codes + 5]
         + 0.7 * np.sign(frame.num_03) * (frame.cat_01.cat.codes % 2 * 2 - 1))
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.int8)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--explain-rows", type=int, default=10_000)
    parser.add_argument("--contrib-rows", type=int, default=2000, help="rows LightGBM's pred_contrib explains")
    parser.add_argument("--sample-rows", type=int, default=5_000)
    parser.add_argument("--full-rows", type=int, default=20_000)
    parser.add_argument("--deep", action="store_true", help="only the deep-ranker SHAP timing (needs torch)")
    parser.add_argument("--deep-rows", type=int, default=2000)
    parser.add_argument("--nsamples", type=int, default=200, help="expected-gradients samples per row")
    args = parser.parse_args()
    if args.deep:
        deep_bench(args.deep_rows, args.nsamples)
        return

    import lightgbm as lgb
    from scipy.stats import spearmanr

    from explain.models import LightGBMModel
    from explain.permutation import permutation_importance
    from explain.tree import shap_importance, shap_values

    train = dataset(args.train_rows, seed=1)
    features = [c for c in train.columns if c != "label"]
    started = time.perf_counter()
    booster = lgb.train(dict(objective="binary", learning_rate=0.05, num_leaves=255, max_depth=8,
                             min_data_in_leaf=100, num_threads=2, verbose=-1, seed=0),
                        lgb.Dataset(train[features], label=train["label"]), num_boost_round=args.trees)
    train_s = time.perf_counter() - started
    path = os.path.join(tempfile.mkdtemp(), "model.txt")
    booster.save_model(path)
    model = LightGBMModel.from_file(path)
    held_out = dataset(max(args.full_rows, args.explain_rows), seed=2)
    depth = max(_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"])

    cpu = platform.processor() or platform.machine()
    print(f"\n## explain/ (TreeSHAP, permutation importance) — {datetime.now(timezone.utc):%Y-%m-%d}\n")
    print(f"Machine: {os.cpu_count()} cores ({cpu}), load average {os.getloadavg()[0]:.1f} at the start "
          f"(shared machine); lightgbm {lgb.__version__}.")
    print(f"Model: {args.trees} trees, max depth {depth}, {len(features)} features "
          f"({N_CATEGORICAL} native categoricals), trained on {args.train_rows} rows in {train_s:.0f} s.\n")
    print("| measurement | value | target |\n|---|---|---|", flush=True)

    rows = held_out.iloc[: args.explain_rows]
    started, cpu_started = time.perf_counter(), time.process_time()
    values = shap_values(model, rows)  # the first call: builds the model's tables (and loads the kernels)
    shap_s, shap_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"| TreeSHAP as explain/ runs it ({values.algorithm}), {args.explain_rows} rows, precomputation "
          f"included | {shap_s:.1f} s wall ({1000 * shap_s / args.explain_rows:.2f} ms/row); CPU {shap_cpu:.1f} s "
          f"over 2 threads; load {os.getloadavg()[0]:.1f} after | <= 20 s |", flush=True)
    print(f"| additivity error (max over rows, logits) | {values.additivity_error:.1e} | ~0 |", flush=True)
    n = min(args.contrib_rows, len(rows))
    if n:  # LightGBM's own TreeSHAP on part of the rows: the cost before, and the oracle
        started, cpu_started = time.perf_counter(), time.process_time()
        contrib = model.contributions(values.matrix[:n])
        contrib_s, contrib_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        print(f"| LightGBM `pred_contrib`, {n} rows (x{args.explain_rows / n:.0f} for {args.explain_rows}) | "
              f"{contrib_s:.1f} s wall ({1000 * contrib_s / n:.2f} ms/row); CPU {contrib_cpu:.1f} s over 2 threads "
              f"({1000 * contrib_cpu / n:.2f} ms/row); load {os.getloadavg()[0]:.1f} after | - |")
        difference = float(np.max(np.abs(contrib[:, :-1] - values.values[:n])))
        print(f"| max abs difference vs `pred_contrib` ({n} rows) | {difference:.1e} | equal |", flush=True)

    import shap

    explainer = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")
    theirs = explainer.shap_values(values.matrix[:200])
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    agreement = float(np.max(np.abs(theirs - values.values[:200])))
    print(f"| max abs difference vs shap {shap.__version__} TreeExplainer (200 rows) | {agreement:.1e} | equal |",
          flush=True)

    started = time.perf_counter()
    permutation_importance(model, rows, rows["label"], n_repeats=2, seed=0)
    print(f"| permutation importance, {args.explain_rows} labelled rows, 2 repeats x {len(features)} features | "
          f"{time.perf_counter() - started:.1f} s | - |", flush=True)

    started = time.perf_counter()
    full, _ = shap_importance(model, held_out.iloc[: args.full_rows], sample=None)
    full_s = time.perf_counter() - started
    sample, _ = shap_importance(model, held_out.iloc[: args.full_rows], sample=args.sample_rows, seed=0)
    truth, part = full.importances(), sample.importances()
    rho = spearmanr([truth[f] for f in features], [part[f] for f in features]).statistic
    top10 = full.ranking()[:10]
    rho_top = spearmanr([truth[f] for f in top10], [part[f] for f in top10]).statistic
    print(f"| full-data mean abs SHAP, {args.full_rows} rows | {full_s:.1f} s | - |")
    print(f"| Spearman, {args.sample_rows}-row sample vs {args.full_rows}-row ranking, all features | "
          f"{rho:.3f} | >= 0.95 |")
    print(f"| Spearman on the full ranking's top 10 | {rho_top:.3f} | - |", flush=True)


def deep_bench(rows: int = 2000, nsamples: int = 200) -> None:
    """Expected-gradients SHAP at x0 of a DCN-V2-sized ranker (random weights: speed and additivity only)."""
    import torch

    from explain.deep import deep_shap

    n_cat, n_dense, dim = 26, 13, 16
    torch.manual_seed(0)

    class Cross(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(3))
            self.deep = torch.nn.Sequential(torch.nn.Linear(width, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                            torch.nn.ReLU())
            self.out = torch.nn.Linear(width + 256, 1)

        def forward(self, x0):  # DCN-V2 parallel: cross tower and deep tower on x0
            x = x0
            for layer in self.layers:
                x = x0 * layer(x) + x
            return self.out(torch.cat([x, self.deep(x0)], dim=1))

    class DCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = torch.nn.ModuleList(torch.nn.Embedding(1000, dim) for _ in range(n_cat))
            self.interaction = Cross(n_cat * dim + n_dense)

        def forward(self, categories, dense):
            parts = [e(categories[:, i]) for i, e in enumerate(self.embeddings)] + [dense]
            return self.interaction(torch.cat(parts, dim=1))

    class Model:
        name = "dcn-v2-sized"
        features = tuple(f"c{i}" for i in range(n_cat)) + tuple(f"d{i}" for i in range(n_dense))

        def __init__(self):
            self.module = DCN().eval()
            slices = {f"c{i}": slice(i * dim, (i + 1) * dim) for i in range(n_cat)}
            slices.update({f"d{i}": slice(n_cat * dim + i, n_cat * dim + i + 1) for i in range(n_dense)})
            self.feature_slices = slices

        def inputs(self, frame):
            return (torch.tensor(frame[[f"c{i}" for i in range(n_cat)]].to_numpy(), dtype=torch.long),
                    torch.tensor(frame[[f"d{i}" for i in range(n_dense)]].to_numpy(), dtype=torch.float32))

        def interaction_layer(self):
            return self.module.interaction

        def predict(self, frame):
            with torch.no_grad():
                return torch.sigmoid(self.module(*self.inputs(frame))).numpy().ravel()

    rng = np.random.default_rng(0)

    def frame(n):
        data = {f"c{i}": rng.integers(0, 1000, n) for i in range(n_cat)}
        data.update({f"d{i}": rng.normal(size=n) for i in range(n_dense)})
        return pd.DataFrame(data)

    model = Model()
    print("\n| deep SHAP at x0 (DCN-V2-sized: 26 x 16-dim embeddings + 13 dense = 429-dim x0, 3 cross layers "
          "+ 2x256 MLP) | time | additivity error (logits) / output std |\n|---|---|---|")
    import shap  # noqa: F401  (imported before the clock starts)

    rows_frame, background = frame(rows), frame(100)
    # `auto` probes both on 32 rows and keeps the smaller error; shap's own loops are slow, so
    # DeepExplainer and shap.GradientExplainer run on 200 rows only.
    for method, n in (("gradient", rows), ("deep", 200), ("shap_gradient", 200)):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = deep_shap(model, rows_frame.iloc[:n], background, method=method, nsamples=nsamples)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        print(f"| {method}, {n} rows, background 100, nsamples {nsamples} | {seconds:.1f} s "
              f"(CPU {cpu:.1f} s) | {result.additivity_error:.3f} / {np.std(result.raw):.3f} |", flush=True)


def _depth(node) -> int:
    if "leaf_value" in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))


if __name__ == "__main__":
    main()
