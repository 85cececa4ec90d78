"""Deep rankers end to end: a DCN-V2 trained through the retrain trainer, explained with deep SHAP
at x0 by the scheduled attribution_drift check (its background drawn once and stored) and by
`driftline explain` (the JSON contract, the report, bad input)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from monitor.cli import app  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from monitor.runner import ModelRunner  # noqa: E402
from monitor.store import ResultsStore  # noqa: E402
from tests.explain_fixtures import deep_synthetic, one_torch_thread, synthetic, train, train_dcn  # noqa: E402,F401

DAY0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deep_explain")
    model = train_dcn(deep_synthetic(4000, seed=0), tmp / "dcn")
    deep_synthetic(2000, seed=1).to_parquet(tmp / "holdout.parquet")
    deep_synthetic(2000, seed=2).assign(ts=DAY0 - timedelta(days=3)).to_parquet(tmp / "reference.parquet")
    for day in range(2):
        start = DAY0 + timedelta(days=day)
        frame = deep_synthetic(1000, seed=10 + day)
        frame["ts"] = [start + timedelta(seconds=80 * i) for i in range(len(frame))]
        (tmp / "serving" / f"dt={start:%Y-%m-%d}").mkdir(parents=True)
        frame.to_parquet(tmp / "serving" / f"dt={start:%Y-%m-%d}" / "part-0.parquet")
    return tmp, model


def _config(tmp):
    features = [{"name": "strong", "kind": "numeric"}, {"name": "noise", "kind": "numeric"},
                {"name": "os", "kind": "categorical"}]
    raw = {"version": 1, "store": {"url": f"sqlite:///{tmp / 'store.db'}", "reports_dir": str(tmp / "reports")},
           "models": [{"name": "ranker", "reference": {"path": "reference.parquet"}, "serving": {"path": "serving"},
                       "schema": {"timestamp": "ts", "features": features, "labels": [{"name": "label"}]},
                       "checks": {"attribution_drift": {
                           "enabled": True, "model_path": "dcn", "holdout_path": "holdout.parquet",
                           "sample_size": 1000, "shap_rows": 400, "background_rows": 60, "n_repeats": 1,
                           "min_rows": 200, "report_on": "always"}}}]}
    return parse_config(raw, "test", tmp)


def _run(config, store, day: int):
    start = DAY0 + timedelta(days=day)
    return ModelRunner(config, config.models[0], store).run(start, start + timedelta(days=1),
                                                            checks=["attribution_drift"])[0]


def test_the_strong_feature_ranks_first_the_noise_is_near_zero_and_additivity_holds(world):
    from explain.deep import TOLERANCE
    from explain.oneoff import explain_file

    tmp, model = world
    result = explain_file(model, str(tmp / "holdout.parquet"), sample=600, background_rows=100)
    importance = result.importances()
    assert result.ranking()[0] == "strong" and result.method == "shap" and result.rows == 600
    assert importance["noise"] < 0.05 * importance["strong"]
    # Expected gradients over the whole background, each row's quadrature refined until its error
    # is within TOLERANCE of the logit's spread: the attributions add up to the logit.
    assert result.details["explainer"] == "gradient" and result.details["path_steps"] in (4, 8, 16)
    assert result.details["relative_additivity_error"] <= TOLERANCE and result.additivity_error < 0.1


def test_an_esmm_directory_is_explained_at_its_ctr_logit(world):
    from explain.deep import deep_shap
    from explain.models import DeepModel, load_model

    tmp, _ = world
    frame = deep_synthetic(2000, seed=7)
    frame["conversion"] = (frame["label"] * (frame["noise"] > 0)).astype(np.int8)
    model = load_model(train_dcn(frame, tmp / "esmm", "esmm", ("label", "conversion")))
    assert isinstance(model, DeepModel) and model.name == "esmm"
    attribution = deep_shap(model, frame.iloc[:50], frame.iloc[50:90], method="gradient")
    p = model.predict(frame.iloc[:50])  # pCTR: the first task
    np.testing.assert_allclose(attribution.raw, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)
    assert attribution.additivity_error <= 0.05 * np.std(attribution.raw) + 1e-9


def test_the_scheduled_check_draws_the_background_once_and_reuses_it(world, monkeypatch):
    import explain.background as backgrounds
    from monitor.exporter import DriftlineCollector
    from tests.test_exporter import scrape, value

    tmp, _ = world
    config = _config(tmp)
    draws, writes = [], []
    real_draw, real_save = backgrounds.draw, backgrounds.save
    monkeypatch.setattr(backgrounds, "draw", lambda *a: draws.append(1) or real_draw(*a))
    monkeypatch.setattr(backgrounds, "save", lambda *a: writes.append(1) or real_save(*a))
    store = ResultsStore(config.store_url())
    try:
        first, second = _run(config, store, 0), _run(config, store, 1)
    finally:
        store.close()
    restarted = ResultsStore(config.store_url())  # a service restart: a fresh store and runner
    try:
        third = _run(config, restarted, 1)
        samples = scrape(DriftlineCollector(restarted.engine))
    finally:
        restarted.close()
    assert len(draws) == len(writes) == 1
    used = [r.details["background"] for r in (first, second, third)]
    assert [u["loaded"] for u in used] == [False, True, True]
    assert len({u["digest"] for u in used}) == 1 and used[0]["rows"] == 60 and used[0]["source"] == "holdout_path"
    for result in (first, second, third):
        assert result.status != "error", result.details
        assert result.details["explainer"] == "gradient" and result.details["additivity_error"] < 0.1
        assert result.details["rankings"]["mean_abs_shap"]["current_top"][0] == "strong"
    assert {r["method"] for r in second.details["importance"]} == {"mean_abs_shap", "permutation_logloss"}
    strong = value(samples, "driftline_feature_importance", model="ranker", check="attribution_drift",
                   feature="strong", method="mean_abs_shap")
    assert strong == pytest.approx(third.details["features"]["strong"]["mean_abs_shap_current"])
    assert second.report_path, second.details.get("report_error")
    page = open(second.report_path).read()
    assert page.count("data:image/png;base64,") >= 3 and "additivity error" in page


def test_the_stored_background_is_a_seeded_uniform_sample_of_the_baseline(world):
    import pandas as pd

    import explain.background as backgrounds

    tmp, _ = world
    frame = deep_synthetic(500, seed=5)[["strong", "noise", "os"]]
    drawn = backgrounds.draw(frame, 40, seed=3)
    assert len(drawn) == 40 and drawn.equals(backgrounds.draw(frame, 40, seed=3))
    assert not drawn.equals(backgrounds.draw(frame, 40, seed=4))
    store = ResultsStore(f"sqlite:///{tmp / 'background.db'}")
    try:
        saved = backgrounds.save(store, "m", "key", drawn)
        loaded = backgrounds.load(store, "m", "key")
    finally:
        store.close()
    assert loaded.loaded and not saved.loaded and loaded.digest == saved.digest
    pd.testing.assert_frame_equal(loaded.frame, drawn)


def _invoke(*args):
    return CliRunner().invoke(app, ["explain", *map(str, args)])


def test_the_cli_explains_a_model_directory_with_the_json_contract_and_a_report(world):
    tmp, model = world
    report = tmp / "deep.html"
    result = _invoke("--model", model, "--data", tmp / "holdout.parquet", "--background", tmp / "reference.parquet",
                     "--background-rows", 80, "--sample", 500, "--format", "json", "--report", report)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"method", "model", "rows", "base_value", "additivity_error", "features"} <= set(payload)
    assert payload["method"] == "shap" and payload["model"] == "dcn" and payload["rows"] == 500
    assert np.isfinite(payload["base_value"]) and payload["additivity_error"] < 0.1
    assert [f["feature"] for f in payload["features"]][0] == "strong"
    assert all({"feature", "importance", "std"} <= set(f) for f in payload["features"])
    assert payload["details"]["background"] == {"rows": 80, "source": str(tmp / "reference.parquet"), "seed": 0}
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "additivity error" in page  # bars and beeswarm


@pytest.mark.parametrize("case, message", [
    ("not_a_model_dir", "a directory but not a model"),
    ("background_missing_column", "lacks model feature column 'noise'"),
    ("background_for_lightgbm", "--background applies only to deep models"),
])
def test_bad_input_exits_2_with_one_line_naming_it(world, case, message):
    tmp, model = world
    data = tmp / "holdout.parquet"
    if case == "not_a_model_dir":
        (tmp / "empty").mkdir(exist_ok=True)
        (tmp / "empty" / "notes.txt").write_text("no model here\n")
        args, named = ["--model", tmp / "empty", "--data", data], tmp / "empty"
    elif case == "background_missing_column":
        deep_synthetic(50, seed=6).drop(columns="noise").to_parquet(tmp / "partial.parquet")
        args, named = ["--model", model, "--data", data, "--background", tmp / "partial.parquet"], tmp / "partial"
    else:
        lightgbm = train(synthetic(1000, seed=1), tmp / "model.txt", trees=5)
        synthetic(300, seed=2).astype({"colour": str}).to_parquet(tmp / "lightgbm.parquet")
        args = ["--model", lightgbm, "--data", tmp / "lightgbm.parquet", "--background", data]
        named = "--background"
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(named) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
