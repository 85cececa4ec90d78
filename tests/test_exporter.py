"""The exporter: the store read at scrape time, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from core.results import CheckResult
from monitor import exporter
from monitor.alerts.outbox import enqueue
from monitor.alerts.sinks import AlertMessage
from monitor.exporter import DriftlineCollector
from monitor.ledger import Ledger
from monitor.store import ResultsStore
from service_helpers import result

UTC = timezone.utc
D = datetime(2026, 5, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def scrape(collector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture()
def store(tmp_path):
    found = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield found
    found.close()


def test_latest_results_become_gauges(store):
    store.save_run("m", result("data_drift", D, D + DAY, {"device": "alert", "x": "ok"}), D, D + DAY)
    newer = result("data_drift", D + DAY, D + 2 * DAY, {"device": "warn", "x": "ok"})
    store.save_run("m", newer, D + DAY, D + 2 * DAY)
    store.save_run("m", result("quality", D, D + DAY, {}, status="insufficient_data"), D, D + DAY)
    store.save_run("m", result("skew", D, D + DAY, {}, status="error"), D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine, scheduled=[("m", "data_drift"), ("m", "performance")]))
    assert value(samples, "driftline_check_status", model="m", check="data_drift") == 1  # the newer window: warn
    assert value(samples, "driftline_check_status", model="m", check="quality") == -1
    assert value(samples, "driftline_check_status", model="m", check="skew") == 2
    assert value(samples, "driftline_check_status", model="m", check="performance") == -2  # pending
    assert value(samples, "driftline_feature_drift_score", model="m", check="data_drift", feature="device",
                 method="wasserstein") == 0.15
    assert value(samples, "driftline_feature_status", model="m", check="data_drift", feature="device") == 1
    assert value(samples, "driftline_check_window_end_timestamp_seconds", model="m",
                 check="data_drift") == (D + 2 * DAY).timestamp()
    assert value(samples, "driftline_store_up") == 1
    # Zero-valued series exist for scheduled pairs before anything happened.
    assert value(samples, "driftline_job_skipped_total", model="m", check="performance", reason="overlap") == 0
    assert value(samples, "driftline_alerts_active", model="m", check="data_drift", severity="alert") == 0


def test_new_checks_are_read_from_generic_details(store):
    details = {
        "overall": {"calibration_ratio": 1.12, "ece": 0.004, "count": 10_000},
        "segments": [{"segment": "os=ios", "calibration_ratio": 1.4}, {"segment": "os=android", "auc": 0.71}],
        "predictions": {"p_click": {"auc": 0.74, "normalized_entropy": 0.93}},
        "prediction": {"mismatch_rate": 0.02},
        "value_mismatch_rate": {"cart_value": 0.97, "device": 0.0},
        "feature_importance": {"shap": {"cart_value": 0.3, "device": 0.1}},
        "ignored": {"auc": "not a number"},
    }
    store.save_run("m", CheckResult(check="brand_new_check", status="alert", details=details), D, D + DAY)
    importance = CheckResult(check="explain", status="ok", details={
        "method": "permutation", "features": [{"feature": "device", "importance": 0.2, "std": 0.01}]})
    store.save_run("m", importance, D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine))
    base = {"model": "m", "check": "brand_new_check"}
    assert value(samples, "driftline_calibration_ratio", **base, prediction="", segment="") == 1.12
    assert value(samples, "driftline_ece", **base, prediction="", segment="") == 0.004
    assert value(samples, "driftline_calibration_ratio", **base, prediction="", segment="os=ios") == 1.4
    assert value(samples, "driftline_auc", **base, prediction="", segment="os=android") == 0.71
    assert value(samples, "driftline_auc", **base, prediction="p_click", segment="") == 0.74
    assert value(samples, "driftline_normalized_entropy", **base, prediction="p_click", segment="") == 0.93
    assert value(samples, "driftline_prediction_skew_ratio", **base, prediction="", segment="") == 0.02
    assert value(samples, "driftline_skew_mismatch_ratio", **base, feature="cart_value") == 0.97
    assert value(samples, "driftline_feature_importance", **base, feature="cart_value", method="shap") == 0.3
    assert not any(name == "driftline_auc" and dict(labels).get("check") == "explain" for name, labels in samples)
    skew_from_list = CheckResult(check="skew2", status="ok", details={
        "features": [{"feature": "x", "value_mismatch_rate": 0.5}],
        "feature_importance": [{"feature": "x", "importance": 0.9}]})
    store.save_run("m", skew_from_list, D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine))
    assert value(samples, "driftline_skew_mismatch_ratio", model="m", check="skew2", feature="x") == 0.5
    assert value(samples, "driftline_feature_importance", model="m", check="skew2", feature="x",
                 method="importance") == 0.9


def test_job_and_alert_metrics_come_from_the_ledger_and_outbox(store):
    ledger = Ledger(store.engine)
    for i, (seconds, outcome) in enumerate([(3.0, "succeeded"), (40.0, "succeeded"), (700.0, "failed")]):
        start = D + i * DAY
        claim = ledger.claim("m", "data_drift", start, start + DAY, lease=timedelta(minutes=1), now=start + DAY)
        ledger.finish(claim, outcome, duration=seconds, now=start + DAY + timedelta(seconds=seconds))
    with store.engine.begin() as connection:
        for n in range(3):
            enqueue(connection, AlertMessage(id=f"msg_{n}", kind="firing", dedup_key=f"k{n}", route="m/hook",
                                             model="m", check="c", feature="", severity="alert", status="alert",
                                             summary="s"), "webhook", 5)
    samples = scrape(DriftlineCollector(store.engine, sinks=["webhook", "log"]))
    labels = {"model": "m", "check": "data_drift"}
    assert value(samples, "driftline_job_duration_seconds_bucket", **labels, le="5.0") == 1
    assert value(samples, "driftline_job_duration_seconds_bucket", **labels, le="60.0") == 2
    assert value(samples, "driftline_job_duration_seconds_bucket", **labels, le="+Inf") == 3
    assert value(samples, "driftline_job_duration_seconds_count", **labels) == 3
    assert value(samples, "driftline_job_duration_seconds_sum", **labels) == 743.0
    assert value(samples, "driftline_job_failures_total", **labels) == 1
    assert value(samples, "driftline_job_last_success_timestamp_seconds", **labels) == (D + 2 * DAY + timedelta(
        seconds=40)).timestamp()
    assert value(samples, "driftline_job_windows", **labels, state="failed") == 1
    assert value(samples, "driftline_alerts_pending", sink="webhook") == 3
    assert value(samples, "driftline_alerts_sent_total", sink="log") == 0


def test_series_are_capped_and_a_broken_store_is_reported(store, monkeypatch):
    monkeypatch.setattr(exporter, "MAX_SERIES", 5)
    statuses = {f"f{i}": "ok" for i in range(20)}
    store.save_run("m", result("data_drift", D, D + DAY, statuses), D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine))
    assert sum(1 for name, _ in samples if name == "driftline_feature_drift_score") == 5
    broken = create_engine("sqlite:////nonexistent-dir/x.db")
    samples = scrape(DriftlineCollector(broken))
    assert samples == {("driftline_store_up", ()): 0.0}


def test_models_filter_and_the_global_registry_is_untouched(store):
    store.save_run("m", result("data_drift", D, D + DAY, {"x": "ok"}), D, D + DAY)
    store.save_run("other", result("data_drift", D, D + DAY, {"x": "ok"}, model="other"), D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine, models=["m"]))
    assert {dict(labels).get("model") for name, labels in samples} == {"m", None}
    assert b"driftline_" not in generate_latest(REGISTRY)
    assert json.loads(json.dumps(exporter.STATUS_VALUE))["error"] == 2


def test_the_shapes_the_checks_in_this_repository_store(store):
    """Shapes written by checks/calibration.py, checks/performance.py, skew/results.py, explain/drift.py."""
    calibration = {"prediction": "score", "overall": {"count": 20000, "calibration_ratio": 1.69, "ece": 0.012,
                                                      "reference_ratio": 0.95},
                   "segments": [{"segment": "os", "value": "ios", "calibration_ratio": 2.03, "ece": 0.017},
                                {"segment": "os", "value": "android", "calibration_ratio": 1.4, "ece": 0.01}]}
    performance = {"prediction": "score", "overall": {"auc": 0.647, "ne": 1.004, "calibration_ratio": 1.69,
                                                      "reference": {"auc": 0.658, "ne": 0.966}},
                   "segments": [{"segment": "slot", "value": "1", "auc": 0.69, "ne": 1.01}]}
    skew = {"prediction": {"score_column": "score", "mismatch_rate": 0.31, "mean_abs_diff": 0.01},
            "value_skew": {"cart_value": {"value_mismatch_rate": 0.98, "compared": 100}},
            "segments": [{"segment": "os", "value": "ios", "mismatch_rate": 0.5}]}
    explain = {"importance": [{"feature": "cart_value", "method": "mean_abs_shap", "importance": 0.14, "std": 0.01},
                              {"feature": "cart_value", "method": "permutation_logloss", "importance": 0.001}]}
    for check, details in (("calibration", calibration), ("performance", performance),
                           ("train_serve_skew", skew), ("attribution_drift", explain)):
        store.save_run("m", CheckResult(check=check, status="ok", details=details), D, D + DAY)
    samples = scrape(DriftlineCollector(store.engine))
    cal = {"model": "m", "check": "calibration", "prediction": "score"}
    assert value(samples, "driftline_calibration_ratio", **cal, segment="") == 1.69
    assert value(samples, "driftline_calibration_ratio", **cal, segment="os=ios") == 2.03
    assert value(samples, "driftline_calibration_ratio", **cal, segment="os=android") == 1.4
    perf = {"model": "m", "check": "performance", "prediction": "score"}
    assert value(samples, "driftline_auc", **perf, segment="") == 0.647  # not the reference's
    assert value(samples, "driftline_normalized_entropy", **perf, segment="slot=1") == 1.01
    assert value(samples, "driftline_prediction_skew_ratio", model="m", check="train_serve_skew", prediction="score",
                 segment="") == 0.31
    assert value(samples, "driftline_skew_mismatch_ratio", model="m", check="train_serve_skew",
                 feature="cart_value") == 0.98
    assert value(samples, "driftline_feature_importance", model="m", check="attribution_drift", feature="cart_value",
                 method="mean_abs_shap") == 0.14
    assert value(samples, "driftline_feature_importance", model="m", check="attribution_drift", feature="cart_value",
                 method="permutation_logloss") == 0.001


def test_cached_ledger_aggregates_follow_every_change(store):
    ledger = Ledger(store.engine)
    collector = DriftlineCollector(store.engine)
    labels = {"model": "m", "check": "c"}
    for i in range(3):
        claim = ledger.claim("m", "c", D + i * DAY, D + (i + 1) * DAY, lease=timedelta(minutes=1), now=D)
        assert value(scrape(collector), "driftline_job_windows", **labels, state="running") == 1
        ledger.finish(claim, "failed", duration=1.0, now=D)
        samples = scrape(collector)
        assert value(samples, "driftline_job_failures_total", **labels) == i + 1
        assert value(samples, "driftline_job_duration_seconds_count", **labels) == i + 1
    ledger.event("m", "c", "overlap", "skipped")
    assert value(scrape(collector), "driftline_job_skipped_total", **labels, reason="overlap") == 1
