"""The demo runs its week the way `serve` does: through the run ledger and the alert rules, and
delivers its alerts through the log sink, so `jobs history`, `alerts list` and /metrics show it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.demo.jobs import run_week
from monitor.demo.run import CHECKS_RUN_DAILY, demo_schedules
from monitor.exporter import DriftlineCollector
from monitor.ledger import Ledger
from monitor.store import ResultsStore


def _samples(engine) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftlineCollector(engine, sinks=["log"]))
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_every_enabled_check_gets_a_schedule_bounded_to_the_world(small_world, demo_raw_config):
    model = demo_raw_config["models"][0]
    scheduled = {s["check"] for s in model["schedules"]}
    enabled = parse_config(demo_raw_config, "t", small_world.root.parent).models[0].checks.enabled()
    assert scheduled == set(enabled) == set(CHECKS_RUN_DAILY)
    for schedule in model["schedules"]:
        assert schedule["max_backfill_windows"] >= small_world.serving_days  # no window is skipped


def test_the_week_runs_through_the_ledger_and_delivers_alerts(small_world, demo_raw_config, tmp_path):
    model = demo_raw_config["models"][0]
    model["schedules"] = demo_schedules(small_world, ["data_drift", "prediction_drift"])
    config = parse_config(demo_raw_config, "t", small_world.root.parent)
    store = ResultsStore(config.store_url())
    messages = []
    try:
        week = run_week(config, store, tmp_path, messages.append)
        days = small_world.serving_days
        assert week.ran == 2 * days and week.outcomes == {"succeeded": 2 * days}
        rows = Ledger(store.engine).rows(limit=100)
        assert len(rows) == 2 * days
        assert {r["state"] for r in rows} == {"succeeded"}
        assert not any((r["reason"] or "").startswith("adopted") for r in rows)
        # The planted device-mix shift (serving day 1) alerts and is delivered, then resolves.
        shift_day = small_world.serving_day(1)
        drift = next(r for r in week.by_day[shift_day] if r.check == "data_drift")
        assert drift.status == "alert" and "device" in drift.alerting_features
        assert week.delivered.get("firing", 0) >= 1 and week.delivered.get("resolved", 0) >= 1
        log_text = week.alert_log.read_text()
        assert "alert firing [alert] offer-ctr data_drift device" in log_text
        assert f"data_drift {shift_day}: alert" in " ".join(messages)
        samples = _samples(store.engine)
        sent = samples[("driftline_alerts_sent_total", (("sink", "log"),))]
        assert sent == sum(week.delivered.values())
        assert samples[("driftline_job_windows", (("check", "data_drift"), ("model", "offer-ctr"),
                                                  ("state", "succeeded")))] == days
        # The week ends on the price rise (serving day 6): what /metrics shows first, each check's
        # latest window, is that incident, still alerting, and its alert is active and delivered.
        last_day = small_world.serving_day(days - 1)
        last = next(r for r in week.by_day[last_day] if r.check == "data_drift")
        assert last.status == "alert" and "offer_price" in last.alerting_features
        check = (("check", "data_drift"), ("model", "offer-ctr"))
        assert samples[("driftline_check_status", check)] == 2
        assert samples[("driftline_check_window_end_timestamp_seconds", check)] == \
               (small_world.serving_start + timedelta(days=days)).timestamp()
        assert samples[("driftline_alerts_active", check + (("severity", "alert"),))] == 1
        assert "alert firing [alert] offer-ctr data_drift offer_price" in log_text
        # Again: every window is done; nothing runs or is delivered twice, the results are the same.
        again = run_week(config, store, tmp_path, messages.append)
        assert again.ran == 0 and again.delivered == {}
        assert {d: [r.status for r in rs] for d, rs in again.by_day.items()} == \
               {d: [r.status for r in rs] for d, rs in week.by_day.items()}
    finally:
        store.close()


def test_jobs_list_shows_no_wake_up_after_a_schedule_ended(small_world, demo_raw_config):
    from monitor.commands.jobs import next_wake_up
    from monitor.scheduling import schedules_of

    config = parse_config(demo_raw_config, "t", small_world.root.parent)
    schedule = schedules_of(config)[0]
    now = datetime.now(timezone.utc)
    assert next_wake_up(schedule, now) is None  # the world's week ended in 2024
    during = small_world.serving_start + timedelta(days=2, hours=3)
    upcoming = next_wake_up(schedule, during)
    assert upcoming is not None and upcoming <= small_world.serving_start + timedelta(days=3, minutes=5)


def test_a_rerun_keeps_the_users_registry_and_says_so(small_world, demo_raw_config, tmp_path):
    from retrain.base import FeatureSet
    from monitor.demo.retrain import retrain_demo, summary_line
    from retrain.lightgbm_trainer import LightGBMModel
    from retrain.pipeline import import_model, registry_for

    demo_raw_config["models"][0]["retrain"]["registry"] = str(tmp_path / "registry")
    config = parse_config(demo_raw_config, "t", small_world.root.parent)
    model = config.models[0]
    registry = registry_for(config, model)
    manifest = small_world.manifest()
    features = FeatureSet(tuple(manifest["numeric_features"]), tuple(manifest["categorical_features"]))
    current = LightGBMModel.from_file(small_world.model_path, features, manifest["vocabulary"], ("click",))
    for _ in range(2):
        import_model(registry, model.name, current, {"data_window": {"source": "a user's version"}})
    registry.promote(model.name, 1, reason="mine")
    registry.promote(model.name, 2, reason="mine")
    registry.rollback(model.name, reason="mine too")
    said = []
    section = retrain_demo(small_world, config, said.append)
    assert section["kept"] and section["versions"] == [1, 2] and section["production"] == 1
    assert registry.versions(model.name) == [1, 2] and registry.production(model.name) == 1
    assert "kept as it is" in said[0] and "delete it to replay" in said[0]
    assert "kept as it is" in summary_line(section)


def test_the_demo_summary_prints_the_ledger_the_alerts_and_where_they_went(tmp_path, capsys):
    from monitor.cli import print_demo_summary

    summary = {"incidents": [{"name": "device_mix_shift", "day": "2024-06-04", "features": ["device", "os"],
                              "detected": True, "detected_by": ["data_drift"]}],
               "false_alarms": [],
               "jobs": {"windows_run": 56, "outcomes": {"succeeded": 56}, "windows": 56},
               "alerts": {"delivered": {"firing": 18, "resolved": 18}, "sink": "log", "log": "alerts.log"},
               "retrain": {"kept": True, "registry": "registry", "versions": [1, 2], "production": 1}}
    print_demo_summary(summary, tmp_path)
    text = " ".join(capsys.readouterr().out.split())
    assert "device_mix_shift" in text and "caught" in text
    assert "run ledger: 56 (check, day) windows run now (56 succeeded)" in text
    assert f"alerts delivered through the log sink: 18 firing, 18 resolved; lines in {tmp_path / 'alerts.log'}" in text
    assert "registry registry kept as it is (versions 1, 2, production v1)" in text
    assert "driftline demo --serve" in text and "…" not in text


def test_a_store_from_a_demo_before_the_ledger_starts_afresh(tmp_path):
    """Its windows would only be adopted: no alerts, ledger rows saying "adopted"."""
    import json

    from monitor.demo.run import _forget_unledgered_results

    (tmp_path / "driftline.db").write_text("old")
    (tmp_path / "summary.json").write_text(json.dumps({"incidents": [], "false_alarms": []}))
    said = []
    _forget_unledgered_results(tmp_path, said.append)
    assert not (tmp_path / "driftline.db").exists() and "starting it afresh" in said[0]
    (tmp_path / "driftline.db").write_text("new")
    (tmp_path / "summary.json").write_text(json.dumps({"jobs": {"windows_run": 0}}))
    _forget_unledgered_results(tmp_path, said.append)
    assert (tmp_path / "driftline.db").read_text() == "new" and len(said) == 1
