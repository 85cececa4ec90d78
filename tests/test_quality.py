"""Data quality with Great Expectations: a derived suite is quiet on clean windows and names
planted faults with their offending values; suites round-trip as editable JSON."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from checks.expectations import load_suite, save_suite
from checks.quality import derive_suite, read_for_suite, validate_table
from core.errors import ConfigError

KINDS = {"amount": "numeric", "tenure": "numeric", "device": "categorical"}
DEVICES = np.array(["mobile", "desktop", "tablet", "tv", "console"], dtype=object)


def window(n: int, seed: int, id_offset: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 100.0, n)
    tenure[rng.random(n) < 0.03] = np.nan
    return {
        "id": np.arange(id_offset, id_offset + n).astype(str),
        "amount": rng.lognormal(4.0, 0.6, n),
        "tenure": tenure,
        "device": DEVICES[rng.choice(5, n, p=[0.5, 0.3, 0.15, 0.04, 0.01])],
        "score": rng.beta(2, 50, n),
        "click": (rng.random(n) < 0.04).astype(np.int64),
    }


def to_table(data: dict) -> pa.Table:
    return pa.table({k: pa.array(v, from_pandas=True) for k, v in data.items()})


@pytest.fixture(scope="module")
def suite():
    return derive_suite(to_table(window(50_000, seed=0)), KINDS, "id", ["score"], ["click"])


def test_derived_suite_covers_every_column_and_kind(suite):
    kinds = [(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]]
    for column in KINDS:
        assert ("expect_column_to_exist", column) in kinds
        assert ("expect_column_values_to_be_in_type_list", column) in kinds
        assert ("expect_column_values_to_not_be_null", column) in kinds
    assert ("expect_column_values_to_be_between", "amount") in kinds
    assert ("expect_column_values_to_be_in_set", "device") in kinds
    assert ("expect_column_values_to_be_unique", "id") in kinds
    assert ("expect_column_values_to_be_between", "score") in kinds
    assert ("expect_column_values_to_be_in_set", "click") in kinds
    tenure_nulls = next(e for e in suite["expectations"] if e["type"] == "expect_column_values_to_not_be_null"
                        and e["kwargs"]["column"] == "tenure")
    assert 0.94 < tenure_nulls["kwargs"]["mostly"] < 0.96  # 3% nulls in the reference + 2% tolerance


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_windows_pass_every_expectation(suite, seed):
    result = validate_table(suite, to_table(window(20_000, seed=seed, id_offset=10**6)))
    assert result.status == "ok", [r for r in result.details["expectations"] if not r["success"]]
    assert result.details["expectations_failed"] == 0
    assert result.details["expectations_total"] == len(suite["expectations"])
    assert result.details["validated_rows"] == 20_000 and not result.details["sampled"]


def _faulty(kind: str) -> tuple[pa.Table, str, str]:
    data = window(20_000, seed=9, id_offset=10**6)
    rng = np.random.default_rng(9)
    hit = rng.random(20_000) < 0.05
    if kind == "null_surge":
        data["tenure"][hit | (rng.random(20_000) < 0.2)] = np.nan
        return to_table(data), "tenure", "expect_column_values_to_not_be_null"
    if kind == "out_of_range":
        data["amount"][hit] *= 100.0
        return to_table(data), "amount", "expect_column_values_to_be_between"
    if kind == "unseen_category":
        data["device"][hit] = "smartwatch"
        return to_table(data), "device", "expect_column_values_to_be_in_set"
    if kind == "retyped":
        table = to_table(data)
        return table.set_column(1, "amount", table.column("amount").cast(pa.string())), "amount", \
            "expect_column_values_to_be_in_type_list"
    if kind == "missing_column":
        return to_table(data).drop_columns(["device"]), "device", "expect_column_to_exist"
    if kind == "duplicate_ids":
        data["id"][:500] = data["id"][500:1000]
        return to_table(data), "id", "expect_column_values_to_be_unique"
    if kind == "score_outside_01":
        data["score"][hit] += 1.0
        return to_table(data), "score", "expect_column_values_to_be_between"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["null_surge", "out_of_range", "unseen_category", "retyped", "missing_column",
                                  "duplicate_ids", "score_outside_01"])
def test_planted_faults_are_named_with_their_offending_values(suite, kind):
    table, column, expectation = _faulty(kind)
    result = validate_table(suite, table)
    assert result.status == "alert"
    failed = [r for r in result.details["expectations"] if not r["success"]]
    assert (expectation, column) in {(r["expectation"], r["column"]) for r in failed}
    assert {f.feature for f in result.features if f.status in ("alert", "error")} == {column}
    record = next(r for r in failed if r["expectation"] == expectation and r["column"] == column)
    assert len(record["offending_values"]) <= 10
    if kind == "unseen_category":
        assert record["offending_values"][0]["value"] == "smartwatch"
    if kind == "out_of_range":
        assert record["unexpected_fraction"] == pytest.approx(0.05, abs=0.01)
    if kind == "missing_column":  # the other expectations on it could not run
        assert {r["status"] for r in result.details["expectations"] if r["column"] == "device"} == {"alert", "error"}
    json.dumps(result.to_dict(), allow_nan=False)


def test_suite_round_trips_as_json_and_edits_take_effect(suite, tmp_path):
    path = save_suite(suite, tmp_path / "suite.json")
    loaded = load_suite(path)
    assert loaded["expectations"] == json.loads(json.dumps(suite["expectations"]))
    for item in loaded["expectations"]:  # the user narrows the amount range and demotes it to a warning
        if item["type"] == "expect_column_values_to_be_between" and item["kwargs"]["column"] == "amount":
            item["kwargs"].update(max_value=60.0, mostly=1.0)
            item["severity"] = "warning"
    result = validate_table(loaded, to_table(window(5_000, seed=4, id_offset=10**6)))
    assert result.status == "warn"
    assert [f.feature for f in result.features if f.status == "warn"] == ["amount"]


def test_bad_suite_files_raise_config_errors_naming_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        load_suite(broken)
    shapeless = tmp_path / "shapeless.json"
    shapeless.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ConfigError, match="'expectations' list"):
        load_suite(shapeless)
    unknown = {"name": "x", "expectations": [{"type": "expect_column_to_be_purple", "kwargs": {"column": "a"}}]}
    with pytest.raises(ConfigError, match=r"expectations\[0\] \(expect_column_to_be_purple\)"):
        validate_table(unknown, to_table(window(100, seed=1)))


def test_a_window_above_the_bound_is_validated_on_a_stated_uniform_sample(suite):
    table = to_table(window(30_000, seed=5, id_offset=10**6))
    sample, rows = read_for_suite(table.to_batches(max_chunksize=4096), suite, sample_rows=10_000)
    result = validate_table(suite, sample, rows)
    assert result.details["validated_rows"] == 10_000 and result.details["window_rows"] == 30_000
    assert result.details["sampled"] and result.status == "ok"


def test_runner_flags_the_demo_skew_day_and_passes_a_clean_day(small_world, demo_store):
    from monitor.runner import ModelRunner

    config, store = demo_store
    runner = ModelRunner(config, config.models[0], store)
    clean, skew = (small_world.serving_start + timedelta(days=d) for d in (0, 3))
    quiet = runner.run(clean, clean + timedelta(days=1), ["data_quality"])[0]
    loud = runner.run(skew, skew + timedelta(days=1), ["data_quality"])[0]
    assert quiet.status == "ok", [r for r in quiet.details["expectations"] if not r["success"]]
    assert loud.status == "alert" and set(loud.alerting_features) == {"cart_value", "user_tenure_days"}


def test_learned_null_bound_covers_a_reference_whose_null_rate_swings():
    from checks.quality import SuiteParams

    data = window(50_000, seed=6)
    data["tenure"][: 25_000][np.random.default_rng(6).random(25_000) < 0.10] = np.nan  # first half: 13% nulls
    reference = to_table(data)

    def mostly(mode: str) -> float:
        suite = derive_suite(reference, KINDS, params=SuiteParams(threshold_mode=mode))
        return next(e["kwargs"]["mostly"] for e in suite["expectations"]
                    if e["type"] == "expect_column_values_to_not_be_null" and e["kwargs"]["column"] == "tenure")

    assert mostly("static") == pytest.approx(1 - (0.03 + 0.10 * 0.5 * 0.97 + 0.02), abs=0.01)
    assert mostly("learned") < mostly("static") - 0.1  # mean + 5 std of the chunk rates
