"""`driftline retrain` end to end on a small demo world: a retrained candidate is gated,
registered and promoted; a damaged one (shuffled labels) is registered and rejected with
its reasons; recalibration; the CLI (`retrain`, `models list | show | promote | rollback`);
triggers; and bad input (unknown trainer, bad params, empty window, single-class labels)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import parse_config
from core.errors import ConfigError
from retrain.base import Dataset, FeatureSet, TrainingError, load_model
from monitor.demo.retrain import BAD_DATA_KINDS, shuffled_labels
from retrain.infra_validate import infra_validate
from retrain.lightgbm_trainer import LightGBMModel
from retrain.pipeline import import_model, registry_for, run_retrain
from retrain.triggers import decide, schedule_due, sustained_alert
from trainer_plugins import plugins  # noqa: F401  (fixture)

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)  # long after the world: every label has arrived


def _raw_config(world, workdir: Path, **retrain) -> dict:
    features = [{"name": n, "kind": "numeric"} for n in world.numeric_features]
    features += [{"name": n, "kind": "categorical"} for n in world.categorical_features]
    incidents = [datetime.fromisoformat(i["day"]) for i in world.incidents() if i["kind"] in BAD_DATA_KINDS]
    policy = {
        "trainer": "lightgbm", "registry": "registry", "sources": ["reference", "serving"],
        "training_window": "21d", "holdout": "1d", "params": {"num_threads": 1},
        "exclude": [f"{d:%Y-%m-%d}/{d + timedelta(days=1):%Y-%m-%d}" for d in incidents],
        "infra_sample_rows": 300,
        # ~4000 holdout rows (~80 clicks) here: wide tolerances, the gates' logic is tested elsewhere.
        "gates": {"max_auc_drop": 0.05, "max_log_loss_increase": 0.05, "max_calibration_error": 0.3,
                  "protected_segments": ["slot=1"], "segment_max_auc_drop": 0.1,
                  "segment_max_log_loss_increase": 0.1},
    }
    policy.update(retrain)
    return {"version": 1, "store": {"url": "sqlite:///driftline.db"}, "models": [{
        "name": "offer-ctr",
        "reference": {"path": str(world.reference_path.relative_to(workdir))},
        "serving": {"path": str(world.serving_path.relative_to(workdir))},
        "schema": {"timestamp": "ts", "features": features,
                   "labels": [{"name": "click", "delay": "6h"}, {"name": "conversion", "delay": "1d"}],
                   "segments": ["os", "slot"]},
        "retrain": policy}]}


@pytest.fixture(scope="module")
def setup(small_world, tmp_path_factory):
    """A workdir with a config and a registry whose v1 (in production) is the world's model."""
    workdir = small_world.root.parent
    raw = _raw_config(small_world, workdir, registry=str(tmp_path_factory.mktemp("registry")))
    (workdir / "retrain-test.yaml").write_text(yaml.safe_dump(raw))
    config = parse_config(raw, "retrain-test.yaml", workdir)
    registry = registry_for(config, config.models[0])
    manifest = small_world.manifest()
    world_model = LightGBMModel.from_file(
        small_world.model_path,
        FeatureSet(tuple(manifest["numeric_features"]), tuple(manifest["categorical_features"])),
        manifest["vocabulary"], ("click",))
    registry.promote("offer-ctr", import_model(registry, "offer-ctr", world_model))
    end = small_world.serving_start + timedelta(days=small_world.serving_days)
    return SimpleNamespace(config=config, registry=registry, workdir=workdir, world=small_world,
                           window=(end - timedelta(days=21), end), config_path=workdir / "retrain-test.yaml")


@pytest.fixture(scope="module")
def retrained(setup):
    good = run_retrain(setup.config, window=setup.window, now=NOW, trigger="test")
    bad = run_retrain(setup.config, window=setup.window, now=NOW, trigger="test", prepare=shuffled_labels)
    return good, bad


