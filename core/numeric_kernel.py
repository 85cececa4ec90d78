"""The numeric profile of a column: compiled passes (core/kernel_passes.py) and their look-up tables.

numpy spent ~20 passes per column and batch (sum, min, max, deviations, squares, bit shifts,
table look-ups, masks, bincounts): 3.5 of the 6.0 CPU-s of profiling 10M rows x 30 features on
one thread. Here compiled loops do it in five: sum/min/max, squared deviations, the bin of each
value, counts and sums per bin, and the sketch's bucket counts (~1.6 CPU-s; each loop alone is
faster than one doing two jobs). The look-up tables are built once per feature: the binner's
(`Binner`) and the sketch's shared key table. The results equal the definitions: bins are
`np.searchsorted(edges, v, side="right")` exactly, bin sums add in row order as `np.bincount`
does, and every sketch key is bit-for-bit `_log_keys`'s (a value in a table cell that straddles
a bucket boundary, ~2% of them, is handed back and keyed with numpy's logarithm). Only the sum
and the squared deviations differ from numpy's, in rounding: numpy sums pairwise, this in
eight lanes (~1e-13 relative on a batch).

The passes are built ahead of time (core/kernel_build.py) or, failing that, just in time by numba.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from core.buffers import scratch
from core.kernel_build import load
from core.sketch import _CELL_SHIFT, _NO_COUNTS, _NO_KEYS, _SKETCH_LOG_GAMMA, _SKETCH_MIN_MAGNITUDE, _UNSAFE, \
    QuantileSketch, _log_keys, _table_for

# Binning modes (as core.kernel_passes): binary search, the table on the values' bits, the grid.
SEARCH, BITS, GRID = 0, 1, 2
_BIT_CELLS = 1 << 16  # cells of the bit binner (a 512 KiB table, as the grid's largest)
_GRID_MIN_VALUES = 4096  # below this many values a column is binned by binary search (no table set-up)
_NO_INTS = np.empty(0, np.int64)
_NO_FLOATS = np.empty(0, np.float64)
_NO_FLAGS = np.empty(0, np.bool_)


class Binner:
    """Look-up tables that bin a value as `np.searchsorted(edges, x, side="right")` in a few ns.

    Positive edges (most features: prices, durations, scores) use a table over the values'
    bits: a positive double's bits, read as an integer, grow with it, so runs of doubles with
    the same top bits are cells, as many as fit in `_BIT_CELLS` between the first and the last
    edge. A cell without an edge has one bin, searchsorted's at its two ends (binning is
    monotone); the cells below and above the edges, and every value <= 0 (its bits are below
    the first cell's as integers), are clipped to bin 0 and the last bin. Values in the few
    cells that hold an edge take a binary search.

    Other edges use a uniform grid of cells over [edges[0], edges[-1]]: the cell formula is
    monotone in x, so every edge whose own cell is below a value's cell is <= the value and
    every edge whose cell is above is > it. A cell holds at most one edge (the grid is refined
    until it does), so one comparison with that edge finishes the job; values in cells that
    still hold several edges (edges closer than 2**-16 of the span) take a binary search.
    """

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.kernel_args = _search_args(self.edges)
        if self.edges.size and self.edges[0] > 0 and math.isfinite(self.edges[-1]):
            self._bit_cells()
        elif self.edges.size >= 2:
            self._grid()

    @property
    def mode(self) -> int:
        return self.kernel_args[0]

    def _bit_cells(self) -> None:
        low, high = (int(b) for b in self.edges[[0, -1]].view(np.int64))
        shift = 1  # at least 1: a negative value's bits, shifted, minus the first cell cannot overflow
        while (high >> shift) - (low >> shift) >= _BIT_CELLS:
            shift += 1
        cells = np.arange(low >> shift, (high >> shift) + 1, dtype=np.int64)
        ends = np.stack([cells << shift, ((cells + 1) << shift) - 1]).view(np.float64)
        bins = np.searchsorted(self.edges, ends, side="right")
        table = np.concatenate(([0], np.where(bins[0] == bins[1], bins[0], -1), [self.edges.size])).astype(np.int64)
        self.kernel_args = (BITS, self.edges, table, shift, int(cells[0]) - 1, 0.0, 0.0, 0.0,
                            _NO_INTS, _NO_FLOATS, _NO_FLAGS)

    def _grid(self) -> None:
        low, span = float(self.edges[0]), float(self.edges[-1] - self.edges[0])
        if not (math.isfinite(span) and span > 0):
            return
        cells = 1 << max(10, (4 * self.edges.size - 1).bit_length())
        while True:
            scale, top = cells / span, cells - 1
            if not math.isfinite(scale):
                return
            with np.errstate(over="ignore", invalid="ignore"):  # as the kernel computes a value's cell
                edge_cells = np.clip((self.edges - low) * scale, 0, top).astype(np.int64)
            per_cell = np.bincount(edge_cells, minlength=cells)
            if per_cell.max() <= 1 or cells >= 1 << 16:
                break
            cells *= 4
        base = np.searchsorted(edge_cells, np.arange(cells), side="left").astype(np.int64)  # edges in lower cells
        self.kernel_args = (GRID, self.edges, _NO_INTS, 0, 0, low, scale, float(top), base,
                            np.append(self.edges, np.inf), per_cell > 1)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The bin of every finite value (a new array)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        bins = np.empty(values.size, np.intp)
        PASSES.bin_indices(values, values.view(np.int64), *self.kernel_args, bins)
        return bins


PASSES, PASSES_BUILD = load()  # the profile kernel's compiled passes, and which build they are


@functools.lru_cache(maxsize=1024)
def binner(edges: tuple[float, ...]) -> Binner:
    return Binner(edges)


def _search_args(edges) -> tuple:
    """Kernel arguments that bin by binary search alone (no table: a short column is not worth one)."""
    return (SEARCH, np.asarray(edges, dtype=np.float64), _NO_INTS, 0, 0, 0.0, 0.0, 0.0, _NO_INTS, _NO_FLOATS, _NO_FLAGS)


@dataclass
class NumericState:
    """What one pass over a column's non-null values finds (NumericProfile's fields)."""

    count: int
    nan_count: int
    inf_count: int
    mean: float
    m2: float
    min: float
    max: float
    bin_counts: np.ndarray
    bin_sums: np.ndarray
    sketch: QuantileSketch


def numeric_state(values: np.ndarray, edges: tuple[float, ...]) -> NumericState:
    """Moments, histogram over `edges` and quantile sketch of the float64 `values` (nulls removed)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    n_bins = len(edges) + 1
    total, low, high = PASSES.scan(values)
    count, nans = values.size, 0
    if not (math.isfinite(total) and math.isfinite(low) and math.isfinite(high)):
        # A NaN or an infinity (or a sum that overflows): count the finite values apart.
        count, nans, total, low, high = PASSES.scan_finite(values)
    if count == 0:
        return NumericState(0, nans, values.size - nans, 0.0, 0.0, math.inf, -math.inf,
                            np.zeros(n_bins, np.int64), np.zeros(n_bins, np.float64), QuantileSketch())
    if not math.isfinite(total):  # finite values whose sum overflows: numpy's mean does the same
        total = float(values[np.isfinite(values)].sum())
    mean = total / count
    all_finite = count == values.size
    m2 = PASSES.squared_deviations(values, mean, all_finite)
    # A table pays for its set-up on long columns; a short one (a wide file's small batches:
    # thousands of columns, each binned once) is binned by binary search, with the same result.
    binner_args = binner(tuple(edges)).kernel_args if values.size >= _GRID_MIN_VALUES else _search_args(edges)
    bin_counts = np.zeros(n_bins, np.int64)
    bin_sums = np.zeros(n_bins, np.float64)
    sketch = _sketch_of(values, low, high, binner_args, bin_counts, bin_sums)
    return NumericState(count, nans, values.size - count - nans, mean, m2, low, high, bin_counts, bin_sums, sketch)


