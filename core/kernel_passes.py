"""The profile kernel's passes over a column, in numba's subset of Python.

These functions are the compiled heart of the profile kernel: the numeric passes of
core.numeric_kernel (which documents what they compute and why they equal the definitions),
and the counting of a string column's dictionary indices and of an integer column's values
(core.profile). They run one of two ways, from this one source:

- compiled ahead of time into the extension module `core._kernel_passes_aot` by
  `python -m core.kernel_build` (`make kernel`, which `make test`, `make demo` and `make bench`
  run): no numba or LLVM in the process, so a CLI run starts 0.6 s sooner and ~130 MiB smaller;
- compiled just in time by numba when that module is missing or was built from another
  version of this file (then cached in __pycache__).

Arguments are flat (arrays and scalars, no tuples) and typed as `SIGNATURES` says, because the
ahead-of-time build exports each function with one fixed signature.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Binning modes: plain binary search, the table on the values' bits (positive edges), the grid.
SEARCH, BITS, GRID = 0, 1, 2

_ARRAYS = "f8[::1], i8[::1]"  # values and their bits
SIGNATURES = {
    "scan": "UniTuple(f8, 3)(f8[::1])",
    "scan_finite": "Tuple((i8, i8, f8, f8, f8))(f8[::1])",
    "squared_deviations": "f8(f8[::1], f8, b1)",
    "bin_indices": f"void({_ARRAYS}, i8, f8[::1], i8[::1], i8, i8, f8, f8, f8, i8[::1], f8[::1], b1[::1], i8[::1])",
    "histogram": "void(f8[::1], i8[::1], i8[::1], f8[::1])",
    "count_indices": "i8(i4[::1], u1[::1], i8, i8[::1])",
    "integer_range": "UniTuple(i8, 2)(i8[::1])",
    "count_offsets": "void(i8[::1], i8, i8[::1])",
    "sketch_counts": f"UniTuple(i8, 3)({_ARRAYS}, i8, i8[::1], i8, f8, i8, i8, i8[::1], i8[::1], f8[::1], f8[::1])",
    "valid_floats": "i8(f8[::1], u1[::1], i8, f8[::1])",
    "valid_integers": "i8(i8[::1], u1[::1], i8, i8[::1])",
}


@njit(cache=True, nogil=True)
def scan(values):
    """(sum, min, max) of `values`, NaN and infinities included (a non-finite sum says some are)."""
    n = values.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    low = np.inf
    high = -np.inf
    whole = n - n % 8
    for i in range(0, whole, 8):
        s0 += values[i]
        s1 += values[i + 1]
        s2 += values[i + 2]
        s3 += values[i + 3]
        s4 += values[i + 4]
        s5 += values[i + 5]
        s6 += values[i + 6]
        s7 += values[i + 7]
    for i in range(whole, n):
        s0 += values[i]
    for i in range(n):
        v = values[i]
        low = min(low, v)
        high = max(high, v)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), low, high


@njit(cache=True, nogil=True)
def scan_finite(values):
    """(finite count, NaN count, sum, min, max) over the finite values only."""
    count = 0
    nans = 0
    total = 0.0
    low = np.inf
    high = -np.inf
    for i in range(values.size):
        v = values[i]
        if math.isfinite(v):
            count += 1
            total += v
            if v < low:
                low = v
            if v > high:
                high = v
        elif math.isnan(v):
            nans += 1
    return count, nans, total, low, high


@njit(cache=True, nogil=True)
def squared_deviations(values, mean, all_finite):
    """Sum of (v - mean)**2 over the finite values."""
    n = values.size
    s0 = s1 = s2 = s3 = 0.0
    if all_finite:
        whole = n - n % 4
        for i in range(0, whole, 4):
            d0 = values[i] - mean
            d1 = values[i + 1] - mean
            d2 = values[i + 2] - mean
            d3 = values[i + 3] - mean
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
        for i in range(whole, n):
            d = values[i] - mean
            s0 += d * d
    else:
        for i in range(n):
            v = values[i]
            if math.isfinite(v):
                d = v - mean
                s0 += d * d
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def _search_right(edges, v):
    """np.searchsorted(edges, v, side="right"): the number of edges <= v."""
    lo = 0
    hi = edges.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def bin_indices(values, bits, mode, edges, table, shift, first, low, scale, top, base, sentinel, crowded, out):
    """The bin of every value into `out`: np.searchsorted(edges, v, side="right") for finite v.

    `bits` is `values` viewed as int64; the rest is `Binner.kernel_args` (see core.numeric_kernel).
    One loop per mode, each written out whole: a test of the mode inside the loop, or a helper
    function taking the arrays (numba counts references at every call), ran five times slower.
    A non-finite value gets some bin in range.
    """
    n_edges = edges.size
    if mode == BITS:
        last = table.size - 1
        for i in range(values.size):
            index = (bits[i] >> shift) - first
            if index < 0:
                index = 0
            elif index > last:
                index = last
            b = table[index]
            if b < 0:  # a cell that holds an edge
                b = _search_right(edges, values[i])
            out[i] = b
    elif mode == GRID:
        for i in range(values.size):
            v = values[i]
            position = (v - low) * scale
            if not position >= 0.0:  # below the grid, or NaN
                position = 0.0
            elif position > top:
                position = top
            cell = int(position)
            b = base[cell]
            if v >= sentinel[b]:
                b += 1
            if crowded[cell]:  # a cell that holds several edges
                b = _search_right(edges, v)
            out[i] = b
    else:
        for i in range(values.size):
            v = values[i]
            lo = 0
            hi = n_edges
            while lo < hi:  # _search_right, written out
                mid = (lo + hi) >> 1
                if edges[mid] <= v:
                    lo = mid + 1
                else:
                    hi = mid
            out[i] = lo


@njit(cache=True, nogil=True)
def histogram(values, bins, bin_counts, bin_sums):
    """Count and sum every finite value in its bin; sums add in row order, as np.bincount's weights do."""
    for i in range(values.size):
        v = values[i]
        if math.isfinite(v):
            b = bins[i]
            bin_counts[b] += 1
            bin_sums[b] += v


