"""Laws of the profile kernel (core.profile), checked with Hypothesis.

- merge(profile(a), profile(b)) == profile(a ++ b): counts, histograms, categorical counts
  and sketch buckets exactly; mean, m2 and bin sums within float tolerance;
- merge is associative and commutative, and the empty profile is its identity;
- identical data drifts by exactly 0 with status ok; every score is within its bounds;
- to_dict -> JSON -> from_dict gives back an equal profile;
- the sketch's quantiles are within its relative accuracy of numpy's;
- histograms equal searchsorted's binning, dictionary-encoded strings profile like plain ones.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.drift import CATEGORICAL_METHODS, NUMERIC_METHODS, compare_tables
from core.profile import (
    SKETCH_RELATIVE_ACCURACY,
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
    QuantileSketch,
    build_spec,
    empty_profile,
    profile_batch,
    profile_table,
)

LAWS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOAT_REL = 1e-9  # relative to the data's scale, for sums and moments that depend on the order of addition
EPS = 1e-12

# --------------------------------------------------------------------------- strategies

SPECIALS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-13, -1e-13]
mixed_floats = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.sampled_from(SPECIALS), st.none()
)
positive_floats = st.floats(1e-6, 1e6)  # no nulls, all finite and positive: the kernel's fast paths
negative_floats = st.one_of(st.floats(-1e6, -1e-6), st.none())
float32s = st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([math.nan, math.inf]), st.none())
ints = st.one_of(st.integers(-1000, 1000), st.none())
words = st.one_of(st.sampled_from(["a", "b", "c", "ad", "é", ""]), st.text(max_size=2), st.none())
flags = st.one_of(st.booleans(), st.none())


@st.composite
def tables(draw, min_rows: int = 0, max_rows: int = 60) -> pa.Table:
    """Numeric (NaN, ±inf, nulls, ints, float32) and categorical (strings, dictionary, bool; nulls) columns."""
    n = draw(st.integers(min_rows, max_rows))

    def column(values):
        return draw(st.lists(values, min_size=n, max_size=n))

    return pa.table({
        "x": pa.array(column(mixed_floats), pa.float64()),
        "pos": pa.array(column(positive_floats), pa.float64()),
        "neg": pa.array(column(negative_floats), pa.float64()),
        "f32": pa.array(column(float32s), pa.float32()),
        "i": pa.array(column(ints), pa.int64()),
        "c": pa.array(column(words), pa.string()),
        "d": pa.array(column(words), pa.string()).dictionary_encode(),
        "b": pa.array(column(flags), pa.bool_()),
    })


@st.composite
def table_and_spec(draw, min_rows: int = 0, max_rows: int = 60):
    table = draw(tables(min_rows, max_rows))
    # Edges come from the table itself or from another sample of the same columns.
    sample = table if draw(st.booleans()) else draw(tables(1, 30))
    return table, build_spec(sample, n_bins=draw(st.integers(1, 12)))


def splits(n: int, parts: int):
    """Sorted cut points splitting n rows into `parts` (possibly empty) pieces."""
    return st.lists(st.integers(0, n), min_size=parts - 1, max_size=parts - 1).map(sorted)


def pieces(table: pa.Table, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *cuts, table.num_rows]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


# --------------------------------------------------------------------------- equality


def _scale(profile: NumericProfile) -> float:
    """The magnitude of the data behind a numeric profile, for tolerances."""
    if profile.count == 0:
        return 1.0
    return max(1.0, abs(profile.min), abs(profile.max))


def assert_numeric_equal(left: NumericProfile, right: NumericProfile, exact: bool = False) -> None:
    assert tuple(left.edges) == tuple(right.edges)
    for name in ("rows", "null_count", "nan_count", "inf_count", "count"):
        assert getattr(left, name) == getattr(right, name), name
    assert np.array_equal(left.bin_counts, right.bin_counts)
    assert left.bin_counts.dtype == right.bin_counts.dtype == np.int64
    assert left.sketch.positive == right.sketch.positive
    assert left.sketch.negative == right.sketch.negative
    assert left.sketch.zero == right.sketch.zero
    assert left.min == right.min and left.max == right.max
    if exact:
        assert left.mean == right.mean and left.m2 == right.m2
        assert np.array_equal(left.bin_sums, right.bin_sums)
        return
    scale, n = _scale(left), max(left.count, 1)
    assert math.isclose(left.mean, right.mean, rel_tol=FLOAT_REL, abs_tol=FLOAT_REL * scale)
    assert math.isclose(left.m2, right.m2, rel_tol=FLOAT_REL, abs_tol=FLOAT_REL * n * scale * scale)
    np.testing.assert_allclose(left.bin_sums, right.bin_sums, rtol=FLOAT_REL, atol=FLOAT_REL * n * scale)


def assert_categorical_equal(left: CategoricalProfile, right: CategoricalProfile) -> None:
    assert (left.rows, left.null_count, left.other_count, left.max_categories) == (
        right.rows, right.null_count, right.other_count, right.max_categories
    )
    assert left.counts == right.counts


def assert_profiles_equal(left: DatasetProfile, right: DatasetProfile, exact: bool = False) -> None:
    assert left.spec == right.spec
    assert left.rows == right.rows
    assert set(left.features) == set(right.features)
    for name, mine in left.features.items():
        theirs = right.features[name]
        assert type(mine) is type(theirs), name
        if isinstance(mine, NumericProfile):
            assert_numeric_equal(mine, theirs, exact)
        elif isinstance(mine, CategoricalProfile):
            assert_categorical_equal(mine, theirs)
        else:
            assert mine.to_dict() == theirs.to_dict()


# --------------------------------------------------------------------------- merge laws


@LAWS
@given(table_and_spec(), st.data())
def test_merge_of_parts_is_profile_of_whole(case, data):
    table, spec = case
    cuts = data.draw(splits(table.num_rows, data.draw(st.integers(2, 4))))
    merged = empty_profile(spec)
    for piece in pieces(table, cuts):
        merged = merged.merge(profile_table(piece, spec))
    whole = profile_batch(table, spec)
    assert_profiles_equal(merged, whole)
    # Batching inside the kernel (threads, small batches) is the same law.
    batch_rows = data.draw(st.integers(1, 16))
    assert_profiles_equal(profile_table(table, spec, batch_rows=batch_rows), whole)


@LAWS
@given(table_and_spec(), st.data())
def test_merge_is_associative_and_commutative(case, data):
    table, spec = case
    a, b, c = (profile_table(piece, spec) for piece in pieces(table, data.draw(splits(table.num_rows, 3))))
    assert_profiles_equal(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert_profiles_equal(a.merge(b), b.merge(a))
    assert_profiles_equal(a.merge(c).merge(b), c.merge(b.merge(a)))


@LAWS
@given(table_and_spec())
def test_empty_profile_is_the_identity(case):
    table, spec = case
    profile = profile_table(table, spec)
    empty = empty_profile(spec)
    assert_profiles_equal(profile.merge(empty), profile, exact=True)
    assert_profiles_equal(empty.merge(profile), profile)
    assert_profiles_equal(profile_table(table.slice(0, 0), spec), empty, exact=True)


@LAWS
@given(table_and_spec())
def test_counts_add_up(case):
    table, spec = case
    profile = profile_table(table, spec)
    assert profile.rows == table.num_rows
    for name, feature in profile.features.items():
        column = table.column(name)
        assert feature.rows == table.num_rows
        assert feature.null_count == column.null_count
        if isinstance(feature, NumericProfile):
            assert feature.count + feature.nan_count + feature.inf_count + feature.null_count == feature.rows
            assert int(feature.bin_counts.sum()) == feature.count == feature.sketch.count
        else:
            assert sum(feature.counts.values()) + feature.other_count == feature.count


@LAWS
@given(tables(0, 60), st.integers(1, 4), st.data())
def test_bounded_categories_fold_into_other(table, max_categories, data):
    """With a bound on distinct values, merging stays within it and conserves the counts."""
    spec = build_spec(table, ["c", "d"], max_categories=max_categories)
    cuts = data.draw(splits(table.num_rows, 3))
    merged = empty_profile(spec)
    for piece in pieces(table, cuts):
        merged = merged.merge(profile_table(piece, spec))
    whole = profile_batch(table, spec)
    for name in ("c", "d"):
        for feature in (merged.features[name], whole.features[name]):
            assert len(feature.counts) <= max_categories
            assert sum(feature.counts.values()) + feature.other_count == table.num_rows - table.column(name).null_count


# --------------------------------------------------------------------------- drift laws


def _methods(data, table: pa.Table) -> dict[str, str]:
    spec = build_spec(table)
    return {
        f.name: data.draw(st.sampled_from(NUMERIC_METHODS if f.kind == "numeric" else CATEGORICAL_METHODS))
        for f in spec.features
    }


@LAWS
@given(tables(1, 60), st.data())
def test_identical_data_has_zero_drift(table, data):
    methods = _methods(data, table)
    result = compare_tables(table, table, methods=methods, min_samples=1, numeric_bins=data.draw(st.integers(2, 12)))
    assert len(result.features) == table.num_columns
    for feature in result.features:
        if feature.current_count == 0:  # nothing but nulls/NaN: nothing to score
            assert feature.score is None and feature.status == "insufficient_data"
            continue
        assert feature.score == 0.0, (feature.feature, feature.method, feature.score)
        assert feature.status == "ok", (feature.feature, feature.reasons)
    assert result.status in ("ok", "insufficient_data")


@LAWS
@given(tables(1, 60), tables(1, 60), st.data())
def test_scores_are_within_their_bounds(reference, current, data):
    methods = _methods(data, reference)
    result = compare_tables(reference, current, methods=methods, min_samples=1)
    for feature in result.features:
        if feature.score is None:
            assert feature.status in ("insufficient_data", "error", "warn", "alert")
            continue
        assert feature.score >= 0.0, feature
        if feature.method == "jensenshannon":
            assert feature.score <= math.sqrt(math.log(2)) + EPS, feature
        elif feature.method == "linf":
            assert feature.score <= 1.0 + EPS, feature
        elif feature.method == "psi":
            assert math.isfinite(feature.score), feature


# --------------------------------------------------------------------------- serialisation


@LAWS
@given(table_and_spec(), st.data())
def test_json_round_trip(case, data):
    table, spec = case
    profile = profile_table(table, spec)
    if data.draw(st.booleans()):  # merged profiles serialise too
        profile = profile.merge(profile_table(table.slice(0, table.num_rows // 2), spec))
    text = json.dumps(profile.to_dict(), allow_nan=False)
    restored = DatasetProfile.from_dict(json.loads(text))
    assert_profiles_equal(restored, profile, exact=True)
    assert restored.to_dict() == profile.to_dict()


# --------------------------------------------------------------------------- sketch and histogram


@LAWS
@given(
    st.lists(st.floats(1e-9, 1e9), min_size=1, max_size=300),
    st.lists(st.floats(0, 1), min_size=1, max_size=8),
)
def test_sketch_quantiles_are_within_relative_accuracy(values, qs):
    data = np.asarray(values, dtype=np.float64)
    sketch = QuantileSketch.from_values(data)
    assert sketch.count == data.size
    ordered = np.sort(data)
    for q in [0.0, 0.5, 1.0, *qs]:
        estimate = sketch.quantile(q)
        # numpy's lower/higher quantiles bracket the rank; a rank within float noise of an
        # integer may round either way, so its neighbours are candidates too.
        lower = np.quantile(data, q, method="lower")
        higher = np.quantile(data, q, method="higher")
        rank = q * (data.size - 1)
        near = ordered[max(0, math.floor(rank - 1e-9)): min(data.size, math.ceil(rank + 1e-9) + 1)]
        candidates = np.concatenate([[lower, higher], near])
        errors = np.abs(estimate - candidates) / candidates
        assert errors.min() <= SKETCH_RELATIVE_ACCURACY * (1 + 1e-9), (q, estimate, lower, higher)


edge_values = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # m2 of values near 1e308 is inf
@LAWS
@given(
    st.lists(edge_values, min_size=0, max_size=12),
    st.lists(st.one_of(edge_values, st.floats(allow_nan=True, allow_infinity=True)), min_size=0, max_size=200),
    st.data(),
)
def test_histogram_is_searchsorted_binning(edges, values, data):
    """Bins follow [e_i, e_{i+1}) exactly, for crowded edges, values on edges and huge values alike."""
    edges = sorted(set(edges))
    if edges and data.draw(st.booleans()):  # crowd a few edges into one tiny interval
        base = edges[0]
        edges = sorted(set(edges + [float(np.nextafter(base, np.inf)), base + abs(base) * 1e-12 + 1e-300]))
    # Values on and right next to edges are where binning goes wrong.
    picks = [e for e in edges if data.draw(st.booleans())]
    values = values + picks + [float(np.nextafter(e, -np.inf)) for e in picks]
    table = pa.table({"v": pa.array(values, pa.float64())})
    spec = build_spec(table, {"v": "numeric"}, edges={"v": edges})
    profile = profile_table(table, spec).features["v"]
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="right")
    expected = np.bincount(bins, minlength=len(edges) + 1)
    assert np.array_equal(profile.bin_counts, expected)
    expected_sums = np.bincount(bins, weights=finite, minlength=len(edges) + 1)
    np.testing.assert_allclose(profile.bin_sums, expected_sums, rtol=1e-9, atol=1e-9)


@LAWS
@given(tables(0, 60))
def test_dictionary_strings_profile_like_plain_strings(table):
    plain = build_spec(table, {"c": "categorical"})
    encoded = table.select(["c"]).set_column(0, "c", table.column("c").dictionary_encode())
    assert_categorical_equal(
        profile_table(encoded, plain).features["c"], profile_table(table, plain).features["c"]
    )


@pytest.mark.parametrize("n_bins", [1, 10, 100])
def test_large_batches_match_reference_binning(n_bins):
    """The fast histogram path on realistic sizes and shapes (heavy tails, discrete, mixed signs)."""
    rng = np.random.default_rng(n_bins)
    columns = {
        "lognormal": rng.lognormal(1, 2, 50_000),
        "discrete": rng.poisson(3, 50_000).astype(np.float64),
        "cauchy": rng.standard_cauchy(50_000),
        "clustered": np.concatenate([rng.normal(0, 1e-9, 25_000), rng.normal(1e9, 1, 25_000)]),
    }
    table = pa.table(columns)
    spec = build_spec(table.slice(0, 10_000), n_bins=n_bins)
    profile = profile_table(table, spec, batch_rows=8192)
    for name, values in columns.items():
        feature = profile.features[name]
        expected = np.bincount(np.searchsorted(np.asarray(feature.edges), values, side="right"),
                               minlength=len(feature.edges) + 1)
        assert np.array_equal(feature.bin_counts, expected), name