def _key_bound(magnitude: float, side: int) -> int:
    """A key at or beyond every key of magnitudes up to (side=1) or down to (side=-1) `magnitude`."""
    return int(math.ceil(math.log(magnitude) / _SKETCH_LOG_GAMMA)) + 2 * side


def _sketch_of(values, low, high, binner_args, bin_counts, bin_sums) -> QuantileSketch:
    """Run the histogram pass (filling bin_counts and bin_sums) and the sketch's, and return the sketch."""
    has_positive, has_negative = high >= _SKETCH_MIN_MAGNITUDE, low <= -_SKETCH_MIN_MAGNITUDE
    positive_range = (max(low, _SKETCH_MIN_MAGNITUDE), high) if has_positive else None
    negative_range = (max(-high, _SKETCH_MIN_MAGNITUDE), -low) if has_negative else None
    ranges = [r for r in (positive_range, negative_range) if r]
    table = None
    if ranges:
        smallest, largest = min(r[0] for r in ranges), max(r[1] for r in ranges)
        table = _table_for(int(np.float64(smallest).view(np.int64)) >> _CELL_SHIFT,
                           int(np.float64(largest).view(np.int64)) >> _CELL_SHIFT)
    key_start, key_table = table if table is not None else (0, _NO_INTS)
    positive_low = _key_bound(positive_range[0], -1) if positive_range else 0
    negative_low = _key_bound(negative_range[0], -1) if negative_range else 0
    positive_counts = np.zeros(_key_bound(positive_range[1], 1) - positive_low + 1 if positive_range else 0, np.int64)
    negative_counts = np.zeros(_key_bound(negative_range[1], 1) - negative_low + 1 if negative_range else 0, np.int64)
    pending_positive = scratch("pending_positive", values.size if has_positive else 0, np.float64)
    pending_negative = scratch("pending_negative", values.size if has_negative else 0, np.float64)
    bits = values.view(np.int64)
    bins = scratch("bins", values.size, np.intp)
    PASSES.bin_indices(values, bits, *binner_args, bins)
    PASSES.histogram(values, bins, bin_counts, bin_sums)
    zero, n_positive, n_negative = PASSES.sketch_counts(
        values, bits, key_start, key_table, _UNSAFE, _SKETCH_MIN_MAGNITUDE, positive_low, negative_low,
        positive_counts, negative_counts, pending_positive, pending_negative)
    return QuantileSketch._of(_sparse(positive_counts, positive_low, pending_positive[:n_positive]),
                              _sparse(negative_counts, negative_low, pending_negative[:n_negative]), int(zero))


def _sparse(dense: np.ndarray, low_key: int, pending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) of the dense counts, with the pending magnitudes keyed by `_log_keys`."""
    if pending.size:
        keys = _log_keys(pending) - low_key
        if keys.min() < 0 or keys.max() >= dense.size:  # the bounds leave room for np.log's rounding
            raise AssertionError("a sketch key fell outside the bounds of its column's range")
        dense += np.bincount(keys, minlength=dense.size)
    present = np.flatnonzero(dense)
    if not present.size:
        return _NO_KEYS, _NO_COUNTS
    return (present + low_key).astype(np.int32), dense[present]
