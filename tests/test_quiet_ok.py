"""No quiet "ok" where the data did not support it.

Each case once said ok (or printed numbers with nothing to flag them): skew that skipped a
third of the logged scores, skew on one row a side, permutation importance on one row,
`explain` over a folder with a corrupt file, and a quality check that let garbage
timestamps through. Each now gives a non-ok status, `insufficient_data`, or an explicit
flag, in the table and in the JSON.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from monitor.cli import app
from skew.prediction import prediction_skew
from tests.explain_fixtures import synthetic, train


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


class Doubler:
    """A model that scores 2x: the logged score matches when the serving stack did the same."""

    features = ("x",)

    def __call__(self, rows) -> np.ndarray:
        return 2.0 * rows["x"].to_numpy(dtype=np.float64)


def _logs(n: int, bad: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    score = 2.0 * x
    where = rng.choice(n, bad, replace=False)
    score[where[: bad // 2]] = np.nan
    score[where[bad // 2:]] = np.inf
    return pa.table({"x": x, "score": score})


# --------------------------------------------------------------------------- skew


def test_prediction_skew_counts_unscorable_rows_instead_of_saying_ok():
    table = _logs(20_000, 6_002)
    result = prediction_skew(table.to_batches(max_chunksize=4096), {None: Doubler()}, "score")
    assert result.compared == 13_998 and result.not_compared == 6_002
    assert result.mismatches == 0  # the finite scores all agree ...
    assert result.status == "alert"  # ... but 30% of the scores could not be checked at all
    assert any("6,002 of 20,000" in reason for reason in result.reasons)
    payload = result.to_dict()
    assert payload["not_compared"] == 6_002 and payload["by_version"][0]["not_compared"] == 6_002


def test_prediction_skew_with_every_score_finite_is_still_ok():
    result = prediction_skew(_logs(20_000, 0).to_batches(), {None: Doubler()}, "score")
    assert result.status == "ok" and result.not_compared == 0 and result.compared == 20_000


def test_prediction_skew_on_a_handful_of_rows_is_insufficient_data():
    result = prediction_skew(_logs(5, 0).to_batches(), {None: Doubler()}, "score", min_samples=1000)
    assert result.status == "insufficient_data"
    assert any("only 5 scores compared" in reason for reason in result.reasons)


def _csv(path, rows):
    path.write_text("id,x,c\n" + "".join(f"{i},{x},{c}\n" for i, x, c in rows))
    return path


def test_skew_with_one_row_a_side_is_insufficient_data(tmp_path):
    training = _csv(tmp_path / "training.csv", [(1, 0.5, "a")])
    serving = _csv(tmp_path / "serving.csv", [(1, 0.5, "a")])
    run = cli("check", "skew", "--training", training, "--serving", serving, "--key", "id", "--format", "json")
    assert run.exit_code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["status"] == "insufficient_data"
    assert payload["join"]["status"] == "insufficient_data"
    assert {f["status"] for f in payload["features"]} == {"insufficient_data"}
    assert any("only 1 joined examples" in r for f in payload["features"] for r in f["reasons"])
    table = cli("check", "skew", "--training", training, "--serving", serving, "--key", "id")
    assert "train_serve_skew: insufficient_data" in table.stdout


def test_skew_on_few_rows_still_reports_a_mismatch_it_saw(tmp_path):
    """Few rows are no evidence of agreement, but a value that differs is evidence of skew."""
    training = _csv(tmp_path / "training.csv", [(1, 0.5, "a"), (2, 0.7, "b")])
    serving = _csv(tmp_path / "serving.csv", [(1, 0.5, "a"), (2, 0.9, "b")])
    run = cli("check", "skew", "--training", training, "--serving", serving, "--key", "id", "--format", "json")
    features = {f["feature"]: f for f in json.loads(run.stdout)["features"]}
    assert features["x"]["status"] == "alert" and features["x"]["value_mismatches"] == 1
    assert features["c"]["status"] == "insufficient_data"
    assert json.loads(run.stdout)["status"] == "alert"


# --------------------------------------------------------------------------- explain


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quiet_explain")
    model = train(synthetic(3000, seed=1), tmp / "model.txt", trees=20)
    frame = synthetic(600, seed=3)
    frame["colour"] = frame["colour"].astype(str)
    return tmp, model, frame


def test_permutation_on_one_row_is_insufficient_data(model_and_data, tmp_path):
    _, model, frame = model_and_data
    data = tmp_path / "one.parquet"
    frame.head(1).to_parquet(data)
    args = ("explain", "--model", model, "--data", data, "--method", "permutation", "--label", "label",
            "--repeats", 2)
    run = cli(*args, "--format", "json")
    assert run.exit_code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["rows"] == 1
    assert all(f["importance"] == 0 for f in payload["features"])  # what a shuffle of one row gives ...
    assert payload["status"] == "insufficient_data"  # ... and now says it means nothing
    assert any("only 1 labelled rows" in r for r in payload["reasons"])
    assert "insufficient_data: only 1 labelled rows" in cli(*args).stdout


def test_permutation_on_enough_rows_is_ok(model_and_data, tmp_path):
    _, model, frame = model_and_data
    data = tmp_path / "many.parquet"
    frame.to_parquet(data)
    run = cli("explain", "--model", model, "--data", data, "--method", "permutation", "--label", "label",
              "--repeats", 2, "--format", "json")
    payload = json.loads(run.stdout)
    assert payload["status"] == "ok" and payload["reasons"] == [] and payload["partial"] is False


def test_explain_over_a_folder_with_a_corrupt_file_says_it_skipped_it(model_and_data, tmp_path):
    _, model, frame = model_and_data
    folder = tmp_path / "data"
    folder.mkdir()
    frame.iloc[:300].to_parquet(folder / "part-0.parquet")
    frame.iloc[300:].to_parquet(folder / "part-1.parquet")
    whole = (folder / "part-1.parquet").read_bytes()
    (folder / "part-1.parquet").write_bytes(whole[: len(whole) // 2])
    run = cli("explain", "--model", model, "--data", folder, "--format", "json")
    assert run.exit_code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["rows"] == 300
    assert payload["partial"] is True and len(payload["bad_files"]) == 1
    assert "part-1.parquet" in payload["bad_files"][0]
    table = cli("explain", "--model", model, "--data", folder)
    assert "partial: 1 unreadable file(s) skipped" in table.stdout and "part-1.parquet" in table.stdout


# --------------------------------------------------------------------------- quality


def _timestamps_csv(path, garbage_at: int | None):
    lines = ["ts,x,c"]
    for i in range(7):
        ts = "garbage" if i == garbage_at else f"2026-01-01T0{i}:00:00"
        lines.append(f"{ts},{i / 10},a")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_quality_catches_one_garbage_timestamp_in_seven(tmp_path):
    reference = _timestamps_csv(tmp_path / "ref.csv", None)
    current = _timestamps_csv(tmp_path / "cur.csv", 3)
    run = cli("check", "quality", "--reference", reference, "--current", current, "--format", "json")
    assert run.exit_code == 0, run.stderr
    payload = json.loads(run.stdout)
    features = {f["feature"]: f for f in payload["features"]}
    assert features["ts"]["status"] == "alert"
    assert payload["status"] == "alert"
    assert any("type" in r for r in features["ts"]["reasons"])
    assert cli("check", "quality", "--reference", reference, "--current", current, "--fail-on", "alert").exit_code == 1


@pytest.mark.parametrize("tz", [None, "UTC"])
def test_quality_passes_clean_timestamps_naive_or_aware(tmp_path, tz):
    stamps = pd.date_range("2026-01-01", periods=500, freq="min", tz=tz)
    frame = pd.DataFrame({"ts": stamps, "x": np.linspace(0, 1, 500)})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "ref.parquet")
    later = frame.assign(ts=frame["ts"] + pd.Timedelta(days=1))  # a later window: its range moves, that is fine
    pq.write_table(pa.Table.from_pandas(later, preserve_index=False), tmp_path / "cur.parquet")
    run = cli("check", "quality", "--reference", tmp_path / "ref.parquet", "--current", tmp_path / "cur.parquet",
              "--format", "json")
    payload = json.loads(run.stdout)
    assert payload["status"] == "ok", [f for f in payload["features"] if f["status"] != "ok"]
    assert "ts" in {f["feature"] for f in payload["features"]}
