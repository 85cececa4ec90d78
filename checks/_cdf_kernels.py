"""numba kernels for checks/profile_cdf.py: a numeric profile's CDF knots and Wasserstein-1 between two.

The same arithmetic as `profile_cdf.profile_cdf` and `stats.wasserstein_between_cdfs` (the numpy
reference, kept as the oracle: tests/test_profile_cdf_kernel.py), step for step, without the
per-call overhead of ~60 small numpy calls per feature that a 10,000-column file paid 10,000
times. The knots are built in nearly sorted order and put in order by insertion sort (stable,
linear on nearly sorted input) instead of lexsort; the two CDFs' grid is a merge of two sorted
lists instead of np.unique; searchsorted becomes two walking pointers; the final sum is numpy's
pairwise summation. Sketch bucket bounds gamma**k come from a table numpy computed (the
reference's own np.power), so the knots are the reference's to the bit.

Loaded on first use only (checks/profile_cdf.py), through core.kernel_build: the ahead-of-time
build `make kernel` makes (no numba in the process), or else this module compiled just in time
(cached on disk, `cache=True`, so only the first run on a machine pays the compilation).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# What the ahead-of-time build exports (core/kernel_build.py): the two entry points.
SIGNATURES = {
    "profile_knots": "UniTuple(f8[::1], 2)(f8[::1], i8[::1], f8[::1], f8, f8, i4[::1], i8[::1], i8, i4[::1], "
                     "i8[::1], f8, f8[::1], i8, f8)",
    "w1_between": "f8(f8[::1], f8[::1], f8[::1], f8[::1])",
}


@njit(cache=True)
def _bucket_bounds(keys, powers, offset, gamma):
    """(gamma**(key - 1), gamma**key) for each key: from the table when every key is in it (always, for
    keys a sketch makes), else computed (then the last bit may differ from numpy's np.power)."""
    lower = np.empty(keys.size)
    upper = np.empty(keys.size)
    in_table = True
    for i in range(keys.size):
        at = np.int64(keys[i]) + offset
        if at < 1 or at >= powers.size:
            in_table = False
    for i in range(keys.size):
        if in_table:  # (a branch per loop, not per key: with pow in the loop it ran ~5x slower)
            at = np.int64(keys[i]) + offset
            lower[i], upper[i] = powers[at - 1], powers[at]
        else:
            key = np.float64(keys[i])
            lower[i], upper[i] = gamma ** (key - 1), gamma**key
    return lower, upper


@njit(cache=True)
def _sketch_knots(negative_keys, negative_counts, zero, positive_keys, positive_counts, min_magnitude,
                  powers, offset, gamma):
    """profile_cdf.sketch_knots: (x, count of values <= x) at the bucket bounds, in bucket order."""
    n_negative, n_positive = negative_keys.size, positive_keys.size
    n = n_negative + (1 if zero != 0 else 0) + n_positive
    x = np.empty(2 * n)
    f = np.empty(2 * n)
    end = 0.0
    k = 0
    lower, upper = _bucket_bounds(negative_keys, powers, offset, gamma)
    for i in range(n_negative - 1, -1, -1):  # bucket k holds -x in (g**(k-1), g**k]: descending keys ascend
        count = np.float64(negative_counts[i])
        end += count
        x[2 * k], x[2 * k + 1] = -upper[i], -lower[i]
        f[2 * k], f[2 * k + 1] = end - count, end
        k += 1
    if zero != 0:
        count = np.float64(zero)
        end += count
        x[2 * k], x[2 * k + 1] = -min_magnitude, min_magnitude
        f[2 * k], f[2 * k + 1] = end - count, end
        k += 1
    lower, upper = _bucket_bounds(positive_keys, powers, offset, gamma)
    for i in range(n_positive):
        count = np.float64(positive_counts[i])
        end += count
        x[2 * k], x[2 * k + 1] = lower[i], upper[i]
        f[2 * k], f[2 * k + 1] = end - count, end
        k += 1
    return x, f


@njit(cache=True)
def _maximum(a, b):
    return a if a >= b else b  # np.maximum without NaNs (none here: every knot is finite)


@njit(cache=True)
def _minimum(a, b):
    return a if a <= b else b


@njit(cache=True)
def _before_key(bin_a, x_a, f_a, bin_b, x_b, f_b):
    """(bin, x, f) of a sorts strictly before that of b (lexsort's order)."""
    if bin_a != bin_b:
        return bin_a < bin_b
    if x_a != x_b:
        return x_a < x_b
    return f_a < f_b


@njit(cache=True)
def _sort_knots(bins, x, f):
    """Stable insertion sort by (bins, x, f) in place: linear when the input is nearly sorted."""
    for i in range(1, x.size):
        b, xi, fi = bins[i], x[i], f[i]
        j = i - 1
        while j >= 0 and _before_key(b, xi, fi, bins[j], x[j], f[j]):
            bins[j + 1], x[j + 1], f[j + 1] = bins[j], x[j], f[j]
            j -= 1
        bins[j + 1], x[j + 1], f[j + 1] = b, xi, fi


@njit(cache=True)
def profile_knots(edges, bin_counts, bin_sums, low, high, negative_keys, negative_counts, zero, positive_keys,
                  positive_counts, min_magnitude, powers, offset, gamma):
    """profile_cdf.profile_cdf on a profile's arrays: knots (x, F) of its distribution function."""
    n_bins = bin_counts.size
    counts = np.empty(n_bins)
    for b in range(n_bins):
        counts[b] = np.float64(bin_counts[b])
    total = 0.0
    for b in range(n_bins):
        total += counts[b]
    lows = np.empty(n_bins)
    highs = np.empty(n_bins)
    starts = np.empty(n_bins)
    ends = np.empty(n_bins)
    running = 0.0
    for b in range(n_bins):
        lows[b] = low if b == 0 else _maximum(edges[b - 1], low)
        highs[b] = high if b == n_bins - 1 else _minimum(edges[b], high)
        starts[b] = running
        running += counts[b]
        ends[b] = starts[b] + counts[b]
    # Knots in (bin, x, f) order: per filled bin its low end, the sketch knots strictly inside it
    # (their counts clipped to the bin's), its high end. The sketch's knots come in bucket order,
    # which is x order but near zero: what comes out of order is put in place by the sort after.
    sketch_x, sketch_f = _sketch_knots(negative_keys, negative_counts, zero, positive_keys, positive_counts,
                                       min_magnitude, powers, offset, gamma)
    n_filled = 0
    for b in range(n_bins):
        if counts[b] != 0:
            n_filled += 1
    bins = np.empty(2 * n_filled + sketch_x.size, np.int64)
    x = np.empty(bins.size)
    f = np.empty(bins.size)
    k = 0
    done = 0  # bins before this one have both ends written
    is_open = False  # whether bin `done`'s low end is written (and its high end not yet)
    at = 0  # np.searchsorted(edges, value, side="right"), by a pointer walking from the last value's bin
    for i in range(sketch_x.size):
        value = sketch_x[i]
        while at < edges.size and edges[at] <= value:
            at += 1
        while at > 0 and edges[at - 1] > value:
            at -= 1
        if not (value > lows[at] and value < highs[at] and counts[at] > 0):
            continue
        if at > done and is_open:  # close the open bin
            bins[k], x[k], f[k] = done, highs[done], ends[done]
            k += 1
            done += 1
            is_open = False
        while done < at:  # filled bins with no knot inside: both ends
            if counts[done] != 0:
                bins[k], x[k], f[k] = done, lows[done], starts[done]
                bins[k + 1], x[k + 1], f[k + 1] = done, highs[done], ends[done]
                k += 2
            done += 1
        if at == done and not is_open:
            bins[k], x[k], f[k] = done, lows[done], starts[done]
            k += 1
            is_open = True
        bins[k], x[k], f[k] = at, value, _minimum(_maximum(sketch_f[i], starts[at]), ends[at])
        k += 1
    if is_open:
        bins[k], x[k], f[k] = done, highs[done], ends[done]
        k += 1
        done += 1
    while done < n_bins:
        if counts[done] != 0:
            bins[k], x[k], f[k] = done, lows[done], starts[done]
            bins[k + 1], x[k + 1], f[k + 1] = done, highs[done], ends[done]
            k += 2
        done += 1
    n_knots = k
    bins, x, f = bins[:n_knots], x[:n_knots], f[:n_knots]
    _sort_knots(bins, x, f)
    # A bin whose mass rises in one cell only is a point mass at its exact (clipped) mean.
    rises = np.zeros(n_bins, np.int64)
    for i in range(1, n_knots):
        if f[i] - f[i - 1] > 0 and bins[i] == bins[i - 1]:
            rises[bins[i]] += 1
    out_x = np.empty(n_knots)
    out_f = np.empty(n_knots)
    out_bins = np.zeros(n_knots, np.int64)  # x order within (bin, x, f) order: only ties need sorting
    n_out = 0
    i = 0
    for b in range(n_bins):
        if counts[b] == 0:
            continue
        first = i
        while i < n_knots and bins[i] == b:
            i += 1
        if rises[b] <= 1 or highs[b] <= lows[b]:
            mean = bin_sums[b] / _maximum(counts[b], 1.0)
            mean = _minimum(_maximum(mean, lows[b]), _maximum(lows[b], highs[b]))
            out_x[n_out], out_f[n_out] = mean, starts[b] / total
            out_x[n_out + 1], out_f[n_out + 1] = mean, ends[b] / total
            n_out += 2
        else:
            for j in range(first, i):
                out_x[n_out], out_f[n_out] = x[j], f[j] / total
                n_out += 1
    out_x, out_f, out_bins = out_x[:n_out], out_f[:n_out], out_bins[:n_out]
    _sort_knots(out_bins, out_x, out_f)  # by (x, f): every bin key is 0
    for i in range(1, n_out):
        out_f[i] = _maximum(out_f[i - 1], out_f[i])
    return out_x, out_f


@njit(cache=True)
def _merged_grid(a, b):
    """np.unique(np.concatenate([a, b])) of two ascending arrays."""
    grid = np.empty(a.size + b.size)
    i = j = n = 0
    while i < a.size or j < b.size:
        if j >= b.size or (i < a.size and a[i] <= b[j]):
            value = a[i]
            i += 1
        else:
            value = b[j]
            j += 1
        if n == 0 or value != grid[n - 1]:
            grid[n] = value
            n += 1
    return grid[:n]


@njit(cache=True)
def _interpolate(x, f, at, j):
    """stats._interpolate at one point, with i = j - 1."""
    i = j - 1
    if i < 0:
        return 0.0
    if j >= x.size:
        return f[x.size - 1]
    x_i, f_i = x[i], f[i]
    span = x[j] - x_i
    t = (at - x_i) / span if span > 0 else 0.0
    return f_i + (f[j] - f_i) * _minimum(_maximum(t, 0.0), 1.0)


@njit(cache=True)
def _block_sum(a, start, n):
    """numpy's pairwise_sum on a block of at most 128 values: eight running sums, then the rest."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += a[i]
        return total
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[start + i]
        r1 += a[start + i + 1]
        r2 += a[start + i + 2]
        r3 += a[start + i + 3]
        r4 += a[start + i + 4]
        r5 += a[start + i + 5]
        r6 += a[start + i + 6]
        r7 += a[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += a[start + i]
        i += 1
    return total


@njit(cache=True)
def _pairwise_sum(a):
    """np.sum(a) on a contiguous float64 array: numpy's pairwise summation (blocks of <= 128 values,
    halves cut at a multiple of 8, left + right), with an explicit stack: numba's on-disk cache
    crashes on recursive functions."""
    tasks = np.empty((256, 2), np.int64)  # (start, n), or (-1, 0): add the top two partial sums
    sums = np.empty(128)
    tasks[0, 0], tasks[0, 1] = 0, a.size
    n_tasks, n_sums = 1, 0
    while n_tasks:
        n_tasks -= 1
        start, n = tasks[n_tasks, 0], tasks[n_tasks, 1]
        if start < 0:
            n_sums -= 1
            sums[n_sums - 1] = sums[n_sums - 1] + sums[n_sums]
        elif n <= 128:
            sums[n_sums] = _block_sum(a, start, n)
            n_sums += 1
        else:
            half = n // 2
            half -= half % 8
            tasks[n_tasks, 0], tasks[n_tasks, 1] = -1, 0
            tasks[n_tasks + 1, 0], tasks[n_tasks + 1, 1] = start + half, n - half
            tasks[n_tasks + 2, 0], tasks[n_tasks + 2, 1] = start, half
            n_tasks += 3
    return sums[0] if n_sums else 0.0


@njit(cache=True)
def w1_between(x_ref, f_ref, x_cur, f_cur):
    """stats.wasserstein_between_cdfs before the division by the reference std: integral |F - G|."""
    grid = _merged_grid(x_ref, x_cur)
    if grid.size < 2:
        return 0.0
    cells = np.empty(grid.size - 1)
    # Walking pointers: the number of knots <= (right) and < (left) the grid point, as searchsorted.
    ref_right = cur_right = ref_left = cur_left = 0
    for c in range(grid.size - 1):
        start, end = grid[c], grid[c + 1]
        while ref_right < x_ref.size and x_ref[ref_right] <= start:
            ref_right += 1
        while cur_right < x_cur.size and x_cur[cur_right] <= start:
            cur_right += 1
        while ref_left < x_ref.size and x_ref[ref_left] < end:
            ref_left += 1
        while cur_left < x_cur.size and x_cur[cur_left] < end:
            cur_left += 1
        d_start = _interpolate(x_ref, f_ref, start, ref_right) - _interpolate(x_cur, f_cur, start, cur_right)
        d_end = _interpolate(x_ref, f_ref, end, ref_left) - _interpolate(x_cur, f_cur, end, cur_left)
        width = end - start
        a, b = abs(d_start), abs(d_end)
        if d_start * d_end >= 0:
            cell = width * (a + b) / 2
        else:
            cell = width * (a * a + b * b) / (2 * (a + b))
        if np.isnan(cell):  # np.nan_to_num
            cell = 0.0
        elif np.isinf(cell):
            cell = np.finfo(np.float64).max if cell > 0 else -np.finfo(np.float64).max
        cells[c] = cell
    return _pairwise_sum(cells)