def test_a_retrained_candidate_passes_and_is_promoted(setup, retrained):
    good, _ = retrained
    assert good.passed and good.promoted, good.reasons
    assert (good.version, good.production_before) == (2, 1)
    meta = setup.registry.metadata("offer-ctr", good.version)
    assert meta["trainer"] == "lightgbm" and meta["params"]["num_threads"] == 1 and meta["parent_version"] == 1
    assert meta["data_window"]["excluded"] and meta["data_window"]["holdout_rows"] > 1000
    assert meta["metrics"]["candidate"]["auc"] > 0.6 and meta["metrics"]["production"]["auc"] > 0.6
    assert meta["code_version"].startswith("driftline") and meta["trigger"] == "test"
    assert meta["infra"]["passed"] and meta["infra"]["max_abs_diff"] == 0.0
    training = meta["training"]  # what LightGBM built: trees up to the best validation round
    assert training["trees"] == training["best_iteration"] >= 1 and training["rounds_run"] >= training["trees"]
    version_dir = setup.registry.path("offer-ctr", good.version)
    report = json.loads((version_dir / "evaluation.json").read_text())
    assert report["candidate"]["segments"]["os"] and "slot=1" in {c["scope"] for c in report["gates"]["checks"]}
    assert "<svg" in (version_dir / "evaluation.html").read_text()
    # The holdout is the last day (the repriced one: an input shift, valid rows), out of the training
    # rows; the excluded days of bad data are nowhere.
    assert good.window["holdout_start"] >= "2024-06-09"


def test_a_damaged_candidate_is_registered_and_rejected_with_reasons(setup, retrained):
    _, bad = retrained
    assert not bad.passed and not bad.promoted and bad.version == 3
    assert any(r.startswith("auc (overall)") for r in bad.reasons)
    assert setup.registry.production("offer-ctr") == 2
    assert setup.registry.metadata("offer-ctr", 3)["gates"]["passed"] is False


def test_recalibrate_builds_on_production(setup, retrained):
    result = run_retrain(setup.config, trainer="recalibrate", params={"method": "platt"}, window=setup.window,
                         now=NOW, promote=False)
    assert not result.promoted and result.production_after == 2
    model = load_model(setup.registry.path("offer-ctr", result.version))
    assert model.trainer == "recalibrate" and model.base.trainer == "lightgbm"
    assert result.metrics["calibration_ratio"] == pytest.approx(1.0, abs=0.3)


def test_cli_models_list_show_promote_rollback(setup, retrained):
    runner = CliRunner()
    cfg = ["--config", str(setup.config_path)]
    listed = runner.invoke(app, ["models", "list", *cfg, "--format", "json"])
    assert listed.exit_code == 0, listed.stderr
    rows = {r["version"]: r for r in json.loads(listed.stdout)}
    assert rows[1]["trigger"] == "import" and rows[2]["production"] and rows[3]["gates"] is False
    shown = runner.invoke(app, ["models", "show", "offer-ctr", "3", *cfg])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["gates"]["passed"] is False
    refused = runner.invoke(app, ["models", "promote", "offer-ctr", "3", *cfg])
    assert refused.exit_code == 2 and "did not pass its gates" in refused.stderr
    rolled = runner.invoke(app, ["models", "rollback", "offer-ctr", *cfg])
    assert rolled.exit_code == 0 and "v1" in rolled.stdout and setup.registry.production("offer-ctr") == 1
    again = runner.invoke(app, ["models", "promote", "offer-ctr", "2", "--registry", str(setup.registry.root)])
    assert again.exit_code == 0 and setup.registry.production("offer-ctr") == 2
    table = runner.invoke(app, ["models", "list", *cfg])
    assert table.exit_code == 0 and "production" in table.stdout and "rejected" in table.stdout


