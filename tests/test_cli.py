"""The `driftline` CLI through typer's runner: the JSON contract, exit codes, options, init and run.

Exit codes: 0 the check ran (whatever it found), 1 a `--fail-on` level was met, 2 bad
input with ONE line on stderr naming the file, column or key.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import example_config_text, load_config

STATUSES = {"ok", "warn", "alert", "insufficient_data", "error"}
FEATURE_FIELDS = {
    "feature": str,
    "kind": str,
    "method": str,
    "score": (float, int, type(None)),
    "threshold": (float, int, type(None)),
    "status": str,
    "reference_count": int,
    "current_count": int,
}
N = 4_000


def _table(n: int = N, seed: int = 0, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "price": rng.lognormal(3.0, 0.5, n) * math.exp(shift),
            "score": rng.normal(shift, 1.0, n),
            "hour": rng.integers(0, 24, n),
            "dev": rng.choice(["ios", "android", "web"], n, p=[0.4, 0.4, 0.2]),
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    paths = {"ref": root / "ref.parquet", "cur": root / "cur.parquet", "shift": root / "shift.parquet"}
    pq.write_table(_table(seed=0), paths["ref"])
    pq.write_table(_table(seed=1), paths["cur"])
    pq.write_table(_table(seed=2, shift=1.0), paths["shift"])  # one std on `score`, big move on `price`
    return paths


def _runner() -> CliRunner:
    return CliRunner()  # click >= 8.2 keeps stdout and stderr apart (no mix_stderr argument)


def invoke(*args: str):
    return _runner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def drift(data, *extra, current: Path | None = None):
    return invoke("check", "drift", "--reference", data["ref"], "--current", current or data["cur"], *extra)


def drift_json(data, *extra, current: Path | None = None) -> tuple[int, dict]:
    result = drift(data, "--format", "json", *extra, current=current)
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(result.stdout)


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


# --------------------------------------------------------------------------- JSON contract


def test_json_contract_fields_and_types(data):
    code, payload = drift_json(data)
    assert code == 0
    assert payload["check"] == "data_drift"
    assert payload["status"] in STATUSES
    features = payload["features"]
    assert [f["feature"] for f in features] == ["price", "score", "hour", "dev"]
    for f in features:
        for name, types in FEATURE_FIELDS.items():
            assert name in f, name
            assert isinstance(f[name], types), (name, f[name])
        assert f["status"] in STATUSES
        assert f["reference_count"] == N and f["current_count"] == N
        assert f["score"] is not None and math.isfinite(f["score"]) and f["score"] >= 0
        assert f["threshold"] > 0
    kinds = {f["feature"]: (f["kind"], f["method"]) for f in features}
    assert kinds == {
        "price": ("numeric", "wasserstein"),
        "score": ("numeric", "wasserstein"),
        "hour": ("numeric", "wasserstein"),
        "dev": ("categorical", "linf"),
    }
    # Two samples of one distribution: nothing drifts.
    assert payload["status"] == "ok"
    assert all(f["status"] == "ok" for f in features)


def test_json_is_the_only_thing_on_stdout(data):
    result = drift(data, "--format", "json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # no banner, no progress, no colour codes
    assert "\x1b[" not in result.stdout


def test_planted_shift_alerts_and_exit_code_follows_fail_on(data):
    code, payload = drift_json(data, current=data["shift"])
    assert code == 0  # found drift, but no --fail-on: the check ran
    statuses = {f["feature"]: f["status"] for f in payload["features"]}
    assert statuses["score"] == "alert"
    assert statuses["price"] == "alert"
    assert statuses["hour"] == "ok" and statuses["dev"] == "ok"
    assert payload["status"] == "alert"

    assert drift(data, "--format", "json", "--fail-on", "alert", current=data["shift"]).exit_code == 1
    assert drift(data, "--format", "json", "--fail-on", "warn", current=data["shift"]).exit_code == 1
    # No drift: --fail-on is not met.
    assert drift(data, "--format", "json", "--fail-on", "alert").exit_code == 0
    assert drift(data, "--format", "json", "--fail-on", "warn").exit_code == 0


def test_fail_on_alert_is_not_met_by_a_warning(tmp_path, data):
    """A score between the warn and alert thresholds exits 1 for --fail-on warn only."""
    ref = _table(n=20_000, seed=10)
    cur = _table(n=20_000, seed=11)
    # 0.15 std on `score`: between wasserstein's warn (0.1) and alert (0.2).
    cur = cur.set_column(1, "score", pa.array(cur["score"].to_numpy() + 0.15))
    pq.write_table(ref, tmp_path / "r.parquet")
    pq.write_table(cur, tmp_path / "c.parquet")
    args = ["check", "drift", "--reference", tmp_path / "r.parquet", "--current", tmp_path / "c.parquet",
            "--format", "json", "--features", "score"]
    result = invoke(*args)
    payload = json.loads(result.stdout)
    assert payload["features"][0]["status"] == "warn", payload
    assert result.exit_code == 0
    assert invoke(*args, "--fail-on", "alert").exit_code == 0
    assert invoke(*args, "--fail-on", "warn").exit_code == 1


# --------------------------------------------------------------------------- bad input -> 2


def test_nonexistent_current_path_exits_2_naming_it(data, tmp_path):
    missing = tmp_path / "no-such-dir" / "serving.parquet"
    result = drift(data, "--format", "json", current=missing)
    assert_one_line_error(result, str(missing))


def test_nonexistent_reference_path_exits_2_naming_it(data, tmp_path):
    missing = tmp_path / "gone.parquet"
    result = invoke("check", "drift", "--reference", missing, "--current", data["cur"])
    assert_one_line_error(result, str(missing))


def test_long_path_error_stays_on_one_line(data, tmp_path):
    deep = tmp_path.joinpath(*(["a_rather_long_directory_name"] * 6)) / "serving_logs_2026_01_01.parquet"
    result = drift(data, current=deep)
    assert_one_line_error(result, str(deep))


def test_garbage_current_file_exits_2_naming_it(data, tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet at all")
    result = drift(data, "--format", "json", current=bad)
    assert_one_line_error(result, str(bad))


def test_unknown_feature_exits_2_naming_it(data):
    result = drift(data, "--features", "price,no_such_column")
    assert_one_line_error(result, "no_such_column")


def test_bad_method_spec_exits_2(data):
    assert_one_line_error(drift(data, "--method", "price"), "price")
    assert_one_line_error(drift(data, "--method", "price=bogus"), "bogus")
    assert_one_line_error(drift(data, "--method", "dev=wasserstein"), "dev")
    assert_one_line_error(drift(data, "--method", "nope=psi"), "nope")


def test_bad_format_option_is_a_usage_error(data):
    result = _runner().invoke(app, ["check", "drift", "--reference", str(data["ref"]), "--current",
                                    str(data["cur"]), "--format", "xml"])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- options


def test_features_subset(data):
    code, payload = drift_json(data, "--features", "score, dev")
    assert code == 0
    assert [f["feature"] for f in payload["features"]] == ["score", "dev"]
    assert payload["details"]["features_total"] == 2


def test_features_subset_hides_drift_elsewhere(data):
    """Only the named features decide the status and the exit code."""
    code, payload = drift_json(data, "--features", "hour,dev", "--fail-on", "alert", current=data["shift"])
    assert code == 0
    assert payload["status"] == "ok"
    code, payload = drift_json(data, "--features", "hour,score", "--fail-on", "alert", current=data["shift"])
    assert code == 1
    assert payload["status"] == "alert"


def test_method_option_sets_the_method(data):
    code, payload = drift_json(data, "--method", "score=psi", "--method", "dev=jensenshannon")
    assert code == 0
    methods = {f["feature"]: f["method"] for f in payload["features"]}
    assert methods == {"price": "wasserstein", "score": "psi", "hour": "wasserstein", "dev": "jensenshannon"}
    by_name = {f["feature"]: f for f in payload["features"]}
    # PSI's default thresholds are (0.1, 0.25), not wasserstein's (0.1, 0.2).
    assert by_name["score"]["threshold"] == pytest.approx(0.25)
    assert by_name["price"]["threshold"] == pytest.approx(0.2)
    # The PSI score differs from the wasserstein score of the same data.
    _, default = drift_json(data)
    default_score = {f["feature"]: f["score"] for f in default["features"]}["score"]
    assert by_name["score"]["score"] != pytest.approx(default_score)
    # And PSI still sees the planted shift.
    _, shifted = drift_json(data, "--method", "score=psi", current=data["shift"])
    assert {f["feature"]: f["status"] for f in shifted["features"]}["score"] == "alert"


def test_min_samples_gives_insufficient_data(data):
    code, payload = drift_json(data, "--min-samples", str(N + 1))
    assert code == 0
    assert payload["status"] == "insufficient_data"
    assert all(f["status"] == "insufficient_data" and f["score"] is None for f in payload["features"])


def test_report_writes_html(data, tmp_path):
    pytest.importorskip("evidently")
    report = tmp_path / "out" / "drift.html"
    code, payload = drift_json(data, "--report", str(report), "--features", "score,dev")
    assert code == 0
    assert report.is_file()
    text = report.read_text(encoding="utf-8", errors="replace")
    assert text.lstrip().lower().startswith(("<!doctype html", "<html"))
    # The page opens with driftline's own verdict: one row per compared column, its status as judged.
    verdict = text[text.index('id="driftline-verdict"'):text.index("</section>")]
    assert f"driftline verdict: {payload['status'].upper()}" in verdict
    for feature in payload["features"]:
        assert f"<td>{feature['feature']}</td><td>{feature['kind']}</td><td>{feature['method']}</td>" in verdict
    assert "<td>price</td>" not in verdict  # --features limits the report too
    # Evidently adds no dataset-level headline that could contradict the verdict.
    assert "Dataset Drift is" not in text
    assert payload["report_path"] == str(report)


def test_table_output_mentions_features_and_status(data):
    result = drift(data, current=data["shift"])
    assert result.exit_code == 0
    text = result.stdout
    for name in ("price", "score", "hour", "dev"):
        assert name in text
    assert "data_drift" in text
    assert "alert" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_table_output_reports_partial_reads(data, tmp_path):
    folder = tmp_path / "serving"
    folder.mkdir()
    pq.write_table(_table(seed=3), folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 not really")
    result = drift(data, current=folder)
    assert result.exit_code == 0, result.stderr
    assert "partial" in result.stdout


# --------------------------------------------------------------------------- init


def test_init_writes_a_config_that_loads(tmp_path):
    path = tmp_path / "driftline.yaml"
    result = invoke("init", path)
    assert result.exit_code == 0, result.stderr
    assert path.read_text() == example_config_text()
    config = load_config(path)
    model = config.model(None)
    assert model.name == "offer-ctr"
    assert model.feature_kinds["cart_value"] == "numeric"
    assert config.base_dir == tmp_path.resolve()
    # Relative paths resolve next to the config file.
    assert model.reference.resolved(config.base_dir).startswith(str(tmp_path.resolve()))


def test_init_config_runs_once_its_paths_point_at_real_files(tmp_path):
    """The example's schema is usable: point it at real data and `run` produces results."""
    invoke("init", tmp_path / "driftline.yaml")
    data = yaml.safe_load((tmp_path / "driftline.yaml").read_text())
    _write_offer_data(tmp_path)
    model = data["models"][0]
    model["reference"]["path"] = "ref.parquet"
    model["serving"]["path"] = "serving.parquet"
    model["checks"]["data_drift"]["report"] = False
    # This data has five of the example's features and its score in the reference itself
    # (tests/test_example_config.py runs every check of the example on a demo world).
    del model["prediction_reference"]
    model["schema"]["features"] = [f for f in model["schema"]["features"]
                                   if f["name"] in ("device", "os", "offer_id", "cart_value", "hour_of_day")]
    (tmp_path / "driftline.yaml").write_text(yaml.safe_dump(data))
    result = invoke("run", "--config", tmp_path / "driftline.yaml", "--window", "2026-01-01/2026-01-02",
                    "--check", "data_drift", "--check", "prediction_drift", "--format", "json")
    assert result.exit_code == 0, result.stderr
    results = {r["check"]: r for r in json.loads(result.stdout)}
    assert set(results) == {"data_drift", "prediction_drift"}
    drift_result = results["data_drift"]
    assert drift_result["status"] == "ok", drift_result
    assert {f["feature"] for f in drift_result["features"]} == {"device", "os", "offer_id", "cart_value",
                                                                 "hour_of_day"}
    assert results["prediction_drift"]["features"][0]["feature"] == "score"


