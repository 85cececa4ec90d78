"""The derived suite's expectations evaluated natively give Great Expectations' results.

GX is the oracle: the same suite over the same frame, once natively and once through GX
(`validate_frame(native=False)`), must give the same record per expectation (success, every
field of the result: counts, shares, offending values and their row indexes, the observed
dtype) on clean data and on planted faults: null surges, out-of-range and infinite values,
unseen categories, retyped columns, mixed-type text, garbage timestamps, duplicated ids, a
missing column, an impossible label, columns of nulls only, no rows at all.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from checks.expectations import _plain, expectation, validate_frame
from checks.native_expectations import evaluate
from checks.quality import SuiteParams, _naive_utc_timestamps, derive_suite, quality_result

KINDS = {"amount": "numeric", "tenure": "numeric", "visits": "numeric", "device": "categorical",
         "partner": "categorical", "returning": "categorical", "ts": "timestamp"}
DEVICES = np.array(["mobile", "desktop", "tablet", "tv", "console"], dtype=object)


def window(n: int, seed: int, id_offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 100.0, n)
    tenure[rng.random(n) < 0.03] = np.nan
    partner = np.array([f"p{int(v)}" for v in rng.zipf(1.5, n) % 3000], dtype=object)
    partner[rng.random(n) < 0.01] = None
    returning = (rng.random(n) < 0.3).astype(object)
    returning[rng.random(n) < 0.05] = None
    return pd.DataFrame({
        "id": np.arange(id_offset, id_offset + n).astype(str),
        "amount": rng.lognormal(4.0, 0.6, n),
        "tenure": tenure,
        "visits": rng.poisson(3, n).astype(np.int64),
        "device": DEVICES[rng.choice(5, n, p=[0.5, 0.3, 0.15, 0.04, 0.01])],
        "partner": partner,
        "returning": returning,
        "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
        "score": rng.beta(2, 50, n),
        "click": (rng.random(n) < 0.04).astype(np.int64),
    })


def frame_of(data: pd.DataFrame) -> pd.DataFrame:
    """What validate_table hands GX: the Arrow table as pandas, timestamps naive UTC."""
    return _naive_utc_timestamps(pa.Table.from_pandas(data, preserve_index=False)).to_pandas()


@pytest.fixture(scope="module")
def suite():
    reference = pa.Table.from_pandas(window(20_000, seed=0), preserve_index=False)
    return derive_suite(reference, KINDS, "id", ["score"], ["click"], params=SuiteParams(top_k=500))


def plant(kind: str) -> pd.DataFrame:
    data = window(5_000, seed=7, id_offset=10**6)
    rng = np.random.default_rng(7)
    hit = rng.random(len(data)) < 0.05
    if kind == "null_surge":
        data.loc[hit | (rng.random(len(data)) < 0.2), "tenure"] = np.nan
        data.loc[hit, "device"] = None
    elif kind == "out_of_range":
        data.loc[hit, "amount"] *= 100.0
        data.loc[np.flatnonzero(hit)[:3], "amount"] = [np.inf, -np.inf, 1e300]
        data.loc[hit, "visits"] += 1000
    elif kind == "unseen_category":
        data.loc[hit, "device"] = "smartwatch"
        data.loc[np.flatnonzero(hit)[::2], "partner"] = "brand-new-partner"
    elif kind == "retyped":
        data["amount"] = data["amount"].astype(str)
        data["visits"] = data["visits"].astype(float)
    elif kind == "mixed_text":  # text holding numbers: no Arrow table holds that, a pandas frame can
        data = frame_of(data)
        data.loc[hit, "device"] = 7
        data["returning"] = data["returning"].map({True: "yes", False: "no"})
        return data
    elif kind == "garbage_timestamps":  # a CSV column with one unparsable value is read as text
        data["ts"] = data["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")
        data.loc[np.flatnonzero(hit)[:700:7], "ts"] = "garbage"
    elif kind == "duplicate_ids":
        data.loc[:199, "id"] = data.loc[200:399, "id"].to_numpy()
    elif kind == "missing_column":
        data = data.drop(columns=["device", "score"])
    elif kind == "bad_labels":
        data.loc[hit, "click"] = 2
        data.loc[hit, "score"] = 1.5
    elif kind == "all_null":
        data["tenure"], data["device"], data["visits"] = np.nan, None, np.nan
    elif kind == "empty":
        data = data.iloc[:0]
    elif kind != "clean":
        raise AssertionError(kind)
    return frame_of(data)


def as_json(results: list[dict]) -> list[str]:
    return [json.dumps(r, default=_plain) for r in results]


FAULTS = ["clean", "null_surge", "out_of_range", "unseen_category", "retyped", "mixed_text", "garbage_timestamps",
          "duplicate_ids", "missing_column", "bad_labels", "all_null", "empty"]


@pytest.mark.parametrize("kind", FAULTS)
def test_native_results_equal_great_expectations_results(suite, kind):
    frame = plant(kind)
    native = validate_frame(suite, frame)
    oracle = validate_frame(suite, frame, native=False)
    assert len(native) == len(oracle) == len(suite["expectations"])
    for ours, theirs in zip(as_json(native), as_json(oracle)):
        assert ours == theirs
    # The same check result follows, statuses and offending values included.
    ours = quality_result(suite, native, len(frame), len(frame)).to_dict()
    theirs = quality_result(suite, oracle, len(frame), len(frame)).to_dict()
    assert ours == theirs
    if kind not in ("clean", "empty"):
        assert ours["status"] in ("alert", "error")


def test_every_derived_expectation_runs_natively_on_a_well_typed_window(suite):
    frame = plant("clean")
    assert all(evaluate(item, frame) is not None for item in suite["expectations"])


@pytest.mark.parametrize("kind, column, expectation_type", [
    ("null_surge", "tenure", "expect_column_values_to_not_be_null"),
    ("out_of_range", "amount", "expect_column_values_to_be_between"),
    ("unseen_category", "device", "expect_column_values_to_be_in_set"),
    ("retyped", "amount", "expect_column_values_to_be_in_type_list"),
    ("mixed_text", "device", "expect_column_values_to_be_in_type_list"),
    ("garbage_timestamps", "ts", "expect_column_values_to_be_in_type_list"),
    ("duplicate_ids", "id", "expect_column_values_to_be_unique"),
    ("bad_labels", "click", "expect_column_values_to_be_in_set"),
])
def test_planted_faults_fail_natively(suite, kind, column, expectation_type):
    frame = plant(kind)
    item = next(e for e in suite["expectations"]
                if e["type"] == expectation_type and e["kwargs"]["column"] == column)
    result = evaluate(item, frame)
    assert result is not None and result["success"] is False


def test_garbage_timestamps_fail_the_type_check_with_every_garbage_row_counted(suite):
    frame = plant("garbage_timestamps")
    item = next(e for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_be_in_type_list" and e["kwargs"]["column"] == "ts")
    result = evaluate(item, frame)["result"]
    assert result["unexpected_count"] == len(frame) - result["missing_count"]  # every value is text now


EDITED = [
    # kwargs GX normalises (int bounds to float, defaults dropped), strictness, severities, unknown kwargs
    expectation("expect_column_values_to_be_between", column="visits", min_value=1, max_value=6, mostly=1),
    expectation("expect_column_values_to_be_between", column="amount", min_value=40.0, strict_min=True,
                strict_max=False, severity="warning"),
    expectation("expect_column_values_to_be_between", column="tenure", max_value=500.0, strict_max=True,
                mostly=0.9, severity="info"),
    expectation("expect_column_values_to_be_in_set", column="visits", value_set=[0, 1, 2, 3, 4], mostly=0.5),
    expectation("expect_column_values_to_be_unique", column="device", mostly=0),
    expectation("expect_column_values_to_not_be_null", column="partner", mostly=1.0),
    expectation("expect_column_values_to_be_in_type_list", column="returning", type_list=["bool", "str"]),
    expectation("expect_column_values_to_be_in_type_list", column="visits", type_list=["float64", "int"]),
    # not native: another type, a row condition, a float32 column, text against numeric bounds
    expectation("expect_column_mean_to_be_between", column="amount", min_value=0.0, max_value=1000.0),
    expectation("expect_column_values_to_not_be_null", column="amount", row_condition='device=="tv"',
                condition_parser="pandas"),
    expectation("expect_column_values_to_be_between", column="small", min_value=0.0, max_value=0.5),
    expectation("expect_column_values_to_be_between", column="device", min_value=0.0, max_value=1.0),
]


def test_an_edited_suite_mixes_native_and_great_expectations_results_in_suite_order():
    frame = plant("clean").assign(small=lambda f: f["amount"].astype(np.float32) / 200)
    suite = {"name": "edited", "expectations": EDITED}
    routed = [evaluate(item, frame) is not None for item in EDITED]
    assert routed == [True] * 8 + [False] * 4
    native = validate_frame(suite, frame)
    oracle = validate_frame(suite, frame, native=False)

    assert as_json(native) == as_json(oracle)
    assert [r["type"] for r in native] == [e["type"] for e in EDITED]
    assert [r["kwargs"]["column"] for r in native] == [e["kwargs"]["column"] for e in EDITED]
    assert native[-1]["success"] is False  # text against numeric bounds: GX's verdict


def test_a_suite_of_native_types_imports_no_great_expectations():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, json; import pandas as pd; from checks.expectations import validate_frame, expectation;"
            "s={'name':'x','expectations':[expectation('expect_column_values_to_be_between', column='a',"
            " min_value=0.0, max_value=1.0)]};"
            "r=validate_frame(s, pd.DataFrame({'a':[0.5, 2.0]}));"
            "print(json.dumps([r[0]['success'], 'great_expectations' in sys.modules]))")
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, False]
