"""Distribution and schema skew: the drift kernel's profiles scored with L-infinity
(categoricals) and Jensen-Shannon (numerics). Planted skews are named, clean data stays
quiet, scores agree with scipy / pandas computed from the rows, and the real Criteo train
and test heads run through it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon

from core.sources import Source
from skew.check import SkewCheck
from skew.distribution import DistributionSettings
from skew.schema import column_issues
from conftest import SHARED_DATA

N = 20_000
CRITEO = SHARED_DATA / "criteo"


def _frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 100.0, n).round()
    tenure[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame({
        "cart_value": rng.lognormal(4.0, 0.7, n).round(2),
        "tenure": tenure,
        "hour": rng.integers(0, 24, n).astype(np.float64),
        "device": rng.choice(["mobile", "desktop", "tablet"], n, p=[0.45, 0.4, 0.15]),
        "os": rng.choice(["android", "ios", "windows", "macos"], n, p=[0.3, 0.3, 0.3, 0.1]),
        "label": rng.integers(0, 2, n),
    })


def _run(tmp_path, training: pd.DataFrame, serving: pd.DataFrame, **kw):
    pq.write_table(pa.Table.from_pandas(training, preserve_index=False), tmp_path / "t.parquet")
    pq.write_table(pa.Table.from_pandas(serving, preserve_index=False), tmp_path / "s.parquet")
    check = SkewCheck(serving_absent=("label",), **kw)
    return check.run(Source(tmp_path / "t.parquet"), Source(tmp_path / "s.parquet"))


def _by_name(report):
    return {f.feature: f for f in report.features}


def _decile_js(train: np.ndarray, serve: np.ndarray) -> float:
    """Oracle: JS distance (scipy, natural log) over 10 training-quantile bins, from the rows."""
    train, serve = train[np.isfinite(train)], serve[np.isfinite(serve)]
    distinct = np.unique(train)
    if distinct.size <= 10:
        edges = (distinct[1:] + distinct[:-1]) / 2
    else:
        edges = np.unique(np.quantile(train, np.linspace(0, 1, 11)[1:-1]))
    bins = len(edges) + 1
    p = np.bincount(np.searchsorted(edges, train, side="right"), minlength=bins)
    q = np.bincount(np.searchsorted(edges, serve, side="right"), minlength=bins)
    return float(jensenshannon(p, q))


def _linf(train: pd.Series, serve: pd.Series) -> float:
    """Oracle: largest change of any category's share (nulls left out), from pandas."""
    a = train.dropna().astype(str).value_counts(normalize=True)
    b = serve.dropna().astype(str).value_counts(normalize=True)
    return float(a.sub(b, fill_value=0.0).abs().max())


def test_clean_data_is_quiet(tmp_path):
    report = _run(tmp_path, _frame(seed=0), _frame(seed=1))  # two samples of one distribution
    assert report.status == "ok", [(f.feature, f.reasons) for f in report.features]
    assert {f.method for f in report.features} == {"jensenshannon", "linf"}
    assert "label" not in {f.feature for f in report.features}  # absent at serving by design
    assert not [i for i in report.schema if i.severity != "info"]


def test_planted_distribution_skews_are_named(tmp_path):
    training = _frame(seed=0)
    serving = _frame(seed=1)
    serving["cart_value"] = serving["cart_value"] * 100  # served in cents
    serving["os"] = serving["os"].replace({"macos": "osx"})  # a stale categorical mapping
    serving["tenure"] = np.nan  # computed nowhere at serving
    serving = serving.drop(columns=["hour", "label"])  # missing at serving; the label by design
    report = _run(tmp_path, training, serving)
    features = _by_name(report)
    assert report.status == "alert"
    assert {n for n, f in features.items() if f.status != "ok"} == {"cart_value", "os", "tenure", "hour"}
    assert features["cart_value"].distribution_score > 0.5 and features["cart_value"].status == "alert"
    assert features["os"].distribution_score == pytest.approx(_linf(training["os"], serving["os"]))
    assert features["tenure"].status == "alert" and features["tenure"].null_rate_serving == 1.0
    assert features["hour"].status == "error" and "missing" in features["hour"].message
    assert features["device"].status == "ok"
    issues = {(i.column, i.issue): i for i in report.schema}
    assert issues[("hour", "missing")].severity == "alert"
    assert ("label", "missing") not in issues
    assert issues[("tenure", "all_null")].severity == "alert"
    assert issues[("os", "unseen_values")].severity == "alert" and "'osx'" in issues[("os", "unseen_values")].detail
    assert issues[("os", "vanished_values")].severity == "alert"