def test_init_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "driftline.yaml"
    path.write_text("# mine\n")
    result = invoke("init", path)
    assert_one_line_error(result, str(path))
    assert path.read_text() == "# mine\n"
    result = invoke("init", path, "--force")
    assert result.exit_code == 0
    assert path.read_text() == example_config_text()


# --------------------------------------------------------------------------- run


def _write_offer_data(root: Path, n: int = 6_000) -> None:
    def table(n, start, seed):
        r = np.random.default_rng(seed)
        ts = [start + timedelta(seconds=int(s)) for s in np.sort(r.integers(0, 86_400, n))]
        return pa.table(
            {
                "example_id": [f"e{seed}-{i}" for i in range(n)],
                "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "model_version": ["v1"] * n,
                "device": r.choice(["mobile", "desktop", "tablet"], n, p=[0.6, 0.3, 0.1]),
                "os": r.choice(["ios", "android", "windows", "macos"], n),
                "offer_id": r.choice([f"o{i}" for i in range(8)], n),
                "cart_value": r.lognormal(4, 0.6, n),
                "hour_of_day": r.integers(0, 24, n),
                "score": r.beta(2, 30, n),
                "click": (r.random(n) < 0.05).astype(np.int64),
            }
        )

    pq.write_table(table(n, datetime(2025, 12, 1, tzinfo=timezone.utc), 1), root / "ref.parquet")
    pq.write_table(table(n, datetime(2026, 1, 1, tzinfo=timezone.utc), 2), root / "serving.parquet")


