"""The `exploration` check: planted collapse on one partner and lost propensities are caught,
a clean epsilon-greedy log stays quiet, and the coverage statistics obey their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from rankingsim import run_check, with_setting, write_rollout_world

from checks.exploration import ExplorationParams, gini, share_pvalues


def run_day(path, hours: int = 24):
    return run_check(path, "exploration", 0, hours)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    def world(name, **kwargs):
        return write_rollout_world(tmp_path_factory.mktemp(name), hours=24, per_hour=2000, **kwargs)

    return {"clean": world("clean", seed=11), "collapsed": world("collapsed", collapsed_partner="p3", seed=12),
            "lost": world("lost", bad_propensity_share=0.02, seed=13)}


def test_clean_epsilon_greedy_logs_stay_quiet(worlds):
    result = run_day(worlds["clean"])
    assert result.status == "ok", result.details
    overall = result.details["overall"]
    assert abs(overall["explored_share"] - 0.1) < 0.01
    coverage = result.details["coverage"]
    assert coverage["catalogue_size"] == 200 and coverage["coverage"] > 0.9
    assert {p.name for p in result.metrics} >= {"exploration_share", "exploration_epsilon", "catalogue_coverage",
                                               "impressions_gini", "propensity_missing_ratio"}


def test_exploration_collapsing_on_one_partner_alerts_naming_it(worlds):
    result = run_day(worlds["collapsed"])
    assert result.status == "alert"
    assert result.details["collapsed"] == ["partner=p3"]  # the others still explore: not named
    shares = {s["value"]: s["explored_share"] for s in result.details["segments"]}
    assert shares["p3"] == 0 and shares["p1"] > 0.08


def test_lost_propensities_alert(worlds):
    result = run_day(worlds["lost"])
    assert result.status == "alert" and result.details["propensity"]["status"] == "alert"
    assert 0.015 < result.details["propensity"]["missing_share"] < 0.025
    assert result.details["collapsed"] == []


def test_share_test_false_alarm_rate_on_binomial_null_is_within_alpha():
    rng = np.random.default_rng(0)
    params = ExplorationParams(epsilon=0.05, alpha=0.01)
    rows = np.full(20_000, 5000.0)
    hits = rng.binomial(5000, 0.05, rows.size).astype(float)
    p_warn, p_alert = share_pvalues(hits, rows, params)
    assert (p_warn < params.alpha).mean() <= params.alpha
    assert (p_alert < params.alpha).mean() == 0
    collapsed = rng.binomial(5000, 0.01, 1000).astype(float)  # 20% of epsilon (alert below 50%)
    assert (share_pvalues(collapsed, rows[:1000], params)[1] < params.alpha).mean() > 0.99


def test_gini_laws():
    assert gini(np.full(50, 7.0)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(99), 10.0]) == pytest.approx(0.99)
    x = np.random.default_rng(1).poisson(3, 300).astype(float)
    assert gini(x) == pytest.approx(gini(5 * x))  # scale free
    assert 0 <= gini(x) <= 1


def test_bad_band_and_missing_column_are_clear_errors(worlds, tmp_path):
    with pytest.raises(ValueError, match="warn_band"):
        ExplorationParams(warn_band=(0.3, 1.2))
    result = run_day(with_setting(worlds["clean"], "exploration", "explored_column", "no_such_flag", tmp_path), hours=2)
    assert result.status == "error" and "no_such_flag" in result.details["error"]
