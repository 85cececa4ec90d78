"""`driftline check calibration` and `driftline check quality` through typer's runner: the JSON
contract, exit codes, and one clear stderr line (exit 2) for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from labelsim import simulate, table
from typer.testing import CliRunner

from monitor.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.stderr + result.stdout and result.stdout == ""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("labels")
    paths = {}

    def write(name: str, data: pa.Table) -> None:
        paths[name] = root / f"{name}.parquet"
        pq.write_table(data, paths[name])

    base = table(simulate(60_000, seed=61, ctr=0.03))
    write("ref", base)
    write("cur", table(simulate(60_000, seed=62, ctr=0.03)))
    write("decayed", table(simulate(60_000, seed=63, ctr=0.03, factor=0.7)))
    click = base.column("click").to_numpy().astype(np.int64)
    write("bad_labels", base.set_column(base.schema.get_field_index("click"), "click", pa.array(click * 2)))
    score = base.column("score").to_numpy()
    write("bad_scores", base.set_column(base.schema.get_field_index("score"), "score", pa.array(score + 0.5)))
    write("all_positive", base.slice(0, 2000).set_column(base.schema.get_field_index("click"), "click",
                                                          pa.array(np.ones(2000, np.int8))))
    return paths


def calibration(files, data="cur", *extra):
    return invoke("check", "calibration", "--data", files[data], "--prediction", "score", "--label", "click", *extra)


def test_calibration_json_contract(files):
    result = calibration(files, "cur", "--segment", "os", "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["check"] == "calibration" and payload["status"] in ("ok", "warn")
    for key in ("calibration_ratio", "ci_low", "ci_high", "ece", "brier", "count"):
        assert isinstance(payload["overall"][key], (int, float)), key
    assert payload["overall"]["count"] == 60_000
    assert payload["overall"]["ci_low"] < payload["overall"]["calibration_ratio"] < payload["overall"]["ci_high"]
    assert {s["value"] for s in payload["segments"]} == {"android", "ios", "windows"}
    assert all(s["segment"] == "os" and "status" in s for s in payload["segments"])


def test_calibration_decay_against_a_reference_and_fail_on(files):
    result = calibration(files, "decayed", "--reference", files["ref"], "--format", "json", "--fail-on", "alert")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["status"] == "alert" and payload["baseline"] == "reference"
    assert payload["overall"]["relative_ci_low"] > 1.05
    table_output = calibration(files, "decayed", "--reference", files["ref"], "--segment", "os")
    assert table_output.exit_code == 0 and "overall" in table_output.stdout and "os=ios" in table_output.stdout


def test_all_positive_window_runs_and_gives_valid_json(files):
    result = calibration(files, "all_positive", "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["overall"]["positives"] == 2000 and payload["status"] == "alert"


def test_missing_label_column_exits_2_naming_it(files):
    result = invoke("check", "calibration", "--data", files["cur"], "--prediction", "score", "--label", "purchase")
    assert_one_line_error(result, "label column 'purchase' is missing", "cur.parquet")


def test_labels_not_binary_exit_2(files):
    assert_one_line_error(calibration(files, "bad_labels"), "label column 'click' must hold 0/1", "found 2")


def test_predictions_outside_unit_interval_exit_2(files):
    assert_one_line_error(calibration(files, "bad_scores"), "prediction column 'score'", "outside [0, 1]")


def test_empty_or_unknown_segment_exits_2(files):
    assert_one_line_error(calibration(files, "cur", "--segment", ""), "--segment: empty column name")
    assert_one_line_error(calibration(files, "cur", "--segment", "os,,slot"), "--segment: empty column name")
    assert_one_line_error(calibration(files, "cur", "--segment", "browser"), "segment column 'browser' is missing")


def test_nonexistent_data_exits_2(files, tmp_path):
    result = invoke("check", "calibration", "--data", tmp_path / "nope.parquet", "--prediction", "score",
                    "--label", "click")
    assert_one_line_error(result, "nope.parquet")


# ------------------------------------------------------------------ quality


def test_quality_json_and_write_suite_then_reuse(files, tmp_path):
    suite = tmp_path / "suite.json"
    result = invoke("check", "quality", "--reference", files["ref"], "--current", files["cur"],
                    "--write-suite", suite, "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["check"] == "data_quality" and payload["status"] == "ok"
    assert payload["details"]["validated_rows"] == 60_000 and payload["details"]["sampled"] is False
    assert json.loads(suite.read_text())["expectations"]
    # The written suite, reused: a decayed window is still clean data; a retyped one is not.
    again = invoke("check", "quality", "--suite", suite, "--current", files["decayed"], "--format", "json")
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "ok"
    bad = invoke("check", "quality", "--suite", suite, "--current", files["bad_scores"], "--format", "json",
                 "--fail-on", "alert")
    assert bad.exit_code == 1
    failed = [e for e in json.loads(bad.stdout)["details"]["expectations"] if not e["success"]]
    assert {e["column"] for e in failed} == {"score"}


def test_quality_bad_input_exits_2(files, tmp_path):
    assert_one_line_error(invoke("check", "quality", "--current", files["cur"]), "--reference", "--suite")
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    assert_one_line_error(invoke("check", "quality", "--suite", broken, "--current", files["cur"]),
                          "broken.json", "not valid JSON")
    assert_one_line_error(invoke("check", "quality", "--reference", files["ref"], "--current", files["cur"],
                                 "--id-column", "request_id"), "id column 'request_id' is missing")
    assert_one_line_error(invoke("check", "quality", "--reference", files["ref"], "--current",
                                 tmp_path / "none.parquet"), "none.parquet")
