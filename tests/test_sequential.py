"""The rollout test's error rates, measured on simulated rollouts with hourly looks.

Ground truth is known in each simulation, so the rates are oracles: under no difference the
share of rollouts ever told `stop` at any of 168 hourly looks must be at most alpha; under a
planted 5% CTR drop the test must stop most rollouts (power and time to stop are printed, and
recorded in bench/RESULTS.md) and promote at most alpha of them; the confidence sequences
must cover the true difference at every look at once at the nominal rate.
"""

from __future__ import annotations

import numpy as np
import pytest

from checks.sequential import (
    CONTINUE,
    PROMOTE,
    STOP,
    ArmSums,
    Rules,
    first_decision,
    judge,
    mixture_halfwidth,
)
from rankingsim import PRICE_WEIGHTS, PRICES, simulate_arm

ROLLOUTS, HOURS, PER_HOUR, CTR = 2000, 168, 2500, 0.05
ALPHA = 0.05


def run(seed: int, candidate_ctr: float, candidate_predicted: float | None = None, rules: Rules = Rules()):
    rng = np.random.default_rng(seed)
    control = simulate_arm(rng, ROLLOUTS, HOURS, PER_HOUR, CTR)
    candidate = simulate_arm(rng, ROLLOUTS, HOURS, PER_HOUR, candidate_ctr,
                             candidate_ctr if candidate_predicted is None else candidate_predicted)
    return judge(control, candidate, rules)


def test_no_difference_is_stopped_at_most_alpha_of_the_time_with_hourly_looks():
    verdict = run(1, CTR, rules=Rules(margin=0.05))
    ever_stopped = (verdict["decision"] == STOP).any(axis=1).mean()
    print(f"false stop rate over {ROLLOUTS} rollouts x {HOURS} hourly looks: {ever_stopped:.4f} (alpha {ALPHA})")
    assert ever_stopped <= ALPHA
    code, look = first_decision(verdict["decision"])
    promoted = (code == PROMOTE).mean()
    print(f"no difference: promoted {promoted:.3f} (5% margin), mean time to promote {look[code == PROMOTE].mean():.1f} h")
    assert promoted > 0.5  # a candidate as good as the control does get promoted


def test_a_five_percent_ctr_drop_is_stopped_and_almost_never_promoted():
    verdict = run(2, CTR * 0.95)
    code, look = first_decision(verdict["decision"])
    power = (code == STOP).mean()
    promoted = (code == PROMOTE).mean()
    mean_hours = look[code == STOP].mean()
    print(f"5% CTR drop: power {power:.3f} within {HOURS} h, mean time to stop {mean_hours:.1f} h, "
          f"promoted {promoted:.4f}")
    assert promoted <= ALPHA
    assert power >= 0.8
    # Stops come from the harmful metrics, not from calibration (the candidate is calibrated).
    assert not verdict["calibration"]["harmful"].any(axis=1).mean() > ALPHA


@pytest.mark.parametrize("metric,truth", [
    ("ctr", CTR * 0.97 - CTR),
    ("revenue", (CTR * 0.97 - CTR) * float(PRICES @ PRICE_WEIGHTS)),
])
def test_confidence_sequences_cover_the_true_difference_at_every_look(metric, truth):
    rules = Rules(alpha=ALPHA, metrics=(metric,))
    verdict = run(3, CTR * 0.97, rules=rules)[metric]
    missed = ((verdict["low"] > truth) | (verdict["high"] < truth)).any(axis=1).mean()
    print(f"{metric}: the sequence missed the truth at some look in {missed:.4f} of rollouts (alpha {ALPHA})")
    assert missed <= ALPHA


def test_a_miscalibrated_candidate_is_stopped_and_a_calibrated_one_is_not():
    rules = Rules(metrics=("calibration",))
    calibrated = run(4, CTR, rules=rules)
    assert (calibrated["decision"] == STOP).any(axis=1).mean() <= ALPHA
    over = run(5, CTR, candidate_predicted=CTR * 1.25, rules=rules)  # ratio 1.25, tolerance 1.1
    code, look = first_decision(over["decision"])
    assert (code == STOP).mean() >= 0.99
    assert (code != PROMOTE).all()  # calibration alone never promotes


def test_nothing_is_decided_before_the_minimum_impressions():
    rules = Rules(min_impressions=10_000)
    verdict = run(6, CTR * 0.5)  # an obvious drop
    early = judge(ArmSums(5000.0, 250.0, 250.0, 237.5, 0.0, 0.0), ArmSums(5000.0, 50.0, 50.0, 47.5, 0.0, 0.0), rules)
    assert int(early["decision"]) == CONTINUE
    assert (first_decision(verdict["decision"])[0] == STOP).all()


def test_the_sequence_is_wider_than_the_fixed_sample_interval_and_shrinks():
    variance = np.array([1e-4, 1e-5, 1e-6])
    half = mixture_halfwidth(variance, 0.01, 0.05)
    assert (half > 1.96 * np.sqrt(variance)).all()
    assert (np.diff(half) < 0).all()


def test_rules_reject_unknown_metrics_and_bad_alpha():
    with pytest.raises(ValueError, match="latency"):
        Rules(metrics=("latency",))
    with pytest.raises(ValueError, match="alpha"):
        Rules(alpha=1.5)
