"""`driftline init`'s example config covers every check and runs as it is on a world of logs on
disk once only its paths are edited; misconfigured paths and keys are named in the errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from core.errors import ConfigError, DriftlineError
from monitor.catalog import known_checks
from monitor.config import example_config_text, load_config
from monitor.runner import run_config


def _write(tmp_path, world, edit=None):
    """The example config with only its paths pointed at the world (data/... -> <world>/...)."""
    text = example_config_text().replace("data/", f"{world.root}/")
    if edit is not None:
        text = edit(text)
    path = tmp_path / "driftline.yaml"
    path.write_text(text)
    return path


# Need a ranker's columns (or, embedding_drift, a deep ranker's directory): shown, off.
RANKING = {"rollout", "exploration", "slot_calibration", "embedding_drift"}


@pytest.fixture()
def scored_world(small_world):
    from monitor.demo.run import write_scored_reference

    write_scored_reference(small_world)
    return small_world


def test_the_example_shows_every_check_enabled_and_scheduled():
    raw = yaml.safe_load(example_config_text())
    model = raw["models"][0]
    every = set(known_checks())
    assert set(model["checks"]) == every  # every check is shown, with its keys
    enabled = {name for name, params in model["checks"].items() if params.get("enabled", True)}
    assert enabled == every - RANKING
    assert {s["check"] for s in model["schedules"]} == enabled
    assert "prediction_reference" in model
    text = example_config_text()
    for key in ("prediction_reference", "train_serve_skew", "attribution_drift", "holdout_path", "baseline_window"):
        assert key in text


def test_the_example_runs_every_check_once_its_paths_are_set(scored_world, tmp_path):
    config = load_config(_write(tmp_path, scored_world))
    enabled = config.models[0].checks.enabled()
    assert set(enabled) == set(known_checks()) - RANKING
    day = scored_world.serving_start + timedelta(days=1)  # the planted device-mix shift
    results = run_config(config, None, day, day + timedelta(days=1))
    by_check = {r.check: r for r in results}
    assert set(by_check) == set(enabled)
    errors = {r.check: r.details.get("error") for r in results if r.status == "error"}
    assert errors == {}
    assert by_check["data_drift"].status == "alert" and "device" in by_check["data_drift"].alerting_features
    assert all(r.status != "pending" for r in results)  # 2024's labels have long matured


def test_a_missing_reference_names_the_key_and_fails_the_run(scored_world, tmp_path):
    path = _write(tmp_path, scored_world, lambda t: t.replace("reference/history.parquet", "reference/nope.parquet"))
    config = load_config(path)
    day = scored_world.serving_start
    with pytest.raises(ConfigError, match=r"models\.offer-ctr\.reference\.path: .*nope\.parquet"):
        run_config(config, None, day, day + timedelta(days=1), ["data_drift"])


def test_a_score_missing_from_the_reference_points_at_prediction_reference(scored_world, tmp_path):
    def drop(text: str) -> str:
        start = text.index("    prediction_reference:")
        end = text.index("    schema:")
        return text[:start] + text[end:]

    config = load_config(_write(tmp_path, scored_world, drop))
    day = scored_world.serving_start
    results = run_config(config, None, day, day + timedelta(days=1), ["prediction_drift", "calibration"])
    for result in results:
        message = result.details["error"]
        assert "'score'" in message and "models.offer-ctr.prediction_reference" in message and "set" in message


def test_the_cli_exits_2_on_a_missing_reference(scored_world, tmp_path):
    from typer.testing import CliRunner

    from monitor.cli import app

    path = _write(tmp_path, scored_world, lambda t: t.replace("reference/history.parquet", "reference/nope.parquet"))
    done = CliRunner().invoke(app, ["run", "--config", str(path), "--window", "2024-06-03/2024-06-04",
                                    "--check", "data_drift"])
    assert done.exit_code == 2
    assert "models.offer-ctr.reference.path" in done.output
    assert isinstance(ConfigError("x"), DriftlineError)