@njit(cache=True, nogil=True)
def sketch_counts(values, bits, key_start, key_table, unsafe_key, min_magnitude, positive_low, negative_low,
                  positive_counts, negative_counts, pending_positive, pending_negative):
    """Count every finite value in its sketch bucket.

    `bits` is `values` viewed as int64; `key_table` is the sketch's shared key table (cell
    `key_start` first, `unsafe_key` where a cell straddles a bucket boundary). Bucket counts go
    to `positive_counts[key - positive_low]` and `negative_counts[key of -v - negative_low]`; a
    value whose key the table cannot give (or, by a bug, one outside the arrays: nothing is
    written out of bounds) is written to `pending_positive` / `pending_negative` (as a
    magnitude) for the caller to key. Returns (zero-bucket count, pending positive, pending
    negative).
    """
    zero = 0
    pending_pos = 0
    pending_neg = 0
    last_cell = key_table.size - 1
    for i in range(values.size):
        v = values[i]
        if not math.isfinite(v):
            continue
        if v >= min_magnitude:
            cell = (bits[i] >> 40) - key_start
            at = (key_table[cell] if 0 <= cell <= last_cell else unsafe_key) - positive_low
            if 0 <= at < positive_counts.size:  # (never outside: a key the table lacks reads unsafe_key)
                positive_counts[at] += 1
            else:
                pending_positive[pending_pos] = v
                pending_pos += 1
        elif v <= -min_magnitude:
            cell = ((bits[i] & 0x7FFFFFFFFFFFFFFF) >> 40) - key_start  # the magnitude's bits: sign cleared
            at = (key_table[cell] if 0 <= cell <= last_cell else unsafe_key) - negative_low
            if 0 <= at < negative_counts.size:
                negative_counts[at] += 1
            else:
                pending_negative[pending_neg] = -v
                pending_neg += 1
        else:
            zero += 1
    return zero, pending_pos, pending_neg


@njit(cache=True, nogil=True)
def count_indices(indices, validity, offset, tally):
    """Add one to `tally[index]` for every valid dictionary index; returns how many were out of range.

    `validity` is the Arrow validity bitmap (empty when every index is valid) and `offset` the
    array's offset into it, so nulls are skipped without copying the indices.
    """
    outside = 0
    size = tally.size
    if validity.size == 0:
        for i in range(indices.size):
            index = indices[i]
            if 0 <= index < size:
                tally[index] += 1
            else:
                outside += 1
    else:
        for i in range(indices.size):
            bit = offset + i
            if (validity[bit >> 3] >> (bit & 7)) & 1:
                index = indices[i]
                if 0 <= index < size:
                    tally[index] += 1
                else:
                    outside += 1
    return outside


@njit(cache=True, nogil=True)
def integer_range(values):
    """(min, max) of a non-empty int64 array in one pass."""
    low = values[0]
    high = values[0]
    for i in range(1, values.size):
        v = values[i]
        if v < low:
            low = v
        elif v > high:
            high = v
    return low, high


@njit(cache=True, nogil=True)
def count_offsets(values, low, tally):
    """tally[v - low] += 1 for every value (the caller sizes tally to the values' range)."""
    for i in range(values.size):
        tally[values[i] - low] += 1


@njit(cache=True, nogil=True)
def _valid(values, validity, offset, out):
    n = 0
    last = out.size - 1
    for i in range(values.size):
        bit = offset + i
        # Every value is written and kept only if valid (the next one overwrites a null): no branch
        # to mispredict, twice as fast. Writes stop at the last slot, whatever the bitmap says.
        out[n if n < last else last] = values[i]
        n += (validity[bit >> 3] >> (bit & 7)) & 1
    return n


@njit(cache=True, nogil=True)
def valid_floats(values, validity, offset, out):
    """Copy the values whose bit is set in the Arrow validity bitmap (read from bit `offset`) into
    `out` (one slot longer than their count), in order, and return how many: `pc.drop_null` into
    a reused buffer."""
    return _valid(values, validity, offset, out)


@njit(cache=True, nogil=True)
def valid_integers(values, validity, offset, out):
    """As valid_floats, for int64 values."""
    return _valid(values, validity, offset, out)
