"""`driftline explain` through typer's runner: the JSON contract, the table, exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from tests.explain_fixtures import synthetic, train

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain_cli")
    model = train(synthetic(4000, seed=1), tmp / "model.txt", trees=30)
    data = tmp / "holdout.parquet"
    frame = synthetic(1500, seed=3)
    frame["colour"] = frame["colour"].astype(str)  # as logs carry it: plain strings
    frame.to_parquet(data)
    return tmp, model, data, frame


def _invoke(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


def test_shap_json_contract(files):
    tmp, model, data, _ = files
    result = _invoke("--model", model, "--data", data, "--sample", 500, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"method", "model", "rows", "base_value", "additivity_error", "features"} <= set(payload)
    assert payload["method"] == "shap" and payload["rows"] == 500
    assert payload["additivity_error"] < 1e-9 and isinstance(payload["base_value"], float)
    assert [f["feature"] for f in payload["features"]][0] == "strong"
    assert all({"feature", "importance", "std"} <= set(f) for f in payload["features"])


def test_permutation_json_with_a_group_and_a_report(files):
    tmp, model, data, _ = files
    report = tmp / "report.html"
    result = _invoke("--model", model, "--data", data, "--method", "permutation", "--label", "label",
                     "--repeats", 2, "--group", "pair=a,colour", "--format", "json", "--report", report)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    names = [f["feature"] for f in payload["features"]]
    assert payload["method"] == "permutation" and set(names) == {"strong", "weak", "noise", "pair"}
    assert payload["details"]["baseline"]["auc"] > 0.7
    assert report.read_text().count("data:image/png;base64,") >= 2


def test_table_output(files):
    _, model, data, _ = files
    result = _invoke("--model", model, "--data", data, "--sample", 200)
    assert result.exit_code == 0, result.output
    assert "strong" in result.stdout and "additivity error" in result.stdout


@pytest.mark.parametrize("case, message", [
    ("not_a_model", "not a LightGBM text model"),
    ("missing_feature", "lacks model feature column 'noise'"),
    ("label_not_binary", "label column 'label' is not binary"),
    ("no_label", "--label is required"),
    ("missing_label", "label column 'clicked' is missing"),
])
def test_bad_input_exits_2_with_one_line(files, case, message):
    tmp, model, data, frame = files
    args = ["--model", model, "--data", data]
    if case == "not_a_model":
        bogus = tmp / "bogus.txt"
        bogus.write_bytes(b"\x80\x04\x95 pickled bytes are never loaded")
        args = ["--model", bogus, "--data", data]
    elif case == "missing_feature":
        partial = tmp / "partial.parquet"
        frame.drop(columns="noise").to_parquet(partial)
        args = ["--model", model, "--data", partial]
    elif case == "label_not_binary":
        three = tmp / "three.parquet"
        frame.assign(label=frame["label"] + frame["a"].gt(0).astype(int)).to_parquet(three)
        args = ["--model", model, "--data", three, "--method", "permutation", "--label", "label"]
    elif case == "no_label":
        args += ["--method", "permutation"]
    elif case == "missing_label":
        args += ["--method", "permutation", "--label", "clicked"]
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
