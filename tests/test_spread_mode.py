"""Spread mode (the default of performance and calibration): tolerances from the reference's
chunk-to-chunk spread at the window's size, NannyML's idea with our significance test on top.

The planted world is bench/_label_scenarios.py's NannyML-style one: a calibrated score with
AUC ~0.97, base rate 0.5, a 50,000-row reference (10 chunks of 5,000 rows); degraded windows
draw their labels with extra noise (AUC drop ~0.01). Rates are counted over many windows.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench._label_scenarios import CHUNK, planted_world
from checks import metrics
from checks.calibration import CalibrationCheck
from checks.labelled import Rows
from checks.performance import PerformanceCheck

PLANTED_NOISE = 0.2  # label noise giving an AUC drop of ~0.010 (measured below)


@pytest.fixture(scope="module")
def reference():
    return Rows(*planted_world(10 * CHUNK, seed=0))


@pytest.fixture(scope="module")
def fitted(reference):
    return PerformanceCheck().fit(reference), CalibrationCheck().fit(reference)


def _alerts(fitted, windows) -> int:
    return sum(any(check.evaluate(w).status == "alert" for check in fitted) for w in windows)


def test_spread_mode_is_the_default_and_catches_a_planted_001_auc_drop(reference, fitted):
    degraded = [Rows(*planted_world(CHUNK, seed=5000 + i, label_noise=PLANTED_NOISE)) for i in range(30)]
    window_aucs = [metrics.auc(w.labels, w.scores) for w in degraded]
    drop = metrics.auc(reference.labels, reference.scores) - np.mean(window_aucs)
    assert 0.007 < drop < 0.013  # the plant is an AUC drop of about 0.01
    result = fitted[0].evaluate(degraded[0])
    assert result.details["threshold_mode"] == "spread (10 reference chunks of 5000 rows)"
    assert result.details["tolerances"]["auc_drop"]["basis"] == "chunk_spread"
    caught = _alerts(fitted, degraded)
    assert caught >= 24, caught  # measured 28/30 (static: 0/30)
    static = (PerformanceCheck(threshold_mode="static").fit(reference),
              CalibrationCheck(threshold_mode="static").fit(reference))
    assert _alerts(static, degraded[:10]) <= 2


def test_spread_mode_is_quiet_on_null_windows(fitted):
    null = [Rows(*planted_world(CHUNK, seed=1000 + i)) for i in range(80)]
    false_alarms = _alerts(fitted, null)
    assert false_alarms <= 3, false_alarms  # measured 0/80; k = 3 std is ~0.1% per comparison


def test_too_few_reference_chunks_fall_back_to_static(reference):
    small = Rows(reference.scores[:20_000], reference.labels[:20_000])
    result = PerformanceCheck().fit(small).evaluate(Rows(*planted_world(CHUNK, seed=7)))
    assert result.details["threshold_mode"].startswith("static (the spread mode needs 8 reference chunks")
    assert result.details["tolerances"]["auc_drop"]["alert"] == 0.05
    calibration = CalibrationCheck().fit(small).evaluate(Rows(*planted_world(CHUNK, seed=7)))
    assert calibration.details["threshold_mode"].startswith("static")


def test_chunks_that_really_differ_widen_the_band(reference):
    """Overdispersed reference: every other chunk's labels are noisier. The band must exceed
    the sampling-only one, so such chunk-to-chunk variation does not alert."""
    parts = [planted_world(CHUNK, seed=300 + i, label_noise=0.35 * (i % 2)) for i in range(10)]
    varied = Rows(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    window = Rows(*planted_world(CHUNK, seed=9))
    calm = PerformanceCheck().fit(reference).evaluate(window).details["tolerances"]["auc_drop"]
    wide = PerformanceCheck().fit(varied).evaluate(window).details["tolerances"]["auc_drop"]
    assert wide["alert"] > 1.5 * calm["alert"]
    noisy = [Rows(*planted_world(CHUNK, seed=400 + i, label_noise=0.35 * (i % 2))) for i in range(20)]
    fitted = (PerformanceCheck().fit(varied), CalibrationCheck().fit(varied))
    assert _alerts(fitted, noisy) <= 1
