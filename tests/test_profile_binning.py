"""The bit binner (positive edges: a table over the doubles' top bits) bins exactly as searchsorted."""

import numpy as np
import pytest

from core.numeric_kernel import BITS, GRID, Binner

MAX = np.finfo(np.float64).max
TINY = np.finfo(np.float64).smallest_subnormal


def _near(values: np.ndarray, steps: int = 3) -> np.ndarray:
    out, up, down = [values], values, values
    for _ in range(steps):
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
        out += [up, down]
    return np.concatenate(out)


@pytest.mark.parametrize("edges", [
    np.quantile(np.random.default_rng(1).lognormal(1, 2, 5000), np.linspace(0, 1, 101)[1:-1]),  # many octaves
    np.linspace(10, 10.001, 50),  # crowded within one octave
    np.array([TINY, 2 * TINY, 1e-300, 1e-5, 1.0, 1e300, MAX]),  # the whole positive range
    np.array([1.0, np.nextafter(1.0, 2), np.nextafter(np.nextafter(1.0, 2), 2)]),  # adjacent doubles
    np.array([0.5]),  # a single edge
    np.arange(1, 64, dtype=np.float64),  # integers: values on edges
])
def test_bit_binner_equals_searchsorted(edges):
    edges = np.unique(edges)
    binner = Binner(tuple(edges))
    assert binner.mode == BITS
    rng = np.random.default_rng(edges.size)
    with np.errstate(over="ignore"):  # neighbours of the largest double, and exp beyond it, are inf (dropped)
        values = np.concatenate([
            _near(edges),
            rng.uniform(-min(2 * edges[-1], 1e300), min(2 * edges[-1], 1e300), 5000),
            rng.lognormal(0, 5, 5000), -rng.lognormal(0, 5, 5000),
            np.exp(rng.uniform(np.log(edges[0]) - 1, np.log(edges[-1]) + 1, 5000)),
            [0.0, -0.0, TINY, -TINY, MAX, -MAX],
        ])
    values = values[np.isfinite(values)]
    expected = np.searchsorted(edges, values, side="right")
    assert np.array_equal(binner(values), expected)
    assert np.array_equal(binner(values[::3]), expected[::3])  # a strided view


def test_edges_at_or_below_zero_use_the_grid():
    assert Binner((-1.0, 0.5, 2.0)).mode == GRID and Binner((0.0, 1.0)).mode == GRID
