"""Label metrics against scikit-learn and scipy, interval coverage, the noise budget and Page-Hinkley."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import false_discovery_control
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from checks import metrics
from checks.changepoint import page_hinkley
from checks.thresholds import bh_adjust, benjamini_hochberg, decide, excess_spread, learn_tolerance


def _draw(seed: int, n: int = 5000, ctr: float = 0.05, ties: bool = False):
    rng = np.random.default_rng(seed)
    p = rng.beta(1.5, 1.5 / ctr, n)
    if ties:
        p = np.round(p, 2)  # many tied scores
    y = (rng.random(n) < p).astype(int)
    return y, p


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_auc_log_loss_brier_equal_sklearn(seed, ties):
    y, p = _draw(seed, ties=ties)
    assert metrics.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)


def test_log_loss_clips_certain_mistakes_like_sklearn():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.0, 1.0, 1.0, 0.0])
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_weighted_and_expected_auc_equal_sklearn_with_weights():
    y, p = _draw(3, n=3000, ties=True)
    w = np.random.default_rng(4).random(len(y))
    assert metrics.auc(y, p, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    q = np.clip(p * 1.3, 0, 1)
    expected = roc_auc_score(np.r_[np.ones_like(p), np.zeros_like(p)], np.r_[p, p], sample_weight=np.r_[q, 1 - q])
    assert metrics.expected_auc(p, q) == pytest.approx(expected, abs=1e-12)


def test_auc_of_one_class_is_none():
    assert metrics.auc(np.ones(10), np.linspace(0, 1, 10)) is None
    assert metrics.normalized_entropy(np.ones(10), np.full(10, 0.5)) is None


@pytest.mark.parametrize("n_bins", [5, 10, 20])
def test_reliability_curve_equals_sklearn_quantile_curve(n_bins):
    y, p = _draw(5, n=4000, ties=True)
    curve = metrics.reliability(y, p, n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    np.testing.assert_allclose(curve["observed_rate"], prob_true, rtol=1e-12)
    np.testing.assert_allclose(curve["mean_predicted"], prob_pred, rtol=1e-12)
    assert sum(curve["counts"]) == len(y)
    manual = sum(c / len(y) * abs(o - m) for c, o, m in zip(curve["counts"], prob_true, prob_pred))
    assert curve["ece"] == pytest.approx(manual, rel=1e-12)


def test_calibration_interval_covers_the_true_ratio_at_ctr_1_percent():
    """95% nominal; required >= 90% of draws (sum p / sum q, q the true probabilities)."""
    rng = np.random.default_rng(7)
    covered = covered_relative = 0
    draws = 400
    for _ in range(draws):
        p = rng.beta(2.0, 198.0, 20_000)  # CTR 1%
        q = p * 0.9  # the model over-predicts by ~11%: true ratio sum p / sum q
        y = rng.random(len(p)) < q
        expected, observed = p.sum(), y.sum()
        low, high = metrics.poisson_interval(observed)
        true_ratio = p.sum() / q.sum()
        covered += expected / high <= true_ratio <= expected / low
        # The change against a calibrated reference of the same size: true phi = sum q / sum p.
        p_ref = rng.beta(2.0, 198.0, 20_000)
        y_ref = rng.random(len(p_ref)) < p_ref
        _, lo, hi = metrics.rate_ratio_interval(observed, expected, y_ref.sum(), p_ref.sum())
        covered_relative += lo <= q.sum() / p.sum() <= hi
    assert covered / draws >= 0.90
    assert covered_relative / draws >= 0.90


def test_band_pvalue_is_small_exactly_when_the_interval_leaves_the_band():
    for observed in (60, 80, 100, 120, 140):
        _, low, high = metrics.rate_ratio_interval(observed, 100.0)
        p = metrics.band_pvalues(observed, 100.0, None, None, 0.05)
        outside = high < 1 / 1.05 or low > 1.05
        assert (p < 0.05) == outside


def test_bh_matches_scipy_and_controls_the_family():
    rng = np.random.default_rng(0)
    p = rng.random(200) ** 3
    np.testing.assert_allclose(bh_adjust(p), false_discovery_control(p, method="bh"), rtol=1e-12)
    with_nan = np.r_[p[:5], np.nan]
    assert np.isnan(bh_adjust(with_nan)[-1]) and not benjamini_hochberg(with_nan)[-1]
    # 1,000 null comparisons: at most an alpha share of families raise anything.
    families_with_alarm = sum(benjamini_hochberg(rng.random(1000), 0.05).any() for _ in range(200))
    assert families_with_alarm / 200 <= 0.09


def test_decide_separates_warn_alert_and_insufficient():
    statuses = decide([1e-9, 1e-9, 0.9, math.nan], [1e-9, 0.9, 0.9, math.nan])
    assert statuses == ["alert", "warn", "ok", "insufficient_data"]


def test_learned_tolerance_ignores_pure_noise_and_rises_with_overdispersion():
    rng = np.random.default_rng(1)
    variances = np.full(10, 0.01)
    noise_only = rng.normal(0, 0.1, 10)  # exactly the sampling noise
    assert learn_tolerance((0.05, 0.1), noise_only, variances).pair == (0.05, 0.1)
    overdispersed = rng.normal(0, 0.5, 10)
    tolerance = learn_tolerance((0.05, 0.1), overdispersed, variances, cap=100)
    assert tolerance.learned and tolerance.warn > 0.5 and tolerance.alert > tolerance.warn
    assert not tolerance.capped and tolerance.widened_by == pytest.approx(tolerance.alert / 0.1)
    assert excess_spread([0.1, 0.2]) is None  # fewer than 3 chunks: static stands


def test_learned_tolerance_is_capped_and_says_so():
    rng = np.random.default_rng(1)
    overdispersed = rng.normal(0, 0.5, 10)
    uncapped = learn_tolerance((0.05, 0.1), overdispersed, np.full(10, 0.01), cap=100)
    capped = learn_tolerance((0.05, 0.1), overdispersed, np.full(10, 0.01))  # default cap: 3 x static
    assert capped.pair == pytest.approx((0.15, 0.3)) and capped.capped and capped.widened_by == pytest.approx(3)
    assert capped.uncapped == pytest.approx(uncapped.pair)
    data = capped.to_dict()
    assert data["capped"] and data["widened_by"] == pytest.approx(3) and data["static_alert"] == 0.1
    assert data["uncapped_alert"] == pytest.approx(uncapped.alert)
    assert "capped" in capped.note("auc_drop") and "0.1 -> 0.3" in capped.note("auc_drop")
    assert learn_tolerance((0.05, 0.1), overdispersed, np.full(10, 0.01), cap=1).pair == pytest.approx((0.05, 0.1))


def test_page_hinkley_by_hand_and_on_planted_shift():
    # Running mean 0 on zeros; a jump of 12 after 4 zeros: 12 * 4/5 - delta = 9.1 > 8.
    assert page_hinkley([0, 0, 0, 0, 12], delta=0.5, threshold=8).detections == (4,)
    assert page_hinkley([0, 0, 0, 0, 10], delta=0.5, threshold=8).detections == ()
    rng = np.random.default_rng(3)
    null = rng.normal(0, 1, 500)
    assert len(page_hinkley(null, 0.5, 8).detections) <= 1
    shifted = np.r_[rng.normal(0, 1, 50), rng.normal(3, 1, 20)]
    result = page_hinkley(shifted, 0.5, 8)
    assert result.detections and 50 <= result.detections[0] <= 55
    assert page_hinkley([0, 0, float("nan"), 0, 12]).detections == (4,)
