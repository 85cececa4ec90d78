"""The configured `train_serve_skew` check on the demo world: the skew day alerts and names
cart_value and user_tenure_days, clean days stay quiet, results are stored like any
check's, and the config refuses an enabled check without training examples."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.config import parse_config
from monitor.demo.run import demo_config, summarise, write_scored_reference
from core.errors import ConfigError
from monitor.runner import ModelRunner
from monitor.store import ResultsStore

CHECK = "train_serve_skew"


@pytest.fixture(scope="module")
def by_day(small_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skew_runs")
    write_scored_reference(small_world)
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"]["url"] = f"sqlite:///{tmp / 'store.db'}"
    raw["store"]["reports_dir"] = str(tmp / "reports")
    config = parse_config(raw, "test", small_world.root.parent)
    assert CHECK in config.models[0].checks.enabled()
    store = ResultsStore(config.store_url())
    runner = ModelRunner(config, config.models[0], store)
    results = {}
    for day in range(small_world.serving_days):
        start = small_world.serving_start + timedelta(days=day)
        results[small_world.serving_day(day)] = runner.run(start, start + timedelta(days=1), checks=[CHECK])
    stored = store.get_result("offer-ctr", CHECK, small_world.serving_start + timedelta(days=3),
                              small_world.serving_start + timedelta(days=4))
    store.close()
    return results, stored


def test_the_skew_day_alerts_and_names_the_features(small_world, by_day):
    results, stored = by_day
    skew_day = [i for i in small_world.incidents() if i["kind"] == "skew"][0]
    result = results[skew_day["day"]][0]
    assert result.check == CHECK and result.status == "alert"
    assert set(result.alerting_features) == {"cart_value", "user_tenure_days"}
    values = result.details["value_skew"]
    assert values["cart_value"]["value_mismatch_rate"] == 1.0
    assert values["user_tenure_days"]["null_mismatch_rate"] > 0.9
    assert result.details["join"]["matched"] == result.current_rows == 4000
    # The logged scores were computed on the served values: the model artifact is not the problem.
    assert result.details["prediction"]["mismatch_rate"] == 0.0
    assert any(i["column"] == "user_tenure_days" and i["issue"] == "all_null" for i in result.details["schema"])
    assert stored is not None and stored.to_dict() == result.to_dict()


def test_clean_days_stay_quiet_and_the_summary_credits_the_check(small_world, by_day):
    results, _ = by_day
    skew_day = [i for i in small_world.incidents() if i["kind"] == "skew"][0]["day"]
    for day, day_results in results.items():
        if day != skew_day:
            assert day_results[0].status == "ok", (day, day_results[0].details)
    summary = summarise(small_world, results)
    incident = {i["name"]: i for i in summary["incidents"]}["train_serve_skew"]
    assert incident["detected_by"] == [CHECK]
    assert summary["false_alarms"] == []


def test_config_requires_training_examples(small_world):
    raw = demo_config(small_world, small_world.root.parent)
    del raw["models"][0]["checks"][CHECK]["training"]
    with pytest.raises(ConfigError, match="checks.train_serve_skew.*training is required"):
        parse_config(raw, "test", small_world.root.parent)
    raw["models"][0]["checks"][CHECK] = {"enabled": False, "memory_limit": "lots"}
    with pytest.raises(ConfigError, match="train_serve_skew.memory_limit"):
        parse_config(raw, "test", small_world.root.parent)