def _minimal_config(root: Path, **drift_extra) -> dict:
    return {
        "version": 1,
        "store": {"url": "sqlite:///store.db", "reports_dir": "reports"},
        "models": [
            {
                "name": "m1",
                "reference": {"path": "ref.parquet"},
                "serving": {"path": "serving.parquet"},
                "schema": {
                    "timestamp": "ts",
                    "features": [
                        {"name": "device", "kind": "categorical"},
                        {"name": "cart_value", "kind": "numeric"},
                    ],
                },
                "checks": {
                    "data_drift": {"report": False, **drift_extra},
                    "prediction_drift": {"enabled": False},
                },
            }
        ],
    }


def test_run_unknown_config_key_exits_2_naming_the_key_path(tmp_path):
    cfg = _minimal_config(tmp_path, threshold=3)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = invoke("run", "--config", tmp_path / "c.yaml", "--window", "2026-01-01/2026-01-02")
    assert_one_line_error(result, "models.m1.checks.data_drift.threshold")


def test_run_unknown_top_level_key_exits_2(tmp_path):
    cfg = _minimal_config(tmp_path)
    cfg["stores"] = {}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = invoke("run", "--config", tmp_path / "c.yaml", "--window", "2026-01-01/2026-01-02")
    assert_one_line_error(result, "stores")


