"""Ranking-native monitoring, measured against ground truth (`python -m bench.ranking --write`).

- the rollout test (checks.sequential): false stop rate under no difference with hourly looks,
  power and time to stop for a 5% CTR drop, coverage of the confidence sequences;
- the off-policy estimators (checks.offpolicy): coverage of the candidate policy's true CTR and
  revenue per impression, and the effective sample size.

The simulators are the tests' (tests/rankingsim.py, tests/test_offpolicy.py), run here at a
larger scale; the block between the markers in bench/RESULTS.md is rewritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

START, END = "<!-- bench.ranking: start -->", "<!-- bench.ranking: end -->"


def rollouts(n: int, hours: int, per_hour: int, ctr: float) -> list[str]:
    from rankingsim import PRICE_WEIGHTS, PRICES, simulate_arm

    from checks.sequential import PROMOTE, STOP, Rules, first_decision, judge

    lines = ["| scenario | rollouts | measure | value |", "|---|---:|---|---:|"]
    rng = np.random.default_rng(0)

    def run(candidate_ctr: float, rules: Rules):
        control = simulate_arm(rng, n, hours, per_hour, ctr)
        candidate = simulate_arm(rng, n, hours, per_hour, candidate_ctr)
        return judge(control, candidate, rules)

    null = run(ctr, Rules(margin=0.05))
    code, look = first_decision(null["decision"])
    lines += [f"| no difference | {n} | ever told stop at any of {hours} hourly looks (alpha 0.05) | "
              f"{(null['decision'] == STOP).any(axis=1).mean():.4f} |",
              f"| no difference | {n} | promoted within {hours} h (margin 5%) / mean hours to promote | "
              f"{(code == PROMOTE).mean():.3f} / {look[code == PROMOTE].mean():.1f} |"]
    drop = run(ctr * 0.95, Rules())
    code, look = first_decision(drop["decision"])
    stopped = look[code == STOP]
    lines += [f"| 5% CTR drop | {n} | power: stopped within {hours} h | {(code == STOP).mean():.3f} |",
              f"| 5% CTR drop | {n} | hours to stop: mean / median / 90th percentile | {stopped.mean():.1f} / "
              f"{np.median(stopped):.0f} / {np.percentile(stopped, 90):.0f} |",
              f"| 5% CTR drop | {n} | promoted (margin 2%) | {(code == PROMOTE).mean():.4f} |"]
    for metric, truth in (("ctr", -0.03 * ctr), ("revenue", -0.03 * ctr * float(PRICES @ PRICE_WEIGHTS))):
        v = run(ctr * 0.97, Rules(metrics=(metric,)))[metric]
        missed = ((v["low"] > truth) | (v["high"] < truth)).any(axis=1).mean()
        lines.append(f"| 3% drop, {metric} sequence alone | {n} | missed the truth at some look (alpha 0.05) | "
                     f"{missed:.4f} |")
    return lines


def offpolicy(batches: int) -> list[str]:
    import test_offpolicy as t

    found = {reward: {} for reward in ("ctr", "revenue")}
    ess = []
    for batch in range(batches):
        d = t.simulate(seed=batch, logs=250)
        from checks.offpolicy import effective_sample_size, weights

        ess.append(effective_sample_size(weights(d["p0"], d["p1"])))
        for reward in found:
            for name, (value, se) in t.estimates(d, reward).items():
                old = found[reward].get(name, (np.empty(0), np.empty(0)))
                found[reward][name] = (np.r_[old[0], value], np.r_[old[1], se])
    truths = {"ctr": d["truth_ctr"], "revenue": d["truth_revenue"]}
    logs = batches * 250
    lines = [f"{logs} simulated epsilon-greedy logs (epsilon {t.EPSILON}, {t.OFFERS} offers, {t.CONTEXTS} contexts) "
             f"of {t.ROWS} rows; a deterministic candidate policy; the reward model is biased (0.8 x truth). "
             f"Mean effective sample size {np.concatenate(ess).mean():.0f} of {t.ROWS}.", "",
             "| reward | estimator | 95% interval coverage | mean standard error | bias (sd of the mean) |",
             "|---|---|---:|---:|---:|"]
    for reward, per in found.items():
        for name, (value, se) in per.items():
            truth = truths[reward]
            cover = t.coverage(value, se, truth)
            bias = abs(value.mean() - truth) / (value.std() / np.sqrt(len(value)))
            lines.append(f"| {reward} | {name} | {cover:.3f} | {se.mean():.4f} | {bias:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=5000)
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--per-hour", type=int, default=2500, help="impressions per arm per hour")
    parser.add_argument("--logs", type=int, default=2000, help="simulated logs for the off-policy estimators")
    parser.add_argument("--write", action="store_true", help="rewrite this benchmark's block in bench/RESULTS.md")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    began = time.perf_counter()
    roll = rollouts(args.rollouts, args.hours, args.per_hour, 0.05)
    ope = offpolicy(max(1, args.logs // 250))
    seconds = time.perf_counter() - began
    load_after = os.getloadavg()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join([
        "## Ranking: rollout test and off-policy estimators (`python -m bench.ranking`)", "",
        f"{stamp}, 2-core shared dev VM (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after); "
        f"{seconds:.0f} s in all.", "",
        f"### Rollout test (always-valid, normal mixture; {args.per_hour} impressions per arm per hour, CTR 5%, "
        "alpha 0.05 split over ctr, calibration, revenue)", "", *roll, "",
        "### Off-policy estimates of a candidate policy", "", *ope, ""])
    print(body)
    if args.write:
        from bench._results import read_block, write_block

        before, _, after = read_block(START, END)
        write_block(START, END, before, body + "\n", after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
