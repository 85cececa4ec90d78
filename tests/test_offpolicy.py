"""Off-policy estimators against ground truth: a simulated epsilon-greedy log whose true
click probabilities are known, so the candidate policy's true CTR and revenue per impression
are known too. Over many simulated logs the (1 - alpha) intervals must cover the truth at the
nominal rate (measured, with three binomial standard errors of slack for the simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checks.offpolicy import doubly_robust, effective_sample_size, estimate, ips, snips, weights
from core.errors import SchemaError

LOGS, ROWS, CONTEXTS, OFFERS, EPSILON = 1000, 8000, 20, 6, 0.5
Z95 = 1.959963984540054


def world():
    """The true click probabilities, prices and the two policies (the same in every log)."""
    rng = np.random.default_rng(0)
    q = 1 / (1 + np.exp(-(-2.2 + rng.normal(0, 0.6, (CONTEXTS, OFFERS)))))
    price = rng.choice([5.0, 20.0, 40.0], OFFERS)
    serving = np.argmax(q + rng.normal(0, 0.02, q.shape), axis=1)   # the serving model's greedy choice
    candidate = np.argmax(q * price + rng.normal(0, 0.3, q.shape), axis=1)  # a revenue-minded candidate
    return q, price, serving, candidate


def simulate(seed: int = 0, logs: int = LOGS):
    q, price, serving, candidate = world()
    rng = np.random.default_rng(100 + seed)
    c = rng.integers(0, CONTEXTS, (logs, ROWS), dtype=np.int16)
    explore = rng.random((logs, ROWS), dtype=np.float32) < EPSILON
    a = np.where(explore, rng.integers(0, OFFERS, (logs, ROWS), dtype=np.int16), serving[c].astype(np.int16))
    p0 = EPSILON / OFFERS + (1 - EPSILON) * (a == serving[c])
    p1 = (a == candidate[c]).astype(float)
    click = (rng.random((logs, ROWS), dtype=np.float32) < q[c, a]).astype(float)
    model = 0.8 * q  # a biased reward model: DR must still be right through its correction term
    truth_ctr = q[np.arange(CONTEXTS), candidate].mean()
    truth_revenue = (q[np.arange(CONTEXTS), candidate] * price[candidate]).mean()
    return dict(c=c, a=a, p0=p0, p1=p1, click=click, price=price, model=model, candidate=candidate,
                truth_ctr=truth_ctr, truth_revenue=truth_revenue)


def estimates(d, reward: str) -> dict:
    """(value, se) per estimator for every simulated log."""
    scale = d["price"] if reward == "revenue" else np.ones(OFFERS)
    r = d["click"] * scale[d["a"]]
    w = weights(d["p0"], d["p1"])
    q = d["model"] * scale
    dr = doubly_robust(r, w, q[d["c"], d["a"]], q[d["c"], d["candidate"][d["c"]]])
    return {"ips": ips(r, w), "snips": snips(r, w), "dr": dr}


@pytest.fixture(scope="module")
def logs():
    """LOGS simulated logs, in four seeded batches (bounded memory); estimates and the truths."""
    found = {reward: {} for reward in ("ctr", "revenue")}
    for batch in range(4):
        d = simulate(seed=batch, logs=LOGS // 4)
        for reward in found:
            for name, (value, se) in estimates(d, reward).items():
                old = found[reward].get(name, (np.empty(0), np.empty(0)))
                found[reward][name] = (np.r_[old[0], value], np.r_[old[1], se])
    return found, d["truth_ctr"], d["truth_revenue"]


def coverage(value, se, truth):
    return float(((value - Z95 * se <= truth) & (truth <= value + Z95 * se)).mean())


SLACK = 3 * math.sqrt(0.05 * 0.95 / LOGS)


@pytest.mark.parametrize("reward", ["ctr", "revenue"])
def test_ips_snips_and_dr_cover_the_candidates_true_value_at_the_nominal_rate(logs, reward):
    found, truth_ctr, truth_revenue = logs
    truth = truth_ctr if reward == "ctr" else truth_revenue
    for name, (value, se) in found[reward].items():
        rate = coverage(value, se, truth)
        bias = abs(value.mean() - truth) / (value.std() / math.sqrt(LOGS))
        print(f"{reward} {name}: coverage {rate:.3f} (nominal 0.95) over {LOGS} logs of {ROWS} rows, "
              f"mean se {se.mean():.5f}, bias {bias:.1f} sd of the mean")
        assert rate >= 0.95 - SLACK, (name, rate)
        assert bias < 4, (name, bias)
    # DR with a roughly right model is tighter than IPS.
    assert found[reward]["dr"][1].mean() < found[reward]["ips"][1].mean()


@pytest.fixture(scope="module")
def one_log():
    return simulate(seed=9, logs=1)


def test_effective_sample_size_is_n_on_policy_and_shrinks_with_weight_spread(one_log):
    assert effective_sample_size(np.ones(500)) == pytest.approx(500)
    ess = effective_sample_size(weights(one_log["p0"], one_log["p1"]))
    assert (ess < ROWS).all() and (ess > 0).all()


def test_the_estimate_api_on_one_log_names_intervals_and_refuses_bad_propensities(one_log):
    d = one_log
    q = d["model"]
    out = estimate(d["click"][0], d["p0"][0], d["p1"][0], q[d["c"][0], d["a"][0]],
                   q[d["c"][0], d["candidate"][d["c"][0]]])
    assert set(out) == {"ips", "snips", "dr"}
    for e in out.values():
        assert e.low < e.value < e.high and e.rows == ROWS and 0 < e.ess < ROWS
    assert set(estimate(d["click"][0], d["p0"][0], d["p1"][0])) == {"ips", "snips"}
    with pytest.raises(SchemaError, match=r"propensities must lie in \(0, 1\], found 0"):
        estimate([1.0, 0.0], [0.0, 0.5], [1.0, 1.0])
    with pytest.raises(SchemaError, match="found 1.5"):
        estimate([1.0, 0.0], [1.5, 0.5], [1.0, 1.0])
