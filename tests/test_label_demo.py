"""The demo summary attributes label-check alerts to the incidents they stand for."""

from __future__ import annotations

from core.results import CheckResult, FeatureDrift
from monitor.demo.run import demo_config, summarise


def _alert(check: str, day: str, features: tuple[str, ...] = ()) -> CheckResult:
    named = tuple(FeatureDrift(feature=f, kind="categorical", method="residuals", score=1.0, threshold=0.4,
                               status="alert", reference_count=1, current_count=1) for f in features)
    return CheckResult(check=check, status="alert", features=named, window_start=f"{day}T00:00:00+00:00",
                       window_end=f"{day}T23:59:59+00:00")


def test_concept_and_calibration_alerts_count_for_their_incidents_and_clean_days_for_false_alarms(small_world):
    truth = {i["name"]: i["day"] for i in small_world.incidents()}
    clean = small_world.clean_days()[0]
    by_day = {
        truth["concept_drift"]: [_alert("concept_drift", truth["concept_drift"], ("offer_id", "os"))],
        truth["calibration_decay"]: [_alert("calibration", truth["calibration_decay"]),
                                     _alert("performance", truth["calibration_decay"])],
        truth["device_mix_shift"]: [_alert("calibration", truth["device_mix_shift"])],  # not this incident's kind
        clean: [_alert("concept_drift", clean, ("slot",))],
    }
    summary = {i["name"]: i for i in summarise(small_world, by_day)["incidents"]}
    assert summary["concept_drift"]["detected_by"] == ["concept_drift"]
    assert summary["concept_drift"]["first_detected_window"].startswith(truth["concept_drift"])
    assert summary["calibration_decay"]["detected_by"] == ["calibration", "performance"]
    assert not summary["device_mix_shift"]["detected"]
    alarms = summarise(small_world, by_day)["false_alarms"]
    assert alarms == [{"day": clean, "check": "concept_drift", "features": ["slot"]}]


def test_demo_config_enables_the_label_checks(small_world):
    checks = demo_config(small_world, small_world.root.parent)["models"][0]["checks"]
    for name in ("data_quality", "calibration", "performance", "concept_drift"):
        assert checks[name]["enabled"] is True
