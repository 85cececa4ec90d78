"""`driftline check skew` through typer's runner: the JSON contract, exit codes (0 ran,
1 --fail-on met, 2 bad input with one line naming the key and both types), the table
output, and prediction replay with --model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from monitor.cli import app

N = 3000


def _table(seed: int = 0, scale: float = 1.0, key_as_text: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(N)
    return pa.table({
        "id": pa.array([f"e{i}" for i in ids]) if key_as_text else pa.array(ids),
        "price": rng.lognormal(3.0, 0.5, N) * scale,
        "device": rng.choice(["mobile", "desktop"], N),
        "label": rng.integers(0, 2, N),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("skew_cli")
    paths = {name: root / f"{name}.parquet" for name in ("training", "clean", "cents", "text_key")}
    pq.write_table(_table(), paths["training"])
    pq.write_table(_table().drop_columns(["label"]), paths["clean"])
    pq.write_table(_table(scale=100.0).drop_columns(["label"]), paths["cents"])
    pq.write_table(_table(key_as_text=True), paths["text_key"])
    return paths


def _invoke(*args):
    return CliRunner().invoke(app, ["check", "skew", *map(str, args)])


def test_json_contract_and_exit_codes(files):
    result = _invoke("--training", files["training"], "--serving", files["cents"], "--key", "id",
                     "--serving-absent", "label", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["check"] == "train_serve_skew" and data["status"] == "alert"
    assert {"check", "status", "schema", "join", "features", "prediction"} <= set(data)
    assert {"matched", "serving_only", "training_only", "duplicate_keys"} <= set(data["join"])
    assert data["join"]["matched"] == N and data["prediction"] is None
    for feature in data["features"]:
        assert {"feature", "method", "distribution_score", "value_mismatch_rate", "status"} <= set(feature)
    by_name = {f["feature"]: f for f in data["features"]}
    assert set(by_name) == {"price", "device"}
    assert by_name["price"]["status"] == "alert" and by_name["price"]["value_mismatch_rate"] == 1.0
    assert by_name["price"]["method"] == "jensenshannon" and by_name["device"]["method"] == "linf"
    assert by_name["device"]["status"] == "ok" and by_name["device"]["value_mismatch_rate"] == 0.0
    assert all(issue["column"] != "label" for issue in data["schema"])
    failing = _invoke("--training", files["training"], "--serving", files["cents"], "--key", "id",
                      "--serving-absent", "label", "--fail-on", "alert")
    assert failing.exit_code == 1
    clean = _invoke("--training", files["training"], "--serving", files["clean"], "--key", "id",
                    "--serving-absent", "label", "--fail-on", "warn", "--format", "json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["status"] == "ok"


def test_bad_input_exits_2_with_one_line(files, tmp_path):
    mismatch = _invoke("--training", files["training"], "--serving", files["text_key"], "--key", "id")
    assert mismatch.exit_code == 2
    line = mismatch.stderr.strip()
    assert "\n" not in line and "key column 'id'" in line and "int64" in line and "string" in line
    missing = _invoke("--training", files["training"], "--serving", tmp_path / "absent.parquet", "--key", "id")
    assert missing.exit_code == 2 and "absent.parquet" in missing.stderr
    no_key = _invoke("--training", files["training"], "--serving", files["clean"], "--key", "user")
    assert no_key.exit_code == 2 and "key column 'user' is missing" in no_key.stderr
    no_segment = _invoke("--training", files["training"], "--serving", files["clean"], "--key", "id",
                         "--segments", "country")
    assert no_segment.exit_code == 2 and "segment column 'country' is missing" in no_segment.stderr


def test_table_output_names_the_feature(files):
    result = _invoke("--training", files["training"], "--serving", files["cents"], "--key", "id",
                     "--serving-absent", "label")
    assert result.exit_code == 0
    assert "train_serve_skew: alert" in result.stdout and "price" in result.stdout
    assert "join on 'id'" in result.stdout


def test_model_replay_on_the_demo_world(small_world, tmp_path):
    day = small_world.serving_day(0)
    serving = ds.dataset(small_world.serving_path, partitioning="hive").to_table(filter=ds.field("dt") == day)
    training = ds.dataset(small_world.training_examples_path, partitioning="hive").to_table(
        filter=ds.field("dt") == day)
    pq.write_table(serving, tmp_path / "serving.parquet")
    pq.write_table(training, tmp_path / "training.parquet")
    result = _invoke("--training", tmp_path / "training.parquet", "--serving", tmp_path / "serving.parquet",
                     "--key", "example_id", "--model", small_world.root, "--serving-absent", "click,conversion",
                     "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prediction"]["mismatch_rate"] == 0.0 and data["prediction"]["max_abs_diff"] == 0.0
    assert data["status"] == "ok" and data["join"]["matched"] == serving.num_rows
    wrong = _invoke("--training", tmp_path / "training.parquet", "--serving", tmp_path / "serving.parquet",
                    "--key", "example_id", "--model", f"lgbm-v0={small_world.model_path}",
                    "--serving-absent", "click,conversion", "--format", "json")
    # A version mapping that does not cover the logged version replays nothing for it: reported, not guessed.
    versions = json.loads(wrong.stdout)["prediction"]["by_version"]
    assert versions[0]["model_version"] == "lgbm-v1" and versions[0]["status"] == "insufficient_data"
