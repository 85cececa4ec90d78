"""A numeric profile's distribution function, rebuilt from its mergeable state (for Wasserstein).

A numeric profile knows its distribution function exactly at many points: at every fine-bin
edge (counts below the edge), at every quantile-sketch bucket boundary (the sketch counts
values in (gamma**(k-1), gamma**k], buckets 1% wide), and at its min and max. Between
those points we assume the mass is spread evenly, except inside a fine bin whose values all
fall in one sketch bucket: there the bin is one point mass at its exact mean (so a discrete
feature, one value per bin, is exact). All of this state merges exactly, so the CDF of a
merged profile is the CDF of the union.

The CDF is returned as knots (x, F) sorted by x; equal x with rising F is a jump (a point
mass). Wasserstein-1 between two such CDFs is `stats.wasserstein_between_cdfs`. (Drift scores
call `profile_wasserstein`: the same knots and integral in numba, checks/_cdf_kernels.py; the
numpy functions here are its reference and its fallback without numba.) The error is
bounded by the mass that moves *inside* one cell (a fine bin cut at the sketch's 1%-wide
buckets): the extreme bins of a heavy tail, which span orders of magnitude, are cut into
cells 1% wide, where the old bin-mean approximation treated each as one point.
"""

from __future__ import annotations

import logging
import math
import sys

import numpy as np

from checks.stats import normalise_by_std, wasserstein_between_cdfs
from core import kernel_build
from core.sketch import _SKETCH_GAMMA, _SKETCH_MIN_MAGNITUDE, QuantileSketch


def sketch_knots(sketch: QuantileSketch) -> tuple[np.ndarray, np.ndarray]:
    """(x, count of values <= x) at the sketch's bucket boundaries, ascending."""
    parts = []  # (lower bound, upper bound, count) per bucket, in ascending order of values
    # The sketch keeps its buckets as arrays sorted by key (read here directly: its dict view is
    # rebuilt on every access, which made this quadratic in the number of buckets).
    if sketch.negative_keys.size:  # bucket k holds -x in (g**(k-1), g**k]: descending keys ascend in value
        keys = sketch.negative_keys[::-1].astype(np.float64)
        parts.append((-(_SKETCH_GAMMA**keys), -(_SKETCH_GAMMA ** (keys - 1)),
                      sketch.negative_counts[::-1].astype(np.float64)))
    if sketch.zero:
        parts.append((np.array([-_SKETCH_MIN_MAGNITUDE]), np.array([_SKETCH_MIN_MAGNITUDE]),
                      np.array([float(sketch.zero)])))
    if sketch.positive_keys.size:
        keys = sketch.positive_keys.astype(np.float64)
        parts.append((_SKETCH_GAMMA ** (keys - 1), _SKETCH_GAMMA**keys, sketch.positive_counts.astype(np.float64)))
    if not parts:
        return np.zeros(0), np.zeros(0)
    lower, upper, counts = (np.concatenate(p) for p in zip(*parts))
    ends = np.cumsum(counts)
    x = np.empty(2 * len(counts))  # (lower, upper) of each bucket in turn
    x[0::2], x[1::2] = lower, upper
    f = np.empty(2 * len(counts))
    f[0::2], f[1::2] = ends - counts, ends
    return x, f


