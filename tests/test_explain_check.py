"""The configured attribution_drift check on the demo world: baseline day, clean day, concept-drift day."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.demo.run import demo_config, write_scored_reference
from core.errors import ConfigError
from monitor.runner import ModelRunner
from monitor.store import ResultsStore


@pytest.fixture(scope="module")
def runner(small_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain_check")
    write_scored_reference(small_world)
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"] = {"url": f"sqlite:///{tmp / 'store.db'}", "reports_dir": str(tmp / "reports")}
    raw["models"][0]["checks"]["attribution_drift"]["report_on"] = "always"  # the quiet baseline day's report too
    config = parse_config(raw, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    yield ModelRunner(config, config.models[0], store), store
    store.close()


def _run(runner, world, day):
    model_runner, _ = runner
    start = world.serving_start + timedelta(days=day)
    return model_runner.run(start, start + timedelta(days=1), checks=["attribution_drift"])[0]


def test_the_baseline_day_compares_equal(runner, small_world):
    result = _run(runner, small_world, 0)
    assert result.status == "ok"
    assert result.details["rankings"]["mean_abs_shap"]["ndcg"] == 1.0
    assert result.details["rankings"]["permutation_logloss"]["ndcg"] == 1.0
    assert result.details["additivity_error"] < 1e-9
    assert result.report_path and Path(result.report_path).read_text().count("data:image/png;base64,") >= 3


def test_a_clean_day_is_quiet_and_the_concept_drift_day_names_offer_and_os(runner, small_world):
    clean = _run(runner, small_world, 2)
    assert clean.status == "ok", [(f.feature, f.reasons) for f in clean.features if f.status != "ok"]
    drift = _run(runner, small_world, 4)
    by_name = {f.feature: f for f in drift.features}
    # The small world has ~130 clicks a day: the flip is a warning here and an alert at the demo's size.
    for name in ("os", "offer_id"):
        assert by_name[name].status in ("warn", "alert"), by_name[name]
        info = drift.details["features"][name]
        assert info["permutation_current"] < 0 < info["permutation_reference"]
    flagged = {f.feature for f in drift.features if f.status != "ok"}
    assert flagged <= {"os", "offer_id", "device"}
    # The fixed model's SHAP values did not move: P(x) is unchanged on this day.
    assert all(f.score < 0.1 for f in drift.features)


def test_results_are_stored_with_the_importance_rows_and_the_baseline_is_cached(runner, small_world):
    _, store = runner
    stored = store.get_result("offer-ctr", "attribution_drift", small_world.serving_start,
                              small_world.serving_start + timedelta(days=1))
    assert stored is not None
    methods = {r["method"] for r in stored.details["importance"]}
    assert methods == {"mean_abs_shap", "permutation_logloss"}
    from sqlalchemy import text

    with store.engine.connect() as connection:
        cached = connection.execute(text("select count(*) from driftline_profiles where role = 'attribution_ref'"))
        assert cached.scalar() == 1


def test_enabled_without_a_model_path_is_a_config_error(small_world):
    raw = demo_config(small_world, small_world.root.parent)
    raw["models"][0]["checks"]["attribution_drift"] = {"enabled": True}
    with pytest.raises(ConfigError, match="attribution_drift.*model_path is required"):
        parse_config(raw, "test", small_world.root.parent)


def test_a_model_path_that_is_not_a_model_is_an_error_result(runner, small_world, tmp_path):
    model_runner, store = runner
    raw = demo_config(small_world, small_world.root.parent)
    bogus = tmp_path / "model.txt"
    bogus.write_text("not a model\n")
    raw["models"][0]["checks"]["attribution_drift"]["model_path"] = str(bogus)
    raw["store"] = {"url": f"sqlite:///{tmp_path / 's.db'}", "reports_dir": str(tmp_path)}
    config = parse_config(raw, "test", small_world.root.parent)
    other = ResultsStore(config.store_url())
    try:
        start = small_world.serving_start
        result = ModelRunner(config, config.models[0], other).run(start, start + timedelta(days=1),
                                                                   checks=["attribution_drift"])[0]
    finally:
        other.close()
    assert result.status == "error" and "not a LightGBM text model" in result.details["error"]


def test_a_model_feature_missing_from_the_window_marks_that_feature_only(small_world, tmp_path):
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    write_scored_reference(small_world)
    day = small_world.serving_day(2)
    table = ds.dataset(str(small_world.serving_path), partitioning="hive").to_table(
        filter=ds.field("dt") == day).drop_columns(["partner", "dt", "hour"])
    serving = tmp_path / "serving" / f"dt={day}"
    serving.mkdir(parents=True)
    pq.write_table(table, serving / "part-0.parquet")
    raw = demo_config(small_world, small_world.root.parent)
    model = raw["models"][0]
    model["serving"] = {"path": str(tmp_path / "serving")}
    model["profile_granularity"] = None
    model["checks"]["attribution_drift"].pop("baseline_window")  # the training reference: SHAP only
    model["checks"]["attribution_drift"]["report"] = False
    raw["store"] = {"url": f"sqlite:///{tmp_path / 's.db'}", "reports_dir": str(tmp_path)}
    config = parse_config(raw, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    try:
        start = small_world.serving_start + timedelta(days=2)
        result = ModelRunner(config, config.models[0], store).run(start, start + timedelta(days=1),
                                                                   checks=["attribution_drift"])[0]
    finally:
        store.close()
    by_name = {f.feature: f for f in result.features}
    assert by_name, result.details
    assert by_name["partner"].status == "error" and "missing" in by_name["partner"].message
    assert by_name["slot"].status == "ok" and by_name["slot"].score is not None
    assert "permutation_logloss" not in result.details["rankings"]
    assert any("training reference" in note for note in result.details["notes"])
