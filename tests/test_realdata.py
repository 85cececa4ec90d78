"""`driftline check drift` on real CTR logs (Avazu, Criteo) from ../shared/data.

The files are small heads and samples (see each SOURCE.md): Avazu's train head is one
hour of 2014-10-21, its strided test sample covers all of 2014-10-31; Criteo's train
head is the start of day 1 and its test head the start of day 8 (the test head's
`Label` is a placeholder and its train head calls the label `label`). All files are
comma-separated with a header row, so the one-off CLI reads them as they are.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AVAZU = DATA / "avazu"
CRITEO = DATA / "criteo"
AVAZU_TRAIN = AVAZU / "avazu_train_head_wsproject.csv"
AVAZU_TEST = AVAZU / "avazu_test_strided24h_wsproject.csv"
CRITEO_TRAIN = CRITEO / "criteo_kaggle_train_head_wsproject.csv"
CRITEO_TEST = CRITEO / "criteo_kaggle_test_head_wsproject.csv"

if not all(p.is_file() for p in (AVAZU_TRAIN, AVAZU_TEST, CRITEO_TRAIN, CRITEO_TEST)):
    pytest.skip(f"real data not found under {DATA}", allow_module_level=True)

pytestmark = pytest.mark.realdata

STATUSES = {"ok", "warn", "alert", "insufficient_data", "error"}
AVAZU_COLUMNS = ["id", "label", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
                 "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
                 "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"]
CRITEO_INTEGER = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]


def check_drift(reference: Path, current: Path, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(
        app, ["check", "drift", "--reference", str(reference), "--current", str(current), "--format", "json", *extra],
        catch_exceptions=False,
    )
    assert result.exit_code in (0, 1), result.stderr
    payload = json.loads(result.stdout)
    _assert_well_formed(payload)
    return result.exit_code, payload


def _assert_well_formed(payload: dict) -> None:
    assert payload["check"] == "data_drift"
    assert payload["status"] in STATUSES
    assert payload["features"]
    for f in payload["features"]:
        assert f["status"] in STATUSES, f
        assert f["kind"] in ("numeric", "categorical", "unknown")
        if f["status"] in ("insufficient_data", "error"):
            assert f["score"] is None
        else:
            assert isinstance(f["score"], float) and math.isfinite(f["score"]) and f["score"] >= 0, f
            assert math.isfinite(f["threshold"])
        if f["status"] == "error":
            assert f["message"] and f"'{f['feature']}'" in f["message"]


def _by_name(payload: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in payload["features"]}


# --------------------------------------------------------------------------- Avazu


@pytest.fixture(scope="module")
def avazu() -> tuple[int, dict]:
    return check_drift(AVAZU_TRAIN, AVAZU_TEST)


def test_avazu_train_head_vs_test_day_runs_and_reports_every_column(avazu):
    code, payload = avazu
    assert code == 0
    # Every reference column in order, but what reads as a label or id (named so, values agree:
    # `label` is 0/1) is listed as skipped instead; the test file's unnamed index is not compared.
    skipped = payload["details"]["skipped_columns"]
    assert "label" in skipped
    assert [f["feature"] for f in payload["features"]] == [c for c in AVAZU_COLUMNS if c not in skipped]
    assert payload["reference_rows"] == 1_999
    assert payload["current_rows"] == 4_000
    assert not payload["partial"]
    features = _by_name(payload)
    assert all(f["reference_count"] == 1_999 for f in features.values())
    assert all(f["current_count"] == 4_000 for f in features.values())
    kinds = {name: f["kind"] for name, f in features.items()}
    assert kinds["site_id"] == kinds["device_ip"] == "categorical"
    assert kinds["hour"] == kinds["C1"] == "numeric"


def test_avazu_label_missing_from_the_test_set_is_skipped_not_an_error(avazu):
    _, payload = avazu
    assert "label" not in _by_name(payload)  # a label is not a feature: not compared, so no error
    assert "label" in payload["details"]["skipped_columns"]
    assert not [name for name, f in _by_name(payload).items() if f["status"] == "error"]


def test_avazu_label_named_explicitly_is_an_error_for_that_feature_only():
    code, payload = check_drift(AVAZU_TRAIN, AVAZU_TEST, "--features", "label,hour,C1")
    features = _by_name(payload)
    assert features["label"]["status"] == "error" and "'label'" in features["label"]["message"]
    assert [name for name, f in features.items() if f["status"] == "error"] == ["label"]


def test_avazu_hour_drifts_between_days(avazu):
    _, payload = avazu
    hour = _by_name(payload)["hour"]
    # The train head is all 14102100, the test day is 14103100..14103123.
    assert hour["status"] == "alert"
    assert hour["score"] > hour["threshold"]


def test_avazu_device_ips_of_another_day_are_mostly_unseen(avazu):
    _, payload = avazu
    device_ip = _by_name(payload)["device_ip"]
    assert device_ip["unseen_share"] > 0.5
    assert device_ip["status"] == "alert"
    assert any("unseen" in r for r in device_ip["reasons"])


def test_avazu_low_cardinality_fields_are_stable(avazu):
    _, payload = avazu
    features = _by_name(payload)
    for name in ("C1", "banner_pos", "device_type"):
        assert features[name]["status"] in ("ok", "warn"), features[name]


def test_avazu_common_columns_only_and_fail_on(tmp_path):
    common = [c for c in AVAZU_COLUMNS if c not in ("id", "label")]
    code, payload = check_drift(AVAZU_TRAIN, AVAZU_TEST, "--features", ",".join(common))
    assert code == 0
    assert [f["feature"] for f in payload["features"]] == common
    assert not any(f["status"] == "error" for f in payload["features"])
    code, _ = check_drift(AVAZU_TRAIN, AVAZU_TEST, "--features", ",".join(common), "--fail-on", "alert")
    assert code == 1


def test_avazu_morning_vs_afternoon_of_the_test_day(tmp_path):
    """Split the time-spanning test sample into two halves of 2014-10-31 (Parquet, via pandas)."""
    pd = pytest.importorskip("pandas")
    table = pd.read_csv(AVAZU_TEST, index_col=0, dtype={"id": str})
    morning = table[table["hour"] < 14103112]
    afternoon = table[table["hour"] >= 14103112]
    assert len(morning) > 1_500 and len(afternoon) > 1_500
    morning.to_parquet(tmp_path / "morning.parquet", index=False)
    afternoon.to_parquet(tmp_path / "afternoon.parquet", index=False)
    code, payload = check_drift(tmp_path / "morning.parquet", tmp_path / "afternoon.parquet", "--min-samples", "500")
    assert code == 0
    features = _by_name(payload)
    assert "id" in payload["details"]["skipped_columns"]  # unique per row: an identifier, not a feature
    assert features["hour"]["status"] == "alert"  # disjoint hours
    for name in ("C1", "banner_pos", "device_type", "device_conn_type"):
        assert features[name]["status"] == "ok", features[name]


# --------------------------------------------------------------------------- Criteo


@pytest.fixture(scope="module")
def criteo() -> tuple[int, dict]:
    return check_drift(CRITEO_TRAIN, CRITEO_TEST, "--features", ",".join(CRITEO_INTEGER + CRITEO_CATEGORICAL))


def test_criteo_train_head_vs_next_day_head_runs(criteo):
    code, payload = criteo
    assert code == 0
    assert [f["feature"] for f in payload["features"]] == CRITEO_INTEGER + CRITEO_CATEGORICAL
    assert payload["reference_rows"] == payload["current_rows"] == 1_999
    features = _by_name(payload)
    assert {features[n]["kind"] for n in CRITEO_INTEGER} == {"numeric"}
    assert {features[n]["kind"] for n in CRITEO_CATEGORICAL} == {"categorical"}
    assert not any(f["status"] == "error" for f in payload["features"])  # the columns both files have


def test_criteo_sparse_integer_feature_is_insufficient_data(criteo):
    _, payload = criteo
    features = _by_name(payload)
    # I12 is ~78% missing: fewer than min_samples (1000) values on either side.
    assert features["I12"]["status"] == "insufficient_data"
    assert features["I12"]["null_rate_reference"] > 0.7
    # Numeric missing values are nulls; I1 is ~44% missing in both heads.
    assert features["I1"]["null_rate_reference"] == pytest.approx(0.445, abs=0.01)
    assert features["I1"]["null_rate_current"] == pytest.approx(0.441, abs=0.01)


def test_criteo_integer_features_barely_move_between_consecutive_days(criteo):
    _, payload = criteo
    features = _by_name(payload)
    alerting = [n for n in CRITEO_INTEGER if features[n]["status"] == "alert"]
    assert len(alerting) <= 2, alerting
    scored = [features[n]["score"] for n in CRITEO_INTEGER if features[n]["score"] is not None]
    assert len(scored) >= 12 and max(scored) < 0.5


def test_criteo_hashed_categoricals_alert_through_unseen_values(criteo):
    pd = pytest.importorskip("pandas")
    reference = pd.read_csv(CRITEO_TRAIN, usecols=CRITEO_CATEGORICAL)
    cardinality = reference.nunique()
    _, payload = criteo
    features = _by_name(payload)
    high = [c for c in CRITEO_CATEGORICAL if cardinality[c] > 500]
    low = [c for c in CRITEO_CATEGORICAL if cardinality[c] <= 12]
    assert len(high) >= 10 and len(low) >= 5
    for name in high:  # ids hashed per day: many values of day 8 never occur in day 1's head
        assert features[name]["unseen_share"] > 0.1, features[name]
        assert features[name]["status"] == "alert"
    for name in low:
        assert features[name]["unseen_share"] < 0.02, features[name]
        # (C22 is ~82% empty: once empty cells count as missing it has too few values to score.)
        assert features[name]["status"] in ("ok", "insufficient_data"), features[name]
    # No categorical's share distribution moves much: an alert is about unseen values.
    for name in CRITEO_CATEGORICAL:
        f = features[name]
        if f["status"] == "alert":
            assert any("unseen" in r for r in f["reasons"]), f


def test_criteo_without_features_skips_the_label_and_id(tmp_path):
    code, payload = check_drift(CRITEO_TRAIN, CRITEO_TEST)
    assert code == 0
    features = _by_name(payload)
    assert {"Id", "label"} <= set(payload["details"]["skipped_columns"])  # would alert on fresh ids
    assert list(features)[:2] == ["I1", "I2"]
    assert "Label" not in features  # the reference decides what is compared
    assert features["I2"]["status"] != "error"


def test_criteo_missing_categorical_cells_count_as_missing(criteo):
    _, payload = criteo
    assert _by_name(payload)["C22"]["null_rate_reference"] > 0.7
