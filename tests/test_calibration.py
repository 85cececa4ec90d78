"""Calibration decay: planted decay alerts, null windows stay quiet, segments and minimum counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from labelsim import rows, simulate
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from checks.calibration import CalibrationCheck
from checks.labelled import Rows, Segment


@pytest.fixture(scope="module")
def reference():
    return rows(simulate(500_000, seed=1, ctr=0.02))


def test_ten_percent_decay_at_ctr_2_percent_on_500k_rows_alerts(reference):
    current = rows(simulate(500_000, seed=2, ctr=0.02, factor=0.9))
    result = CalibrationCheck(segments=("os",)).fit(reference).evaluate(current)
    overall = result.details["overall"]
    assert result.status == "alert" and overall["status"] == "alert"
    assert overall["relative_ci_low"] > 1.05  # the interval left the alert band
    assert 1.05 < overall["relative_ratio"] < 1.17  # 1/0.9 = 1.11
    # Every OS decays alike and each has enough clicks to say so.
    assert {s["value"] for s in result.details["segments"] if s["status"] in ("warn", "alert")} == {
        "android", "ios", "windows"}


@pytest.mark.parametrize("seed", range(10, 16))
def test_null_windows_stay_quiet(reference, seed):
    current = rows(simulate(200_000, seed=seed, ctr=0.02))
    result = CalibrationCheck(segments=("os", "offer_id")).fit(reference).evaluate(current)
    assert result.status in ("ok", "warn")
    assert not result.details["segments_alert"]


def test_values_agree_with_sklearn_and_are_json(reference):
    current = rows(simulate(50_000, seed=3, ctr=0.02))
    result = CalibrationCheck(segments=("os",), n_bins=10).fit(reference).evaluate(current)
    overall = result.details["overall"]
    assert overall["count"] == 50_000
    assert overall["calibration_ratio"] == math.fsum(current.scores) / current.labels.sum()  # exact
    assert overall["ci_low"] < overall["calibration_ratio"] < overall["ci_high"]
    assert overall["brier"] == pytest.approx(brier_score_loss(current.labels, current.scores))
    # Reliability bins are equal-mass groups of whole fine profile bins: each group's edges are
    # scikit-learn's quantile edges moved to the nearest fine-bin edge below a share of 1/10.
    prob_true, prob_pred = calibration_curve(current.labels, current.scores, n_bins=10, strategy="quantile")
    curve = overall["reliability"]
    np.testing.assert_allclose(curve["observed_rate"], prob_true, atol=1e-3)
    np.testing.assert_allclose(curve["mean_predicted"], prob_pred, rtol=0.01)
    assert sum(curve["counts"]) == 50_000 and max(abs(c - 5_000) for c in curve["counts"]) < 150
    # ... and exactly the curve of the rows cut at those fine-bin edges.
    cut = np.cumsum(curve["counts"])[:-1]
    order = np.argsort(current.scores, kind="mergesort")
    edges = [current.scores[order[c]] for c in cut]
    ids = np.searchsorted(edges, current.scores, side="right")
    assert np.bincount(ids).tolist() == curve["counts"]
    np.testing.assert_allclose(curve["observed_rate"], np.bincount(ids, current.labels) / np.bincount(ids), rtol=1e-12)
    np.testing.assert_allclose(curve["mean_predicted"], np.bincount(ids, current.scores) / np.bincount(ids),
                               rtol=1e-12)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["details"]["segments"][0]["segment"] == "os"


def test_decay_in_one_segment_is_named_while_overall_holds(reference):
    data = simulate(300_000, seed=4, ctr=0.02)
    windows = data["os"] == 2
    rng = np.random.default_rng(5)
    data["click"][windows & (rng.random(len(windows)) < 0.35)] = 0  # windows users click 35% less
    result = CalibrationCheck(segments=("os",)).fit(reference).evaluate(rows(data))
    by_value = {s["value"]: s for s in result.details["segments"]}
    assert by_value["windows"]["status"] == "alert"
    assert by_value["android"]["status"] == "ok" and by_value["ios"]["status"] == "ok"
    assert result.details["segments_alert"] == ["os=windows"]


def test_top_n_pools_the_rest_and_small_groups_are_insufficient(reference):
    current = rows(simulate(20_000, seed=6, ctr=0.02))
    result = CalibrationCheck(segments=("offer_id",), top_n=3, min_positives=100).fit(reference).evaluate(current)
    segments = result.details["segments"]
    assert [s["value"] for s in segments][-1] == "(other)" and len(segments) == 4
    assert sum(s["count"] for s in segments) == 20_000
    assert {s["status"] for s in segments[:3]} == {"insufficient_data"}  # ~30 predicted clicks each
    assert segments[-1]["status"] != "insufficient_data"


def test_without_reference_the_band_is_around_one():
    current = rows(simulate(300_000, seed=7, ctr=0.02, factor=0.8))
    result = CalibrationCheck().fit(None).evaluate(current)
    assert result.details["baseline"] == "one" and result.status == "alert"
    assert result.details["overall"]["relative_ratio"] == pytest.approx(result.details["overall"]["calibration_ratio"])


def test_learned_band_never_below_static_and_widens_for_an_unstable_reference():
    stable = rows(simulate(200_000, seed=8, ctr=0.02))
    learned = CalibrationCheck(threshold_mode="learned").fit(stable)
    assert learned.tolerance.warn >= 0.025 and learned.tolerance.alert >= 0.05
    # A reference whose CTR swings by +-30% from chunk to chunk (e.g. by hour): wider band.
    data = simulate(200_000, seed=9, ctr=0.02)
    chunk = np.arange(200_000) // 20_000
    swing = np.where(chunk % 2 == 0, 1.0, 0.6)
    rng = np.random.default_rng(9)
    data["click"] = ((rng.random(200_000) < data["score"] * swing)).astype(np.int8)
    data["score"] = data["score"] * 0.8
    unstable = CalibrationCheck(threshold_mode="learned").fit(rows(data))
    assert unstable.tolerance.learned and unstable.tolerance.alert > 0.1


def test_all_positive_window_and_empty_window_do_not_break():
    n = 600
    everything = Rows(np.full(n, 0.5), np.ones(n), {"os": Segment(np.zeros(n, np.int64), ("ios",))})
    result = CalibrationCheck(segments=("os",)).fit(None).evaluate(everything)
    assert result.details["overall"]["calibration_ratio"] == pytest.approx(0.5)
    assert result.status == "alert"  # predicted half of what happened
    json.dumps(result.to_dict(), allow_nan=False)
    empty = Rows(np.zeros(0), np.zeros(0), {"os": Segment(np.zeros(0, np.int64), ("ios",))})
    result = CalibrationCheck(segments=("os",)).fit(None).evaluate(empty)
    assert result.status == "insufficient_data"
    assert result.details["segments"] == []
    assert math.isinf(CalibrationCheck().fit(None).evaluate(
        Rows(np.full(n, 0.1), np.zeros(n))).details["overall"]["calibration_ratio"])