def test_run_missing_config_exits_2_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = invoke("run", "--config", missing, "--window", "2026-01-01/2026-01-02")
    assert_one_line_error(result, str(missing))


@pytest.mark.parametrize("window", ["2026-01-01", "2026-01-02/2026-01-01", "yesterday/today", "2026-01-01/2026-01-02/x"])
def test_run_bad_window_exits_2(tmp_path, window):
    _write_offer_data(tmp_path, n=100)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_minimal_config(tmp_path)))
    result = invoke("run", "--config", tmp_path / "c.yaml", "--window", window)
    assert_one_line_error(result, "window")


def test_run_happy_path_and_rerun(tmp_path):
    _write_offer_data(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_minimal_config(tmp_path)))
    args = ["run", "--config", tmp_path / "c.yaml", "--window", "2026-01-01/2026-01-02", "--format", "json"]
    first = invoke(*args)
    assert first.exit_code == 0, first.stderr
    results = json.loads(first.stdout)
    assert [r["check"] for r in results] == ["data_drift"]
    (result,) = results
    assert result["status"] == "ok"
    assert result["model"] == "m1"
    assert result["current_rows"] == 6_000
    assert {f["feature"]: f["status"] for f in result["features"]} == {"device": "ok", "cart_value": "ok"}
    # Idempotent: the same window gives the same answer again.
    second = invoke(*args)
    assert second.exit_code == 0
    assert json.loads(second.stdout)[0]["features"] == result["features"]
    # A window with no serving rows is insufficient_data, not an error.
    empty = invoke("run", "--config", tmp_path / "c.yaml", "--window", "2026-02-01/2026-02-02", "--format", "json")
    assert empty.exit_code == 0
    assert json.loads(empty.stdout)[0]["status"] == "insufficient_data"