def profile_cdf(profile) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, F) of a NumericProfile's distribution function over its finite values."""
    counts = np.asarray(profile.bin_counts, np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("cannot build the distribution of an empty profile")
    edges = np.asarray(profile.edges, np.float64)
    # (np.concatenate and np.minimum / np.maximum rather than np.r_ and np.clip: the same values
    # without their per-call overhead, paid twice per feature of a 10,000-column file.)
    lows = np.concatenate(([profile.min], np.maximum(edges, profile.min)))
    highs = np.concatenate((np.minimum(edges, profile.max), [profile.max]))
    starts = np.concatenate(([0.0], np.cumsum(counts)[:-1]))
    ends = starts + counts
    # Sketch knots strictly inside a bin refine it; their counts are clipped to the bin's exact ones.
    sketch_x, sketch_f = sketch_knots(profile.sketch)
    bin_of = np.searchsorted(edges, sketch_x, side="right")
    inside = (sketch_x > lows[bin_of]) & (sketch_x < highs[bin_of]) & (counts[bin_of] > 0)
    bin_of, sketch_x = bin_of[inside], sketch_x[inside]
    sketch_f = np.minimum(np.maximum(sketch_f[inside], starts[bin_of]), ends[bin_of])
    filled = np.flatnonzero(counts)
    bins = np.concatenate([filled, bin_of, filled])
    x = np.concatenate([lows[filled], sketch_x, highs[filled]])
    f = np.concatenate([starts[filled], sketch_f, ends[filled]])
    order = np.lexsort((f, x, bins))
    bins, x, f = bins[order], x[order], f[order]
    # A bin whose mass rises in one cell only (all its values in one sketch bucket, e.g. one
    # distinct value) is a point mass at its exact mean.
    rises = np.bincount(bins[1:][(np.diff(f) > 0) & (bins[1:] == bins[:-1])], minlength=len(counts))
    atom = (rises <= 1) | (highs <= lows)
    means = np.asarray(profile.bin_sums, np.float64) / np.maximum(counts, 1)
    means = np.minimum(np.maximum(means, lows), np.maximum(lows, highs))
    spread = ~atom[bins]
    atoms = filled[atom[filled]]
    x = np.concatenate([x[spread], means[atoms], means[atoms]])
    f = np.concatenate([f[spread], starts[atoms], ends[atoms]]) / total
    order = np.lexsort((f, x))
    return x[order], np.maximum.accumulate(f[order])


# The fast path: the same knots and integral in numba (checks/_cdf_kernels.py), one compiled call
# per profile instead of ~60 small numpy calls; the functions above stay the reference (the oracle
# of tests/test_profile_cdf_kernel.py) and the path where numba is not started or cannot be.
# Starting numba in a process costs ~0.7 s and ~160 MiB (its import, LLVM, the cached kernels)
# and saves ~0.65 ms a score: a check that scores at least KERNEL_MIN_SCORES profiles starts it
# (`start_kernel`), and once started every score uses it. A 30-column check stays on numpy.
KERNEL_MIN_SCORES = 1000
_KERNELS: tuple | None = None  # (module, gamma powers, key offset) once loaded; (None, None, None) without numba


def start_kernel(scores: int) -> None:
    """Start the numba kernel when `scores` Wasserstein scores are about to be computed, and enough are."""
    if scores >= KERNEL_MIN_SCORES:
        _kernels()


def _kernels() -> tuple:
    global _KERNELS
    if _KERNELS is None:  # (two threads may both load it: the same tuple, assigned at once)
        try:
            _cdf_kernels, _ = kernel_build.load("checks._cdf_kernels")  # the ahead-of-time build if made
        except (ImportError, RuntimeError) as exc:  # no numba, or nowhere to cache its code: slower, same scores
            logging.getLogger("driftline.checks").warning("Wasserstein without numba (%s): the numpy path", exc)
            _KERNELS = (None, None, None)
        else:
            # gamma**k as the reference's np.power gives it, for every key a sketch makes
            # (magnitudes from the zero threshold to the largest double), so knots agree to the bit.
            first = math.floor(math.log(_SKETCH_MIN_MAGNITUDE) / math.log(_SKETCH_GAMMA)) - 4
            last = math.ceil(math.log(sys.float_info.max) / math.log(_SKETCH_GAMMA)) + 4
            with np.errstate(over="ignore"):  # the last few keys overflow to inf, as np.power does
                powers = _SKETCH_GAMMA ** np.arange(first, last + 1, dtype=np.float64)
            _KERNELS = (_cdf_kernels, powers, -first)
    return _KERNELS


def fast_profile_cdf(profile) -> tuple[np.ndarray, np.ndarray]:
    """`profile_cdf(profile)`, computed by the numba kernel (started here if need be) when numba is available."""
    loaded = _kernels()
    if loaded[0] is None:
        return profile_cdf(profile)
    kernels, powers, offset = loaded
    sketch = profile.sketch
    x, f = kernels.profile_knots(
        np.asarray(profile.edges, np.float64), profile.bin_counts, profile.bin_sums, float(profile.min),
        float(profile.max), sketch.negative_keys, sketch.negative_counts, int(sketch.zero), sketch.positive_keys,
        sketch.positive_counts, _SKETCH_MIN_MAGNITUDE, powers, offset, _SKETCH_GAMMA)
    if not x.size:
        raise ValueError("cannot build the distribution of an empty profile")
    return x, f


def profile_wasserstein(reference, current, reference_std: float) -> float:
    """`stats.wasserstein_between_cdfs(*profile_cdf(reference), *profile_cdf(current), reference_std)`:
    normalised W1 between two numeric profiles, in numba once `start_kernel` has started it."""
    if _KERNELS is None or _KERNELS[0] is None:
        return wasserstein_between_cdfs(*profile_cdf(reference), *profile_cdf(current), reference_std)
    distance = _KERNELS[0].w1_between(*fast_profile_cdf(reference), *fast_profile_cdf(current))
    return normalise_by_std(distance, reference_std)
