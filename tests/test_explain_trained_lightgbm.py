"""A retrain/ LightGBM model directory is explained with exact TreeSHAP like a LightGBM text file,
and every failure of the scheduled attribution_drift check is a stored one-line `error` result."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import parse_config
from monitor.demo.run import demo_config, write_scored_reference
from monitor.runner import ModelRunner
from monitor.store import ResultsStore
from tests.explain_fixtures import synthetic


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LightGBM fitted through the retrain trainer (categorical `colour` as vocabulary codes)."""
    from retrain.base import Dataset, FeatureSet, get_trainer

    tmp = tmp_path_factory.mktemp("trained_lightgbm")
    fitter = get_trainer("lightgbm")
    params = fitter.validate_params({"num_boost_round": 40, "min_data_in_leaf": 20, "min_data_per_group": 10})
    frame = synthetic(3000, seed=0).astype({"colour": str})
    data = Dataset(frame, FeatureSet(("strong", "weak", "noise", "a"), ("colour",)), ("label",))
    fitter.fit(data.take(range(2400)), data.take(range(2400, 3000)), params).save(tmp / "offer-ctr" / "2")
    synthetic(800, seed=1).astype({"colour": str}).to_parquet(tmp / "holdout.parquet")
    return tmp, tmp / "offer-ctr" / "2"


def test_a_trained_lightgbm_directory_is_a_tree_model_encoded_as_the_trainer_encodes(trained):
    import pandas as pd

    from explain.models import TreeModel, load_model
    from explain.tree import shap_values
    from retrain.base import load_model as load_trained

    tmp, directory = trained
    model = load_model(directory)
    assert isinstance(model, TreeModel) and model.name == "offer-ctr/2"
    assert model.features == ("strong", "weak", "noise", "a", "colour") and model.categorical == ("colour",)
    frame = pd.read_parquet(tmp / "holdout.parquet")
    frame.loc[:5, "colour"] = "purple"  # out of vocabulary: NaN for the trainer, so here too
    np.testing.assert_array_equal(model.predict(frame), load_trained(directory).predict(frame))
    values = shap_values(model, frame)
    assert values.additivity_error < 1e-9


def test_the_cli_explains_the_directory_with_shap_and_the_json_contract(trained):
    from explain.models import load_model
    from explain.tree import shap_values

    tmp, directory = trained
    result = CliRunner().invoke(app, ["explain", "--model", f"{directory}/", "--data", str(tmp / "holdout.parquet"),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"method", "model", "rows", "base_value", "additivity_error", "features"} <= set(payload)
    assert payload["method"] == "shap" and payload["model"] == "offer-ctr/2" and payload["rows"] == 800
    assert payload["additivity_error"] < 1e-9
    features = payload["features"]
    assert features[0]["feature"] == "strong"
    assert all({"feature", "importance", "std"} <= set(f) and {"gain", "split"} <= set(f) for f in features)
    # The reported base value and the values add up to the booster's raw score, row by row.
    import pandas as pd

    frame = pd.read_parquet(tmp / "holdout.parquet")
    model = load_model(directory)
    values = shap_values(model, frame)
    assert payload["base_value"] == pytest.approx(values.base_value, abs=1e-12)
    raw = model.booster.predict(model.encode(frame), raw_score=True)
    np.testing.assert_allclose(values.values.sum(axis=1) + payload["base_value"], raw, rtol=0, atol=1e-9)


# -- the scheduled check never raises ----------------------------------------------------------

def _runner(world, tmp, model_path):
    write_scored_reference(world)
    raw = demo_config(world, world.root.parent)
    raw["store"] = {"url": f"sqlite:///{tmp / 'store.db'}", "reports_dir": str(tmp / "reports")}
    raw["models"][0]["checks"]["attribution_drift"]["model_path"] = str(model_path)
    raw["models"][0]["checks"]["data_drift"]["report"] = False
    config = parse_config(raw, "test", world.root.parent)
    return ModelRunner(config, config.models[0], ResultsStore(config.store_url()))


def _run_both(world, tmp, model_path):
    runner = _runner(world, tmp, model_path)
    start = world.serving_start + timedelta(days=1)
    try:
        results = runner.run(start, start + timedelta(days=1), checks=["attribution_drift", "data_drift"])
        stored = runner.store.get_result("offer-ctr", "attribution_drift", start, start + timedelta(days=1))
    finally:
        runner.store.close()
    explain, drift = results
    assert drift.check == "data_drift" and drift.status != "error", drift.details  # the run went on
    assert explain.status == "error" and stored is not None and stored.status == "error"
    message = stored.details["error"]
    assert len(message.splitlines()) == 1 and str(model_path) in message
    return message


def test_a_directory_that_is_not_a_model_is_an_error_result(small_world, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "notes.txt").write_text("no model here\n")
    assert "a directory but not a model" in _run_both(small_world, tmp_path, tmp_path / "not-a-model")


@pytest.mark.parametrize("where", ["middle", "last_tree"])
def test_a_truncated_lightgbm_file_is_an_error_result_not_a_crash(small_world, tmp_path, where):
    # LightGBM's own parser segfaults or aborts on these: the file is checked before it parses it.
    text = small_world.model_path.read_bytes()
    cut = len(text) // 2 if where == "middle" else text.index(b"end of trees") - 40
    (tmp_path / "model.txt").write_bytes(text[:cut])
    assert "damaged LightGBM text model" in _run_both(small_world, tmp_path, tmp_path / "model.txt")


def test_a_garbled_tree_in_a_trained_directory_is_an_error_result(small_world, tmp_path, trained):
    import shutil

    _, directory = trained
    copy = tmp_path / "garbled"
    shutil.copytree(directory, copy)
    (copy / "model.txt").chmod(0o644)
    text = (copy / "model.txt").read_text()
    at = text.index("left_child=") + len("left_child=")  # same length: tree_sizes still match
    (copy / "model.txt").write_text(text[:at] + "x" + text[at + 1:])
    assert "left_child holds a value that is not a number" in _run_both(small_world, tmp_path, copy)


def test_an_unexpected_exception_is_an_error_result_naming_the_model(small_world, tmp_path, monkeypatch):
    import explain.check

    def explode(*args, **kwargs):
        raise RuntimeError("numba kernel failed\nsecond line of a long traceback-ish message")

    monkeypatch.setattr(explain.check, "attribute", explode)
    message = _run_both(small_world, tmp_path, small_world.model_path)
    assert message == f"model {small_world.model_path}: RuntimeError: numba kernel failed"
