"""Label profiles (core.label_profile): merge laws, the binned AUC against scikit-learn within its
stated bound, calibration sums exactly those of the rows, and hourly slices through the runner."""

from __future__ import annotations

import itertools
import json
import math
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from labelsim import simulate, table
from sklearn.metrics import roc_auc_score

from checks import metrics, profile_metrics
from checks.calibration import CalibrationCheck
from checks.labelled import Rows, Segment
from core.errors import SchemaError
from core.label_profile import (
    LabelProfile,
    LabelSpec,
    check_columns,
    profile_label_batch,
    profile_label_batches,
)

SPEC = LabelSpec("score", "click", ("os", "offer_id"), (("offer_id", "os"),))


def _same(a: LabelProfile, b: LabelProfile) -> None:
    """Equal: exactly in every count, histogram count and sum p; float sums to rounding."""
    assert (a.rows, a.dropped, a.min_score, a.max_score) == (b.rows, b.dropped, b.min_score, b.max_score)
    assert set(a.tables) == set(b.tables)
    for name, mine in a.tables.items():
        theirs = b.tables[name]
        order = [theirs.values.index(v) for v in mine.values]
        assert sorted(mine.values, key=str) == sorted(theirs.values, key=str)
        assert [mine.exact_p[i] for i in range(len(mine.values))] == [theirs.exact_p[j] for j in order]
        np.testing.assert_array_equal(mine.sums[:, :2], theirs.sums[order, :2])  # rows and clicks
        np.testing.assert_allclose(mine.sums, theirs.sums[order], rtol=1e-12)
        if mine.hist_keys is not None:
            for i, j in enumerate(order):
                x, y = mine.stats([i]).hist, theirs.stats([j]).hist
                np.testing.assert_array_equal(x[:, [0, 1, 3, 4]], y[:, [0, 1, 3, 4]])
                np.testing.assert_allclose(x[:, 2], y[:, 2], rtol=1e-12)


@pytest.fixture(scope="module")
def data():
    return table(simulate(60_000, seed=3, ctr=0.03))


@pytest.mark.parametrize("seed", range(4))
def test_partitions_merged_in_any_order_equal_the_whole(data, seed):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, data.num_rows), size=7, replace=False))
    parts = [profile_label_batch(data.slice(a, b - a), SPEC) for a, b in zip(np.r_[0, cuts], np.r_[cuts, data.num_rows])]
    whole = profile_label_batch(data, SPEC)
    order = rng.permutation(len(parts))
    merged = parts[order[0]]
    for i in order[1:]:
        merged = merged.merge(parts[i])
    _same(merged, whole)
    # associativity: a tree of merges gives the same profile
    tree = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3])).merge(parts[4].merge(parts[5].merge(parts[6])))
    _same(tree.merge(parts[7]), whole)
    # and a stored (JSON) profile is the same profile
    _same(LabelProfile.from_dict(json.loads(json.dumps(merged.to_dict()))), whole)


def test_calibration_ratio_and_garwood_interval_equal_the_rows_exactly(data):
    parts = profile_label_batches(data.to_batches(max_chunksize=3_001), SPEC)
    scores, labels = data["score"].to_numpy(), data["click"].to_numpy().astype(float)
    overall = parts.overall()
    assert overall.predicted == math.fsum(scores) and overall.positives == labels.sum()
    result = CalibrationCheck(segments=("os",)).fit(None).evaluate(parts)
    row = result.details["overall"]
    low, high = metrics.poisson_interval(labels.sum(), 0.05)
    assert row["calibration_ratio"] == math.fsum(scores) / labels.sum()
    assert (row["ci_low"], row["ci_high"]) == (math.fsum(scores) / high, math.fsum(scores) / low)
    android = next(s for s in result.details["segments"] if s["value"] == "android")
    mask = data["os"].to_numpy(zero_copy_only=False) == "android"
    assert android["calibration_ratio"] == math.fsum(scores[mask]) / labels[mask].sum()
    assert android["brier"] == pytest.approx(metrics.brier(labels[mask], scores[mask]), rel=1e-12)