def _bad(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    # Progress lines may precede it on stderr; the error itself is one line, and the last.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, result.stderr
    return lines[-1]


def test_cli_retrain_bad_input(setup):
    base = ["retrain", "--config", str(setup.config_path)]
    window = "--window", "2024-05-13/2024-06-10"
    assert "unknown trainer 'xgboost' (known: dcn_v2, esmm, lightgbm, mmoe, recalibrate" in _bad(
        [*base, "--trainer", "xgboost", *window])
    assert "models.offer-ctr.retrain: params.num_leavs: Extra inputs are not permitted" in _bad(
        [*base, "--param", "num_leavs=31", *window])
    assert "no labelled rows in the window 2020-01-01" in _bad([*base, "--window", "2020-01-01/2020-01-08"])
    assert "esmm needs two labels" in _bad([*base, "--trainer", "esmm", *window])
    assert "window" in _bad([*base, "--window", "yesterday"])


def test_cli_retrain_json_without_promotion(setup, retrained):
    before = setup.registry.production("offer-ctr")
    result = CliRunner().invoke(app, ["retrain", "--config", str(setup.config_path), "--no-promote", "--format",
                                      "json", "--window", "2024-05-19/2024-06-10",
                                      "--param", "num_threads=1", "--param", "num_boost_round=60"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["promoted"] is False and out["production_after"] == before
    assert setup.registry.metadata("offer-ctr", out["version"])["params"]["num_boost_round"] == 60


def test_single_class_labels_and_bad_exclusions_are_refused(setup):
    def all_zero(data: Dataset) -> Dataset:
        return Dataset(data.frame.assign(click=0), data.features, data.labels)

    with pytest.raises(TrainingError, match="label column 'click' has a single class"):
        run_retrain(setup.config, window=setup.window, now=NOW, prepare=all_zero)
    raw = _raw_config(setup.world, setup.workdir, exclude=["2024-06-04"])
    with pytest.raises(ConfigError, match=r"models.offer-ctr.retrain.exclude.0: window '2024-06-04'"):
        run_retrain(parse_config(raw, "x", setup.workdir), window=setup.window, now=NOW)


def test_labels_that_cannot_have_arrived_are_left_out(setup):
    end = setup.window[1]
    with pytest.raises(TrainingError, match="no labels can have arrived"):
        run_retrain(setup.config, window=(end - timedelta(hours=3), end), now=end)


def test_infra_validation_catches_a_broken_artifact(setup, tmp_path):
    import shutil

    import pandas as pd

    shutil.copytree(setup.registry.path("offer-ctr", 1), tmp_path / "broken")
    (tmp_path / "broken" / "model.txt").unlink()  # the booster file is missing from the artifact
    result = infra_validate(tmp_path / "broken", pd.DataFrame({"x": [1.0]}))
    assert not result.passed and result.message.startswith("the artifact failed in a fresh process")


# -- triggers ---------------------------------------------------------------------------------

def test_schedule_trigger():
    last = datetime(2024, 6, 3, 3, 0, tzinfo=timezone.utc)
    assert schedule_due("0 3 * * *", None, last)
    assert not schedule_due("0 3 * * *", last, last + timedelta(hours=23, minutes=59))
    assert schedule_due("0 3 * * *", last, last + timedelta(days=1))


def _results(*statuses):
    return [SimpleNamespace(status=s, window_end=f"2024-06-0{i + 1}") for i, s in enumerate(statuses)]


def test_sustained_alert_policy_with_cooldown(setup):
    assert sustained_alert({"data_drift": _results("ok", "alert", "alert", "alert")}, 3).startswith(
        "data_drift alerted on 3 consecutive windows")
    assert sustained_alert({"data_drift": _results("alert", "ok", "alert", "alert")}, 3) is None
    assert sustained_alert({"calibration": _results("alert", "alert")}, 3) is None

    class Store:
        def results(self, model, check):
            return _results("alert", "alert", "alert") if check == "calibration" else []

    raw = _raw_config(setup.world, setup.workdir, on_sustained_alert=True, cooldown="2d", sustained_windows=3,
                      registry=str(setup.registry.root))
    model = parse_config(raw, "x", setup.workdir).models[0]
    last = datetime.fromisoformat(setup.registry.metadata("offer-ctr", max(setup.registry.versions("offer-ctr")))
                                  ["created_at"])
    soon = decide(model, setup.registry, Store(), now=last + timedelta(hours=1))
    assert not soon.due and "cooldown" in soon.reason
    later = decide(model, setup.registry, Store(), now=last + timedelta(days=3))
    assert later.due and later.trigger == "alert" and "calibration alerted" in later.reason
    off = parse_config(_raw_config(setup.world, setup.workdir), "x", setup.workdir).models[0]
    assert not decide(off, setup.registry, Store(), now=last + timedelta(days=3)).due


def test_schedule_must_be_a_valid_cron(setup):
    with pytest.raises(ConfigError, match="retrain.schedule"):
        parse_config(_raw_config(setup.world, setup.workdir, schedule="0 25 * * *"), "x", setup.workdir)


def test_scores_are_probabilities(setup, retrained):
    model = load_model(setup.registry.path("offer-ctr", retrained[0].version))
    import pyarrow.parquet as pq

    frame = pq.read_table(setup.world.reference_path).to_pandas().head(2000)
    scores = model.predict(frame)
    assert np.all((scores > 0) & (scores < 1))


def test_the_service_retrains_when_the_schedule_is_due_and_backs_off_after_a_failure(setup, tmp_path, monkeypatch):
    from monitor.store import ResultsStore
    from monitor.retrain_watch import RetrainWatcher, watched_models

    raw = _raw_config(setup.world, setup.workdir, schedule="0 3 * * *", registry=str(tmp_path / "registry"))
    raw["store"]["url"] = f"sqlite:///{tmp_path / 'store.db'}"
    config = parse_config(raw, "serve-retrain.yaml", setup.workdir)
    assert watched_models(config) == ["offer-ctr"]
    store = ResultsStore(config.store_url())
    try:
        watcher = RetrainWatcher(config, store)
        now = setup.window[1] + timedelta(days=1)  # the longest label delay after the world: all arrived
        first = watcher.check("offer-ctr", now=now)
        assert first is not None and first.version == 1
        meta = registry_for(config, config.models[0]).metadata("offer-ctr", 1)
        assert meta["trigger"].startswith("schedule")
        # The registry stamps versions with the wall clock; a minute later the next 03:00 has not come.
        last = datetime.fromisoformat(meta["created_at"])
        assert watcher.check("offer-ctr", now=last + timedelta(minutes=1)) is None or last.strftime("%H:%M") == "02:59"

        calls = []

        def broken(*args, **kwargs):
            calls.append(kwargs.get("trigger"))
            raise RuntimeError("the serving logs are unreachable")

        monkeypatch.setattr("retrain.pipeline.run_retrain", broken)
        later = last + timedelta(days=1, hours=1)  # a 03:00 has passed: due again
        assert watcher.check("offer-ctr", now=later) is None and len(calls) == 1
        assert watcher.check("offer-ctr", now=later + timedelta(minutes=15)) is None and len(calls) == 1  # cooldown
        assert watcher.check("offer-ctr", now=later + timedelta(days=1, minutes=1)) is None and len(calls) == 2
    finally:
        store.close()


def test_serve_schedules_the_retrain_check_for_models_with_a_policy(tmp_path):
    from monitor.service import Service
    from monitor.store import ResultsStore
    from service_helpers import free_port, model_dict, tiny_world

    tiny_world(tmp_path)
    model = model_dict(base=tmp_path)
    model["checks"] = {"data_drift": {"enabled": False}, "prediction_drift": {"enabled": False}}
    model["retrain"] = {"schedule": "0 3 * * *", "registry": str(tmp_path / "registry")}
    quiet = dict(model_dict(name="quiet", base=tmp_path), checks=model["checks"])
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ResultsStore(url).close()
    config = parse_config({"version": 1, "store": {"url": url}, "models": [model, quiet]}, "test", tmp_path)
    service = Service(config, port=free_port())
    service.start()
    try:
        jobs = {job.id for job in service.scheduler.get_jobs(jobstore="memory")}
        assert "retrain:m" in jobs and "retrain:quiet" not in jobs
        assert service.health()["status"] == "ok"  # a retrain that cannot train (no labels) does not stop it
    finally:
        service.stop()


# -- trainers named on the command line: their own params, plugins isolated ------------------

def test_trainer_params_of_another_trainer_start_from_its_defaults():
    from retrain.pipeline import trainer_params

    configured = {"num_threads": 1, "num_boost_round": 200}
    assert trainer_params("lightgbm", configured, "lightgbm", None) == configured
    assert trainer_params("lightgbm", configured, "lightgbm", {"num_boost_round": 5}) == {
        "num_threads": 1, "num_boost_round": 5}
    assert trainer_params("lightgbm", configured, "dcn_v2", {"epochs": 1}) == {"epochs": 1}
    assert trainer_params("lightgbm", configured, "recalibrate", None) == {}


def test_cli_another_trainer_on_a_lightgbm_config_trains(setup, tmp_path):
    # retrain.params holds LightGBM-only keys: dcn_v2 must not be handed them.
    raw = _raw_config(setup.world, setup.workdir, registry=str(tmp_path / "registry"),
                      params={"num_threads": 1, "num_boost_round": 50, "min_data_in_leaf": 100})
    path = setup.workdir / "retrain-lgb-params.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, [
        "retrain", "--config", str(path), "--trainer", "dcn_v2", "--no-promote", "--format", "json",
        "--window", "2024-05-19/2024-06-10", "--param", "epochs=1", "--param", "embedding_dim=4",
        "--param", "deep_layers=[16]", "--param", "cross_layers=1"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    meta = ModelRegistryFor(tmp_path).metadata("offer-ctr", out["version"])
    assert meta["trainer"] == "dcn_v2" and meta["params"]["epochs"] == 1 and "num_boost_round" not in meta["params"]
    # Small window, batch from the data: many steps per epoch, not one.
    assert meta["training"]["batch_size"] * 16 <= meta["data_window"]["train_rows"]


def ModelRegistryFor(tmp_path):  # noqa: N802
    from retrain.registry import ModelRegistry

    return ModelRegistry(tmp_path / "registry")


def test_cli_broken_plugins_are_one_line_errors_and_leave_lightgbm_working(setup, plugins, tmp_path):
    base = ["retrain", "--config", str(setup.config_path), "--window", "2024-05-19/2024-06-10", "--no-promote",
            "--registry", str(tmp_path / "registry")]
    assert "trainer plugin 'broken' (dl_test_broken:Trainer" in _bad([*base, "--trainer", "broken"])
    assert "does not implement load" in _bad([*base, "--trainer", "halfdone"])
    assert "trainer 'explodes' failed in fit: ZeroDivisionError" in _bad([*base, "--trainer", "explodes"])
    result = CliRunner().invoke(app, [*base, "--trainer", "lightgbm", "--param", "num_boost_round=20",
                                      "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["trainer"] == "lightgbm"


# -- every head of a multi-task model is gated ----------------------------------------------

def shuffled_conversions(data: Dataset) -> Dataset:
    """Conversions permuted over all rows: the CVR head learns nothing, CTR is untouched."""
    frame = data.frame.copy()
    frame["conversion"] = np.random.default_rng(0).permutation(frame["conversion"].to_numpy())
    return Dataset(frame, data.features, data.labels)


ESMM = {"epochs": 2, "embedding_dim": 4, "deep_layers": [32], "cross_layers": 0, "min_category_count": 1}


def test_an_esmm_with_shuffled_conversions_is_rejected_naming_the_head(setup, tmp_path):
    raw = _raw_config(setup.world, setup.workdir, registry=str(tmp_path / "registry"), trainer="esmm",
                      labels=["click", "conversion"], params=ESMM)
    config = parse_config(raw, "esmm.yaml", setup.workdir)
    good = run_retrain(config, window=setup.window, now=NOW, trigger="test")
    registry = registry_for(config, config.models[0])
    if not good.promoted:  # it has nothing to beat; the floors alone may be noisy on ~25 conversions
        registry.promote("offer-ctr", good.version, force=True)
    assert set(good.head_metrics) == {"click", "cvr", "ctcvr"}
    bad = run_retrain(config, window=setup.window, now=NOW, trigger="test", prepare=shuffled_conversions)
    assert not bad.passed and not bad.promoted and registry.production("offer-ctr") == good.version
    failing = {r.split(":", 1)[0] for r in bad.reasons}
    assert "ctcvr" in failing and failing <= {"click", "cvr", "ctcvr"}, bad.reasons  # every reason names its head
    assert any(r.startswith("ctcvr: calibration_ratio (overall)") for r in bad.reasons), bad.reasons
    # Both the version's metadata and its evaluation report hold every head's metrics.
    meta = registry.metadata("offer-ctr", bad.version)
    ctcvr = meta["metrics"]["heads"]["ctcvr"]
    assert ctcvr["candidate"]["calibration_ratio"] < 0.5 and ctcvr["production"]["positives"] > 0
    assert meta["metrics"]["heads"]["cvr"]["candidate"]["rows"] == meta["metrics"]["heads"]["click"]["candidate"][
        "positives"]  # CVR is scored on the clicked rows only
    report = json.loads((registry.path("offer-ctr", bad.version) / "evaluation.json").read_text())
    assert set(report["heads"]) == {"click", "cvr", "ctcvr"} and report["heads"]["ctcvr"]["production"]
    assert "ctcvr" in (registry.path("offer-ctr", bad.version) / "evaluation.html").read_text()
    # And the CLI's summary shows every head beside production's.
    from rich.console import Console

    from monitor.commands.retrain import _print_result

    console = Console(record=True, width=200)
    _print_result(console, bad)
    printed = console.export_text()
    assert "every head" in printed and all(head in printed for head in ("click", "cvr", "ctcvr"))
