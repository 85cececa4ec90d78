"""Performance with delayed labels: metric oracles, planted decay, quiet nulls, label maturity."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from labelsim import rows, simulate
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from checks import metrics
from checks.labelled import Rows
from checks.performance import PerformanceCheck


@pytest.fixture(scope="module")
def reference():
    return rows(simulate(300_000, seed=21, ctr=0.03))


def test_metrics_equal_sklearn_overall_and_per_segment(reference):
    current = rows(simulate(60_000, seed=22, ctr=0.03))
    result = PerformanceCheck(segments=("os",)).fit(reference).evaluate(current)
    overall = result.details["overall"]
    y, p = current.labels, current.scores
    # AUC from the label profile's binned ROC: within its stated bound (and 1e-3) of the rows' AUC.
    assert abs(overall["auc"] - roc_auc_score(y, p)) <= min(overall["auc_bound"], 1e-3)
    assert overall["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
    assert overall["brier"] == pytest.approx(brier_score_loss(y, p), rel=1e-9)
    assert overall["ne"] == pytest.approx(log_loss(y, p) / metrics.entropy(y.mean()), rel=1e-9)
    ios = next(s for s in result.details["segments"] if s["value"] == "ios")
    mask = current.segments["os"].codes == 1
    assert abs(ios["auc"] - roc_auc_score(y[mask], p[mask])) <= min(ios["auc_bound"], 1e-3)
    assert ios["reference"]["count"] == int((reference.segments["os"].codes == 1).sum())
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize("seed", range(30, 35))
def test_null_windows_stay_quiet(reference, seed):
    current = rows(simulate(100_000, seed=seed, ctr=0.03))
    result = PerformanceCheck(segments=("os", "offer_id")).fit(reference).evaluate(current)
    assert result.status in ("ok", "warn")


def test_scores_that_lost_their_ranking_alert_on_auc_and_ne(reference):
    data = simulate(100_000, seed=36, ctr=0.03)
    rng = np.random.default_rng(36)
    scrambled = rng.random(len(data["score"])) < 0.5
    data["score"][scrambled] = rng.permutation(data["score"][scrambled])  # same score distribution
    result = PerformanceCheck().fit(reference).evaluate(rows(data))
    statuses = result.details["overall"]["statuses"]
    assert statuses["auc_drop"] == "alert" and statuses["ne_rise"] == "alert"
    assert statuses["calibration"] in ("ok", "warn")
    assert result.status == "alert"


def test_calibration_decay_shows_in_performance(reference):
    current = rows(simulate(200_000, seed=37, ctr=0.03, factor=0.8))
    result = PerformanceCheck().fit(reference).evaluate(current)
    assert result.details["overall"]["statuses"]["calibration"] == "alert"


def test_all_positive_window_reports_undefined_auc_without_failing(reference):
    n = 1000
    current = Rows(np.full(n, 0.4), np.ones(n), {})
    result = PerformanceCheck().fit(reference).evaluate(current)
    overall = result.details["overall"]
    assert overall["auc"] is None and overall["ne"] is None
    assert overall["statuses"]["auc_drop"] == "insufficient_data"
    assert overall["statuses"]["calibration"] == "alert"
    json.dumps(result.to_dict(), allow_nan=False)


# ------------------------------------------------------------------ label maturity through the runner


def test_window_is_pending_until_labels_mature_then_runs_once(demo_store, small_world):
    from monitor.runner import ModelRunner

    config, store = demo_store
    start = small_world.serving_start
    end = start + timedelta(days=1)
    model = config.models[0]

    def run_at(now):
        runner = ModelRunner(config, model, store, clock=lambda: now)
        return runner.run(start, end, ["performance", "calibration"])

    # Click labels take 6h: one hour after the window closed, nothing can be judged yet.
    early = run_at(end + timedelta(hours=1))
    assert {r.status for r in early} == {"pending"}
    assert early[0].details["labels_mature_at"] == (end + timedelta(hours=6)).isoformat()
    assert store.get_result(model.name, "performance", start, end).status == "pending"
    # Once mature it runs, and the real result replaces the pending one under the same key.
    mature = run_at(end + timedelta(hours=7))
    assert {r.status for r in mature} <= {"ok", "warn"}
    assert mature[0].details["overall"]["count"] == 4000
    assert store.count_runs(check_name="performance") == 1
    stored = store.get_result(model.name, "performance", start, end)
    assert stored.status == mature[0].status and stored.to_dict() == mature[0].to_dict()
    # Running again later gives the same row, not a second one.
    again = run_at(end + timedelta(days=3))
    assert again[0].to_dict() == mature[0].to_dict() and store.count_runs(check_name="performance") == 1


def test_missing_label_column_in_serving_is_an_error_result_not_a_crash(demo_store, small_world):
    from monitor.config import parse_config
    from monitor.demo.run import demo_config
    from monitor.runner import ModelRunner

    config, store = demo_store
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"]["url"] = config.store.url
    raw["models"][0]["schema"]["labels"] = [{"name": "purchase", "delay": "1h"}]
    broken = parse_config(raw, "test", small_world.root.parent)
    start = small_world.serving_start
    results = ModelRunner(broken, broken.models[0], store).run(start, start + timedelta(days=1), ["performance"])
    assert results[0].status == "error" and "'purchase'" in results[0].details["error"]


def test_learned_tolerance_is_capped_and_shown_in_json_table_and_alert():
    """A reference whose chunks differ wildly (every other chunk's CTR x2.5) would learn a
    calibration tolerance no window reaches; the cap holds it at 3 x static and says so."""
    from monitor import cli
    from monitor.alerts.rules import alert_keys

    parts = [simulate(20_000, seed=60 + i, ctr=0.03, factor=2.5 if i % 2 else 1.0) for i in range(10)]
    varied = Rows(np.concatenate([rows(p).scores for p in parts]), np.concatenate([rows(p).labels for p in parts]))
    uncapped = PerformanceCheck(threshold_mode="learned", learned_cap=1000).fit(varied)
    assert uncapped.tolerances["calibration"].alert > 0.5  # what the spread asks for: a 50%+ change tolerated
    check = PerformanceCheck(threshold_mode="learned").fit(varied)
    tolerance = check.tolerances["calibration"]
    assert tolerance.pair == pytest.approx((0.075, 0.15)) and tolerance.capped
    decayed = rows(simulate(200_000, seed=70, ctr=0.03, factor=0.5))
    result = check.evaluate(decayed)
    assert result.status == "alert"  # uncapped, a 50% calibration decay would pass unnoticed
    assert uncapped.evaluate(decayed).details["overall"]["statuses"]["calibration"] == "ok"
    data = json.loads(json.dumps(result.to_dict()))
    shown = data["details"]["tolerances"]["calibration"]
    assert shown["capped"] and shown["widened_by"] == pytest.approx(3) and shown["uncapped_alert"] > 0.5
    note = next(n for n in data["details"]["tolerance_notes"] if n.startswith("calibration"))
    assert "0.05 -> 0.15 (x3.00), capped" in note
    with cli.out.capture() as captured:
        cli._print_result_table(result)
    assert "calibration tolerance widened" in captured.get() and "capped" in captured.get()
    why = next(iter(alert_keys("m", result, ("warn", "alert")).values()))["why"]
    assert "calibration tolerance widened" in why