def _scores(kind: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if kind == "ctr":  # a few percent, log-normal-ish
        p = 1 / (1 + np.exp(-(rng.normal(-3.5, 1.0, n))))
    elif kind == "narrow":  # every score within 0.010-0.012: the hardest case for fixed bins
        p = rng.uniform(0.010, 0.012, n)
    elif kind == "ties":  # a handful of distinct scores
        p = rng.choice([0.01, 0.02, 0.05, 0.2, 0.5], n)
    elif kind == "rounded":  # scores logged with 3 decimals
        p = np.round(rng.beta(0.5, 8.0, n), 3)
    elif kind == "extreme":  # 0, 1 and values beyond the logit grid (sharing its end bins)
        p = rng.choice([0.0, 1e-9, 1e-3, 0.5, 1 - 1e-9, 1.0], n)
    else:  # "uniform"
        p = rng.random(n)
    y = (rng.random(n) < np.clip(p * 1.5, 0, 1)).astype(float)
    return p, y


@pytest.mark.parametrize("kind", ["ctr", "narrow", "ties", "rounded", "extreme", "uniform"])
@pytest.mark.parametrize("n", [2, 7, 50, 5_000, 200_000])
def test_binned_auc_is_within_its_bound_of_sklearn(kind, n):
    rng = np.random.default_rng(n)
    p, y = _scores(kind, n, rng)
    y[0], y[-1] = 0.0, 1.0  # both classes
    stats = profile_label_batch(pa.table({"score": p, "click": y}), LabelSpec("score", "click")).overall()
    auc, bound, se = profile_metrics.auc_of(stats)
    exact = roc_auc_score(y, p)
    assert abs(auc - exact) <= bound + 1e-12
    if kind == "ties":  # each bin holds one distinct score: no approximation, and the bound says so
        assert auc == pytest.approx(exact, abs=1e-12) and bound == 0
        if n >= 50:
            assert se == pytest.approx(metrics.auc_se_delong(y, p), rel=1e-9)
    if n >= 5_000 and kind != "narrow":
        assert bound < 1e-3 and abs(auc - exact) < 1e-4
    if kind == "narrow" and n >= 5_000:  # the bound says how good it is; the error itself is far smaller
        assert abs(auc - exact) < 1e-3


def test_one_class_window_has_no_auc_and_empty_profiles_merge():
    stats = profile_label_batch(pa.table({"score": [0.1, 0.2], "click": [0, 0]}), LabelSpec("score", "click")).overall()
    assert profile_metrics.auc_of(stats)[0] is None
    empty = LabelProfile(SPEC)
    assert empty.merge(empty).count == 0 and profile_metrics.reliability(empty.overall())["ece"] is None


def test_bad_labels_scores_and_columns_are_named():
    spec = LabelSpec("score", "click")
    with pytest.raises(SchemaError, match="label column 'click' must hold 0/1, found 2"):
        profile_label_batch(pa.table({"score": [0.1, 0.2], "click": [0, 2]}), spec).validate("w.parquet")
    with pytest.raises(SchemaError, match="prediction column 'score' has values outside"):
        profile_label_batch(pa.table({"score": [0.1, 1.5], "click": [0, 1]}), spec).validate("w.parquet")
    with pytest.raises(SchemaError, match="w.parquet: segment column 'os' is missing"):
        check_columns(pa.schema([("score", pa.float64()), ("click", pa.int8())]),
                      LabelSpec("score", "click", ("os",)), "w.parquet")
    nulls = profile_label_batch(pa.table({"score": [0.1, None, 0.3], "click": [1, 0, None]}), spec)
    assert nulls.dropped == 2 and nulls.count == 1


def test_distinct_values_are_bounded_and_the_rest_fold_into_other():
    spec = LabelSpec("score", "click", ("user",), max_values=10)
    n = 2_000
    batch = pa.table({"score": np.full(n, 0.1), "click": np.arange(n) % 2,
                      "user": [f"u{i % 50 if i < 1000 else 0}" for i in range(n)]})
    profile = profile_label_batch(batch, spec)
    table_ = profile.table("user")
    assert len(table_.values) == 10 and "(other)" in table_.values and table_.folded == 41
    assert table_.sums[:, 0].sum() == n and sum(table_.exact_p) == profile.overall().exact_p
    assert table_.values[0] == "u0"


def test_rows_and_profile_give_the_same_calibration_result(data):
    """A check handed rows profiles them: the same result as from the engine's profile."""
    from checks.labelled import profile_of

    profile = profile_label_batch(data, LabelSpec("score", "click", ("os",)))
    codes = {v: i for i, v in enumerate(("android", "ios", "windows"))}
    rows = Rows(data["score"].to_numpy(), data["click"].to_numpy().astype(float),
                {"os": Segment(np.array([codes[v] for v in data["os"].to_pylist()]), tuple(codes))})
    check = CalibrationCheck(segments=("os",))
    a, b = check.fit(None).evaluate(rows).to_dict(), check.fit(None).evaluate(profile).to_dict()
    assert a == b
    assert profile_of(rows, ("os",)).overall().exact_p == profile.overall().exact_p


# ------------------------------------------------------------------ through the runner


LABEL_CHECKS = ["calibration", "performance", "concept_drift"]


def _run(raw, small_world, tmp_path, name, granularity, start, end):
    from monitor.config import parse_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    raw = json.loads(json.dumps(raw))
    raw["models"][0]["profile_granularity"] = granularity
    raw["store"]["url"] = f"sqlite:///{tmp_path / name}.db"
    config = parse_config(raw, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    try:
        runner = ModelRunner(config, config.models[0], store, clock=lambda: end + timedelta(days=2))
        results = {r.check: r for r in runner.run(start, end, LABEL_CHECKS)}
        segments = ("os", "offer_id", "slot")  # one profile serves all three checks: their segments and pairs
        shared = LabelSpec("score", "click", segments, tuple(itertools.combinations(segments, 2)))
        slices = store.load_profile(config.models[0].name, "labels", start, start + timedelta(hours=1), shared.key())
        return results, slices
    finally:
        store.close()


def test_hourly_label_slices_merged_give_the_window_computed_at_once(demo_raw_config, small_world, tmp_path):
    start = small_world.serving_start + timedelta(days=2)
    end = start + timedelta(days=1)
    hourly, stored = _run(demo_raw_config, small_world, tmp_path, "hourly", "1h", start, end)
    whole, none = _run(demo_raw_config, small_world, tmp_path, "whole", None, start, end)
    assert stored is not None and none is None  # slices are stored only with a granularity
    for check in LABEL_CHECKS:
        a, b = hourly[check], whole[check]
        assert a.status == b.status and a.status not in ("error", "pending"), a.details
        assert a.current_rows == b.current_rows > 0
        _close(a.details, b.details)


def _close(a, b, path="") -> None:
    """Equal JSON, floats to 1e-9 relative (float sums added in another order)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isfinite(a):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path
