"""The profile kernel's table look-up of sketch keys gives exactly the keys of the logarithm formula."""

import numpy as np
import pytest

from core import sketch
from core.numeric_kernel import numeric_state
from core.sketch import QuantileSketch, _log_keys


def _kernel_buckets(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) of the positive values' sketch as the profile kernel counts it (table look-ups)."""
    found = numeric_state(np.ascontiguousarray(values, np.float64), ()).sketch
    return found.positive_keys, found.positive_counts


def _log_buckets(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(_log_keys(values).copy(), return_counts=True)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _boundary_values(first_key: int, last_key: int, step: int = 1) -> np.ndarray:
    """Values at and within a few ulps of the bucket boundaries gamma**k, where a key can flip."""
    keys = np.arange(first_key, last_key + 1, step, dtype=np.float64)
    with np.errstate(over="ignore"):
        centres = [np.exp(keys * sketch._SKETCH_LOG_GAMMA), sketch._SKETCH_GAMMA ** keys]
    values = []
    for centre in centres:
        centre = centre[np.isfinite(centre) & (centre > 0)]
        values.append(centre)
        up = down = centre
        for _ in range(4):
            up, down = np.nextafter(up, np.inf), np.nextafter(down, 0)
            values += [up, down]
    values = np.concatenate(values)
    return values[np.isfinite(values) & (values >= sketch._SKETCH_MIN_MAGNITUDE)]


def _cell_edges(values: np.ndarray) -> np.ndarray:
    """The first and last double of each value's table cell, and their neighbours."""
    cells = values.view(np.int64) >> sketch._CELL_SHIFT
    bits = np.concatenate([cells << sketch._CELL_SHIFT, ((cells + 1) << sketch._CELL_SHIFT) - 1])
    bits = np.concatenate([bits - 1, bits, bits + 1])
    edges = bits.view(np.float64)
    return edges[np.isfinite(edges) & (edges >= sketch._SKETCH_MIN_MAGNITUDE)]


@pytest.mark.parametrize("low_exp, high_exp", [(-12, 12), (-3, 6), (0, 1), (-12, 40)])
def test_table_keys_equal_log_keys_near_every_boundary(low_exp, high_exp):
    rng = np.random.default_rng([low_exp + 100, high_exp + 100])
    first = int(np.floor(np.log(10.0 ** low_exp) / sketch._SKETCH_LOG_GAMMA))
    last = int(np.ceil(np.log(10.0 ** high_exp) / sketch._SKETCH_LOG_GAMMA))
    values = np.concatenate([
        _boundary_values(first, last),
        10.0 ** rng.uniform(low_exp, high_exp, 200_000),
        np.float64(10.0 ** low_exp) * (1 + rng.integers(0, 1000, 1000)),  # integers and their multiples
    ])
    values = values[(values >= max(10.0 ** low_exp, sketch._SKETCH_MIN_MAGNITUDE)) & (values <= 10.0 ** high_exp)]
    values = np.concatenate([values, _cell_edges(values[:5000])])
    low, high = float(values.min()), float(values.max())
    assert sketch._table_for(int(np.float64(low).view(np.int64)) >> sketch._CELL_SHIFT,
                             int(np.float64(high).view(np.int64)) >> sketch._CELL_SHIFT) is not None  # the table path
    assert _same(_kernel_buckets(values), _log_buckets(values))


def test_most_cells_need_no_logarithm():
    start, table = sketch._table_for(sketch._MIN_CELL, sketch._MIN_CELL + 10 * sketch._OCTAVE_CELLS)
    assert np.mean(table == sketch._UNSAFE) < 0.05


def test_huge_ranges_fall_back_to_the_logarithm():
    values = np.array([1e-12, 1.0, 1e150, 1e300, np.finfo(np.float64).max, 2.2250738585072014e-308])
    values = values[values >= sketch._SKETCH_MIN_MAGNITUDE]
    assert _same(_kernel_buckets(values), _log_buckets(values))
    extreme = _boundary_values(60_000, 70_900, 7)
    assert _same(_kernel_buckets(extreme), _log_buckets(extreme))


def test_sketches_of_signed_values_with_zeros_and_tiny_magnitudes():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(0, 1e3, 50_000), [0.0, -0.0, 1e-13, -1e-13, 1e-12, -1e-12, 5e-324, -5e-324],
                             -_boundary_values(-50, 50), _boundary_values(-50, 50)])
    sketch_ = QuantileSketch.from_values(values)
    positive, negative = values[values >= 1e-12], -values[values <= -1e-12]
    for keys, counts, magnitudes in ((sketch_.positive_keys, sketch_.positive_counts, positive),
                                     (sketch_.negative_keys, sketch_.negative_counts, negative)):
        expected_keys, expected_counts = np.unique(_log_keys(magnitudes), return_counts=True)
        assert np.array_equal(keys, expected_keys) and np.array_equal(counts, expected_counts)
    assert sketch_.zero == int(np.count_nonzero(np.abs(values) < 1e-12))