def test_scores_agree_with_scipy_and_pandas(tmp_path):
    training = _frame(seed=0)
    serving = _frame(seed=1)
    serving["hour"] = (serving["hour"] + (np.random.default_rng(2).random(N) < 0.3)) % 24  # some traffic later
    serving["cart_value"] = serving["cart_value"] * 1.6
    serving["device"] = np.where(np.random.default_rng(3).random(N) < 0.1, "mobile", serving["device"])
    features = _by_name(_run(tmp_path, training, serving))
    for name in ("cart_value", "tenure", "hour"):
        oracle = _decile_js(training[name].to_numpy(), serving[name].to_numpy())
        assert features[name].distribution_score == pytest.approx(oracle, abs=1e-12)
    for name in ("device", "os"):
        assert features[name].distribution_score == pytest.approx(_linf(training[name], serving[name]), abs=1e-12)
    assert features["cart_value"].status == "alert" and features["os"].status == "ok"


def test_thresholds_per_feature(tmp_path):
    training, serving = _frame(seed=0), _frame(seed=1)
    serving["cart_value"] = serving["cart_value"] * 1.6
    default = _by_name(_run(tmp_path, training, serving))["cart_value"]
    assert default.status == "alert" and default.thresholds == (0.1, 0.2)
    relaxed = _by_name(_run(tmp_path, training, serving,
                            distribution=DistributionSettings(thresholds={"cart_value": (0.5, 0.9)})))["cart_value"]
    assert relaxed.status == "ok" and relaxed.distribution_score == default.distribution_score


def test_schema_environments_and_types():
    training = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("n", pa.int64()), ("c", pa.string()),
                          ("label", pa.int8())])
    serving = pa.schema([("id", pa.int64()), ("x", pa.string()), ("n", pa.float64()), ("c", pa.string()),
                         ("score", pa.float64()), ("ts", pa.timestamp("us"))])
    kinds = {"x": "numeric", "n": "numeric", "c": "categorical", "label": "numeric"}
    issues = {(i.column, i.issue): i.severity for i in column_issues(training, serving, kinds, ("label",), ("ts",))}
    assert issues == {("x", "retyped"): "alert", ("n", "type_changed"): "info", ("score", "extra"): "info"}


@pytest.mark.realdata
@pytest.mark.skipif(not CRITEO.exists(), reason="../shared/data/criteo is absent")
def test_criteo_train_head_against_test_head():
    """Day 1 of Criteo's training period (train head) against day 8 (test head): real data through
    distribution and schema skew; the scores agree with scipy and pandas on the same rows."""
    train_path = CRITEO / "criteo_kaggle_train_head_wsproject.csv"
    test_path = CRITEO / "criteo_kaggle_test_head_wsproject.csv"
    check = SkewCheck(key="Id", serving_absent=("label",), distribution=DistributionSettings(min_samples=500))
    report = check.run(Source(train_path), Source(test_path))
    train, test = pd.read_csv(train_path), pd.read_csv(test_path)
    features = _by_name(report)
    assert set(features) == {f"I{i}" for i in range(1, 14)} | {f"C{i}" for i in range(1, 27)}
    scored = 0
    for name, f in features.items():
        if f.distribution_score is None:
            continue
        scored += 1
        if name.startswith("I"):
            assert f.method == "jensenshannon" and 0 <= f.distribution_score <= math.sqrt(math.log(2))
            oracle = _decile_js(train[name].to_numpy(np.float64), test[name].to_numpy(np.float64))
        else:
            assert f.method == "linf" and 0 <= f.distribution_score <= 1
            oracle = _linf(train[name], test[name])  # empty cells are missing, as Criteo documents
        assert f.distribution_score == pytest.approx(oracle, abs=1e-9), name
    assert scored >= 35
    # The label is absent at serving by design; the test head's placeholder `Label` is only an extra column.
    issues = {(i.column, i.issue): i.severity for i in report.schema}
    assert ("label", "missing") not in issues and issues.get(("Label", "extra")) == "info"
    # Different days, different ids: nothing joins, and that is reported, not hidden.
    assert report.join.matched == 0 and report.join.serving_only == len(test) and report.join.status == "alert"
    # The same file against itself: no skew of any kind.
    same = check.run(Source(train_path), Source(train_path))
    assert all(f.distribution_score in (0.0, None) for f in same.features)
    assert same.join.compared == len(train) and not any(f.value_mismatches for f in same.features)
    assert same.status == "ok"
