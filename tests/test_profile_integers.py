"""Integer columns of few distinct values are profiled from their value counts: the same profile
as the values one by one (the float path), m2 up to rounding."""

import math

import numpy as np
import pyarrow as pa
import pytest

from core.profile import NumericProfile, edges_from_sample
from core.sketch import QuantileSketch


def _assert_same(fast: NumericProfile, slow: NumericProfile) -> None:
    assert (fast.rows, fast.null_count, fast.nan_count, fast.inf_count, fast.count) == \
        (slow.rows, slow.null_count, slow.nan_count, slow.inf_count, slow.count)
    assert (fast.min, fast.max, fast.mean) == (slow.min, slow.max, slow.mean)
    assert math.isclose(fast.m2, slow.m2, rel_tol=1e-12, abs_tol=1e-9)
    assert np.array_equal(fast.bin_counts, slow.bin_counts) and np.array_equal(fast.bin_sums, slow.bin_sums)
    assert fast.sketch == slow.sketch


@pytest.mark.parametrize("arrow_type", [pa.int64(), pa.int32(), pa.int16(), pa.int8()])
@pytest.mark.parametrize("spread", [1, 5, 60, 4000])
def test_integer_counts_path_matches_the_value_path(arrow_type, spread):
    rng = np.random.default_rng(spread)
    size = 20_000
    bound = min(spread, np.iinfo(arrow_type.to_pandas_dtype()).max)
    values = rng.integers(-bound, bound + 1, size)
    values[:50] = 0
    mask = rng.random(size) < 0.02
    array = pa.array(values, type=arrow_type, mask=mask)
    edges = edges_from_sample(values[:3000].astype(np.float64), 20) + (0.5, 2.0, 2.5)  # some edges on values
    edges = tuple(sorted(set(edges) | {float(values[7])}))
    fast = NumericProfile.from_array(array, edges)
    slow = NumericProfile.from_array(array.cast(pa.float64()), edges)
    assert fast.count == size - int(mask.sum())
    _assert_same(fast, slow)


def test_wide_integer_ranges_take_the_value_path():
    values = np.arange(0, 10_000_000, 997, dtype=np.int64)  # range far above the count
    array = pa.array(values)
    _assert_same(NumericProfile.from_array(array, (5e5, 5e6)), NumericProfile.from_array(array.cast(pa.float64()),
                                                                                          (5e5, 5e6)))


def test_sketch_from_counts_equals_sketch_of_repeated_values():
    rng = np.random.default_rng(3)
    values = np.unique(np.concatenate([rng.normal(0, 100, 500).round(), [0.0, 1e-13, -1e-13, 1e-12, -1e-12]]))
    counts = rng.integers(1, 50, values.size)
    assert QuantileSketch.from_counts(values, counts) == QuantileSketch.from_values(np.repeat(values, counts))
