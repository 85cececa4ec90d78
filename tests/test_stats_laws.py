"""Laws every distance in checks.stats must obey, whatever the counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks import stats

COUNT_METHODS = {
    "psi": stats.psi,
    "jensenshannon": stats.jensen_shannon,
    "linf": stats.l_infinity,
}

# Float noise allowed on top of an exact bound.
EPS = 1e-12

counts = st.integers(min_value=0, max_value=10**6)


@st.composite
def histogram_pairs(draw, max_bins=40):
    """Two non-empty histograms over the same bins, empty bins included."""
    n_bins = draw(st.integers(min_value=1, max_value=max_bins))
    ref = draw(st.lists(counts, min_size=n_bins, max_size=n_bins))
    cur = draw(st.lists(counts, min_size=n_bins, max_size=n_bins))
    assume(sum(ref) > 0 and sum(cur) > 0)
    return np.array(ref), np.array(cur)


@st.composite
def point_sets(draw, max_points=30):
    n = draw(st.integers(min_value=1, max_value=max_points))
    points = draw(
        st.lists(
            st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
            min_size=n,
            max_size=n,
        )
    )
    weights = draw(st.lists(st.integers(min_value=1, max_value=10**4), min_size=n, max_size=n))
    return np.array(points), np.array(weights, dtype=float)


stds = st.floats(min_value=0.1, max_value=100.0)


@pytest.mark.parametrize("method", list(COUNT_METHODS))
@given(pair=histogram_pairs())
def test_identical_counts_give_zero(method, pair):
    ref, _ = pair
    assert COUNT_METHODS[method](ref, ref) == pytest.approx(0.0, abs=EPS)


@pytest.mark.parametrize("method", list(COUNT_METHODS))
@given(pair=histogram_pairs(), factor=st.integers(min_value=2, max_value=1000))
def test_only_shares_matter(method, pair, factor):
    ref, cur = pair
    fn = COUNT_METHODS[method]
    assert fn(ref * factor, cur) == pytest.approx(fn(ref, cur), rel=1e-9, abs=EPS)


@pytest.mark.parametrize("method", list(COUNT_METHODS))
@given(pair=histogram_pairs())
def test_scores_are_non_negative(method, pair):
    assert COUNT_METHODS[method](*pair) >= -EPS


@pytest.mark.parametrize("method", list(COUNT_METHODS))
@given(pair=histogram_pairs())
def test_symmetric(method, pair):
    ref, cur = pair
    fn = COUNT_METHODS[method]
    assert fn(ref, cur) == pytest.approx(fn(cur, ref), rel=1e-9, abs=EPS)


@given(pair=histogram_pairs())
def test_jensen_shannon_bounded_by_sqrt_ln2(pair):
    assert stats.jensen_shannon(*pair) <= math.sqrt(math.log(2)) + EPS


def test_jensen_shannon_reaches_its_bound_on_disjoint_support():
    assert stats.jensen_shannon([5, 0], [0, 7]) == pytest.approx(math.sqrt(math.log(2)))


@given(pair=histogram_pairs())
def test_l_infinity_bounded_by_one(pair):
    assert stats.l_infinity(*pair) <= 1.0 + EPS


@given(points=point_sets(), std=stds)
def test_wasserstein_of_identical_sets_is_zero(points, std):
    x, w = points
    assert stats.wasserstein_normalized(x, w, x, w * 3, std) == pytest.approx(0.0, abs=EPS)


@given(points=point_sets(), std=stds, shift=st.floats(min_value=-100, max_value=100))
@settings(max_examples=200)
def test_wasserstein_of_shifted_set_is_shift_over_std(points, std, shift):
    x, w = points
    # Shifting in floating point rounds each point by up to half an ulp of its magnitude.
    rounding = 4 * np.spacing(np.abs(x).max() + abs(shift)) / std
    got = stats.wasserstein_normalized(x, w, x + shift, w, std)
    assert got == pytest.approx(abs(shift) / std, rel=1e-9, abs=rounding + EPS)


@given(a=point_sets(), b=point_sets(), std=stds)
def test_wasserstein_non_negative_and_symmetric(a, b, std):
    forward = stats.wasserstein_normalized(*a, *b, std)
    backward = stats.wasserstein_normalized(*b, *a, std)
    assert forward >= 0
    assert forward == pytest.approx(backward, rel=1e-9, abs=EPS)
