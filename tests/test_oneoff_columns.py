"""`check drift` without --features compares features only: identifiers, timestamps, labels and
scores are inferred from names and values, skipped, and listed."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from monitor.cli import app
from core.sources import Source
from monitor.oneoff import drift_features


def _logs(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    table = pa.table({
        "example_id": [f"ex-{seed}-{i}" for i in range(n)],
        "request_id": np.arange(n, dtype=np.int64) + seed * n,
        "offer_id": [f"offer-{i % 40:02d}" for i in rng.integers(0, 40, n)],
        "device": rng.choice(["mobile", "desktop"], n),
        "ts": pa.array(np.arange(n, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
        "event_ts": np.arange(n, dtype=np.int64),
        "cart_value": rng.lognormal(3, 1, n),
        "conversion_rate": rng.random(n),  # a feature that merely mentions a label's name
        "click": rng.integers(0, 2, n),
        "conversion": rng.integers(0, 2, n),
        "score": rng.random(n),
        "p_click": rng.random(n),
    })
    pq.write_table(table, path)
    return path


def test_ids_times_labels_and_scores_are_skipped_with_reasons(tmp_path):
    skipped = {}
    kinds = drift_features(Source(str(_logs(tmp_path / "ref.parquet"))), None, skipped)
    assert kinds == {"offer_id": "categorical", "device": "categorical", "cart_value": "numeric",
                     "conversion_rate": "numeric"}
    assert skipped["example_id"].startswith("identifier") and skipped["request_id"].startswith("identifier")
    assert skipped["ts"] == skipped["event_ts"] == "timestamp"
    assert skipped["click"] == skipped["conversion"] == "label"
    assert skipped["score"] == skipped["p_click"] == "prediction"


def test_named_features_are_compared_whatever_they_look_like(tmp_path):
    kinds = drift_features(Source(str(_logs(tmp_path / "ref.parquet"))), ["example_id", "click"], {})
    assert kinds == {"example_id": "categorical", "click": "numeric"}


def test_the_cli_lists_what_it_did_not_compare(tmp_path):
    reference, current = _logs(tmp_path / "ref.parquet", seed=0), _logs(tmp_path / "cur.parquet", seed=1)
    done = CliRunner().invoke(app, ["check", "drift", "--reference", str(reference), "--current", str(current),
                                    "--min-samples", "100"])
    assert done.exit_code == 0, done.output
    assert "not compared (not features)" in done.output
    for column in ("example_id", "request_id", "click", "conversion", "score", "p_click", "ts"):
        assert column in done.output.split("not compared", 1)[1]
    as_json = CliRunner().invoke(app, ["check", "drift", "--reference", str(reference), "--current", str(current),
                                       "--min-samples", "100", "--format", "json"])
    record = json.loads(as_json.stdout)
    assert {f["feature"] for f in record["features"]} == {"offer_id", "device", "cart_value", "conversion_rate"}
    assert record["status"] == "ok"  # fresh ids and labels no longer alert
    assert set(record["details"]["skipped_columns"]) == {"example_id", "request_id", "ts", "event_ts", "click",
                                                         "conversion", "score", "p_click"}
