"""Distribution distances computed from binned counts (the drift kernel's statistics).

Every function takes reference and current *counts* over the same bins and returns a
non-negative effect size. They never see rows, so they work on merged profiles.
Zero-count bins are floored the way Evidently does for PSI (JS needs no floor), so values
agree with Evidently's when the bins agree.
"""

from __future__ import annotations

import numpy as np

# Evidently's floor for a constant reference's std in the normalised Wasserstein distance.
MIN_REFERENCE_STD = 1e-3


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("cannot compute shares of an empty histogram")
    return counts / total


def _floor_empty(shares: np.ndarray) -> np.ndarray:
    # Evidently's get_binned_data: per sample, zero shares become min_nonzero / 1e6 when
    # the smallest non-zero share is <= 1e-4, else 1e-4.
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)


def psi(reference_counts, current_counts) -> float:
    """Population stability index: sum((c - r) * ln(c / r)); 0 for identical shares, unbounded above."""
    ref = _floor_empty(_shares(reference_counts))
    cur = _floor_empty(_shares(current_counts))
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def jensen_shannon(reference_counts, current_counts) -> float:
    """Jensen-Shannon *distance* (square root of the divergence, natural log), in [0, sqrt(ln 2)].

    This is scipy.spatial.distance.jensenshannon, which Evidently reports as its
    `jensenshannon` drift score.
    """
    ref = _shares(reference_counts)
    cur = _shares(current_counts)
    mid = 0.5 * (ref + cur)

    def _kl(p: np.ndarray, q: np.ndarray) -> float:
        mask = p > 0
        return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))

    divergence = 0.5 * _kl(ref, mid) + 0.5 * _kl(cur, mid)
    return float(np.sqrt(max(divergence, 0.0)))


def l_infinity(reference_counts, current_counts) -> float:
    """Largest absolute difference of bin shares (TFDV's and Vertex's categorical distance), in [0, 1]."""
    return float(np.max(np.abs(_shares(reference_counts) - _shares(current_counts))))


def wasserstein_normalized(
    reference_points, reference_weights, current_points, current_weights, reference_std: float
) -> float:
    """Earth mover's distance between two weighted point sets, divided by the reference std.

    Points are the per-bin means of a fine histogram, so the result approximates
    scipy.stats.wasserstein_distance(ref_rows, cur_rows) / max(std(ref_rows), 0.001)
    (population std), Evidently's `wasserstein` score, without the rows.
    """
    ref_x = np.asarray(reference_points, dtype=np.float64)
    cur_x = np.asarray(current_points, dtype=np.float64)
    ref_w = np.asarray(reference_weights, dtype=np.float64)
    cur_w = np.asarray(current_weights, dtype=np.float64)
    if ref_w.sum() <= 0 or cur_w.sum() <= 0:
        raise ValueError("cannot compute a distance to an empty histogram")
    distance = _weighted_w1(ref_x, ref_w / ref_w.sum(), cur_x, cur_w / cur_w.sum())
    return normalise_by_std(distance, reference_std)


def _weighted_w1(x: np.ndarray, wx: np.ndarray, y: np.ndarray, wy: np.ndarray) -> float:
    """W1 = integral |F_x - F_y| over the merged support (the same algorithm as scipy's)."""
    values = np.concatenate([x, y])
    order = np.argsort(values, kind="mergesort")
    values = values[order]
    deltas = np.diff(values)
    x_sorted = np.sort(x)
    y_sorted = np.sort(y)
    cdf_x = _cdf_at(x_sorted, wx[np.argsort(x, kind="mergesort")], values[:-1])
    cdf_y = _cdf_at(y_sorted, wy[np.argsort(y, kind="mergesort")], values[:-1])
    return float(np.sum(np.abs(cdf_x - cdf_y) * deltas))


def _cdf_at(sorted_points: np.ndarray, sorted_weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    cumulative = np.concatenate([[0.0], np.cumsum(sorted_weights)])
    return cumulative[np.searchsorted(sorted_points, at, side="right")]


def wasserstein_between_cdfs(x_ref, f_ref, x_cur, f_cur, reference_std: float) -> float:
    """W1 between two piecewise-linear distribution functions, divided by the reference std.

    Each CDF is knots (x ascending, F rising from 0 to 1), linear between knots; equal x
    with rising F is a point mass (see checks/profile_cdf.py). The integral of |F - G| is
    exact for such functions: on every cell between consecutive knots of either both are
    linear, so |F - G| is integrated in closed form (split where the difference changes sign).
    """
    grid = np.unique(np.concatenate([x_ref, x_cur]))
    if grid.size < 2:
        distance = 0.0
    else:
        d_start = _after(x_ref, f_ref, grid[:-1]) - _after(x_cur, f_cur, grid[:-1])
        d_end = _before(x_ref, f_ref, grid[1:]) - _before(x_cur, f_cur, grid[1:])
        width = np.diff(grid)
        a, b = np.abs(d_start), np.abs(d_end)
        with np.errstate(invalid="ignore", divide="ignore"):
            crossing = width * (a * a + b * b) / (2 * (a + b))
        cells = np.where(d_start * d_end >= 0, width * (a + b) / 2, crossing)
        distance = float(np.sum(np.nan_to_num(cells)))
    return normalise_by_std(distance, reference_std)


def normalise_by_std(distance: float, reference_std: float) -> float:
    """A distance in units of the reference's std (floored at MIN_REFERENCE_STD; a non-finite std is 0)."""
    if not np.isfinite(reference_std):
        reference_std = 0.0
    return distance / max(reference_std, MIN_REFERENCE_STD)


def _after(x: np.ndarray, f: np.ndarray, at: np.ndarray) -> np.ndarray:
    """F just right of each point (the top of a jump there)."""
    idx = np.searchsorted(x, at, side="right")
    return _interpolate(x, f, at, idx - 1, idx)


def _before(x: np.ndarray, f: np.ndarray, at: np.ndarray) -> np.ndarray:
    """F just left of each point (the bottom of a jump there)."""
    idx = np.searchsorted(x, at, side="left")
    return _interpolate(x, f, at, idx - 1, idx)


def _interpolate(x, f, at, i, j) -> np.ndarray:
    # i = j - 1 with 0 <= j <= len(x): only i can fall below the knots and only j above them.
    # (np.maximum / np.minimum, not np.clip: the same values, without np.clip's per-call
    # overhead, which a wide file pays four times per feature.)
    low = i < 0
    high = j >= len(x)
    i_, j_ = np.maximum(i, 0), np.minimum(j, len(x) - 1)
    x_i, f_i = x[i_], f[i_]
    span = x[j_] - x_i
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(span > 0, (at - x_i) / span, 0.0)
    value = f_i + (f[j_] - f_i) * np.minimum(np.maximum(t, 0.0), 1.0)
    return np.where(low, 0.0, np.where(high, f[-1] if len(f) else 1.0, value))


METHODS = {
    "psi": psi,
    "jensenshannon": jensen_shannon,
    "linf": l_infinity,
}
