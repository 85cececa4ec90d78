"""Binary-label metrics read from a label profile's group statistics (core.label_profile).

Exact: counts, clicks, sum p (so the calibration ratio and its Garwood interval), Brier
score, log loss and its standard error (from per-group sums). Binned (scores on the fixed
fine logit grid): AUC with the bound on its error, DeLong's error of the binned AUC, the
equal-mass reliability curve and ECE (groups of whole fine bins), and the expected AUC and
log loss under a calibration map (concept drift, signal a).
"""

from __future__ import annotations

import math

import numpy as np

from checks import metrics
from core.label_profile import LOSS, LOSS2, N, N_BINS, P2, PY, Y, GroupStats


def _hist(stats: GroupStats) -> np.ndarray:
    if stats.hist is not None:
        return stats.hist
    empty = np.zeros((N_BINS, 5))
    empty[:, 3], empty[:, 4] = np.inf, -np.inf
    return empty


def binned_auc(pos: np.ndarray, neg: np.ndarray, spread: np.ndarray | None = None) -> tuple[float | None, float]:
    """(AUC with ties within a bin counted one half, the most that can differ from the rows' AUC).

    Within a bin the rows' own order is unknown: each of its pos x neg pairs counts 1/2 here
    and 0, 1/2 or 1 in the rows' AUC, so |binned - exact| <= 1/2 x sum_b pos_b neg_b / (P N),
    summed over the bins whose scores differ (`spread`; where all are equal, the rows tie too)."""
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None, math.nan
    below = np.cumsum(neg) - neg
    value = float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))
    within = pos * neg if spread is None else np.where(spread, pos * neg, 0.0)
    bound = float(0.5 * np.sum(within) / (total_pos * total_neg))
    return value, bound


def binned_delong_se(pos: np.ndarray, neg: np.ndarray) -> float:
    """DeLong's standard error of the binned AUC (the rows' formula with each bin one tied group)."""
    m, n = float(pos.sum()), float(neg.sum())
    if m < 2 or n < 2:
        return math.nan
    v10 = (np.cumsum(neg) - neg + 0.5 * neg) / n  # of a positive in each bin
    v01 = (pos.sum() - np.cumsum(pos) + 0.5 * pos) / m  # of a negative in each bin

    def var(values, weights, total):
        mean = float(np.sum(values * weights) / total)
        return float(np.sum(weights * (values - mean) ** 2) / (total - 1))

    return math.sqrt(max(var(v10, pos, m) / m + var(v01, neg, n) / n, 0.0))


def auc_of(stats: GroupStats) -> tuple[float | None, float, float]:
    """(AUC, its bound, DeLong's error) of one group."""
    hist = _hist(stats)
    value, bound = binned_auc(hist[:, 0], hist[:, 1], hist[:, 3] < hist[:, 4])
    return value, bound, binned_delong_se(hist[:, 0], hist[:, 1])


def brier(stats: GroupStats) -> float | None:
    s = stats.sums
    return None if s[N] <= 0 else float((s[P2] - 2 * s[PY] + s[Y]) / s[N])  # y^2 = y


def log_loss(stats: GroupStats) -> tuple[float, float]:
    """(mean log loss, its standard error) from the sums of the rows' losses and their squares."""
    s = stats.sums
    n = s[N]
    if n <= 0:
        return math.nan, math.nan
    mean = s[LOSS] / n
    if n < 2:
        return float(mean), math.nan
    variance = max(s[LOSS2] - n * mean * mean, 0.0) / (n - 1)
    return float(mean), float(math.sqrt(variance / n))


def reliability(stats: GroupStats, n_bins: int = 10) -> dict:
    """Equal-mass reliability curve and ECE over groups of whole fine bins.

    A fine bin goes to group floor(rows before it x n_bins / n), so each group holds n/n_bins
    rows give or take one fine bin; empty groups are dropped (as scikit-learn's quantile
    curve drops them). ECE = sum over groups of (count / n) x |observed rate - mean prediction|."""
    hist = _hist(stats)
    counts_fine = hist[:, 0] + hist[:, 1]
    n = counts_fine.sum()
    if n <= 0:
        return {"mean_predicted": [], "observed_rate": [], "counts": [], "ece": None}
    before = np.cumsum(counts_fine) - counts_fine
    group = np.minimum((before * n_bins / n).astype(np.int64), n_bins - 1)
    counts = np.bincount(group, weights=counts_fine, minlength=n_bins)
    sums = np.bincount(group, weights=hist[:, 2], minlength=n_bins)
    hits = np.bincount(group, weights=hist[:, 0], minlength=n_bins)
    used = counts > 0
    mean_pred, observed = sums[used] / counts[used], hits[used] / counts[used]
    ece = float(np.sum(counts[used] / n * np.abs(observed - mean_pred)))
    return {"mean_predicted": mean_pred.tolist(), "observed_rate": observed.tolist(),
            "counts": np.rint(counts[used]).astype(int).tolist(), "ece": ece}


def expected_metrics(stats: GroupStats, calibrator: tuple[np.ndarray, np.ndarray]) -> dict:
    """Expected AUC and log loss (with its error) if each row were positive with q = calibrator(p).

    Per fine bin q is taken at the bin's mean score (the calibration map is monotone and the
    bins are ~0.4% wide in p), then each bin is a positive of weight n q and a negative of
    weight n (1 - q), as metrics.expected_auc does row by row."""
    hist = _hist(stats)
    counts = hist[:, 0] + hist[:, 1]
    used = counts > 0
    count, p_mean = counts[used], hist[used, 2] / counts[used]
    q = np.interp(p_mean, *calibrator)
    auc, _ = binned_auc(count * q, count * (1 - q))
    total = count.sum()
    if total <= 0:
        return {"expected_auc": None, "expected_positives": 0.0, "expected_log_loss": math.nan,
                "expected_log_loss_se": math.nan}
    p = np.clip(p_mean, np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
    loss_pos, loss_neg = -np.log(p), -np.log1p(-p)
    mean = float(np.sum(count * (q * loss_pos + (1 - q) * loss_neg)) / total)
    variance = float(np.sum(count * q * (1 - q) * (loss_pos - loss_neg) ** 2)) / total ** 2
    return {"expected_auc": auc, "expected_positives": float(np.sum(count * q)), "expected_log_loss": mean,
            "expected_log_loss_se": math.sqrt(variance)}


def garwood(stats: GroupStats, alpha: float) -> tuple[float, float]:
    return metrics.poisson_interval(stats.positives, alpha)
