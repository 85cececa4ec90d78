"""Binary-label metrics and count intervals for the calibration, performance and concept checks.

Plain numpy/scipy functions over (labels, scores) arrays. AUC, log loss, Brier score and
the reliability curve agree with scikit-learn's (`roc_auc_score`, `log_loss`,
`brier_score_loss`, `calibration_curve(strategy="quantile")`) on the same data; the tests
hold them to it.

Calibration is measured on counts: under calibration the click count Y of a group is a
sum of Bernoulli(p_i), so Y ~ Poisson(sum p) up to a variance slightly below the mean
(conservative at CTRs of a few percent). The calibration ratio sum(p) / sum(y) gets an
exact Poisson (Garwood) interval from Y; its change against a reference gets the exact
conditional binomial interval for the ratio of two Poisson rates. Both behave at CTRs of
0.5-5%, where normal intervals on a handful of clicks do not.
"""

from __future__ import annotations

import math

import numpy as np


def _f64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# ------------------------------------------------------------------ ranking and loss


def auc(labels, scores, weights=None) -> float | None:
    """Area under the ROC curve (ties count one half); None when one class is absent.

    With `weights` each row counts as a positive with weight w and never as a negative;
    `expected_auc` passes fractional rows that way.
    """
    y = _f64(labels)
    s = _f64(scores)
    w = np.ones_like(s) if weights is None else _f64(weights)
    pos_w = y * w
    neg_w = (1.0 - y) * w
    total_pos, total_neg = pos_w.sum(), neg_w.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Group tied scores: a positive beats every negative below its group and half of those tied.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos_group = np.add.reduceat(pos_w[order], starts)
    neg_group = np.add.reduceat(neg_w[order], starts)
    neg_below = np.cumsum(neg_group) - neg_group
    return float(np.sum(pos_group * (neg_below + 0.5 * neg_group)) / (total_pos * total_neg))


def expected_auc(scores, probabilities) -> float | None:
    """The AUC expected if each row is positive with `probabilities` (CBPE): every row is a
    positive with weight p and a negative with weight 1 - p."""
    s = _f64(scores)
    p = _f64(probabilities)
    return auc(np.r_[np.ones_like(s), np.zeros_like(s)], np.r_[s, s], np.r_[p, 1.0 - p])


def auc_se(value: float | None, positives: float, negatives: float) -> float:
    """Hanley-McNeil standard error of an AUC estimate."""
    if value is None or positives <= 0 or negatives <= 0:
        return math.nan
    q1 = value / (2.0 - value)
    q2 = 2.0 * value * value / (1.0 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value * value)
                + (negatives - 1) * (q2 - value * value)) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def auc_se_delong(labels, scores) -> float:
    """DeLong's nonparametric standard error of the AUC (ties count one half); NaN with one class.

    From the rows themselves, so it holds for any score distribution (Hanley-McNeil assumes
    exponential score distributions and overstates the error of a sharp model by ~15%)."""
    y = _f64(labels) > 0.5
    s = _f64(scores)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return math.nan
    # For each positive: the share of negatives it beats; for each negative: of positives beating it.
    v10 = (np.searchsorted(neg, pos, "left") + np.searchsorted(neg, pos, "right")) / (2.0 * n)
    v01 = (2 * m - np.searchsorted(pos, neg, "left") - np.searchsorted(pos, neg, "right")) / (2.0 * m)
    return math.sqrt(max(float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n), 0.0))


def _clip(scores: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float64).eps  # scikit-learn's log_loss clips the same way
    return np.clip(scores, eps, 1.0 - eps)


def row_log_loss(labels, scores) -> np.ndarray:
    y = _f64(labels)
    p = _clip(_f64(scores))
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def log_loss(labels, scores) -> float:
    return float(np.mean(row_log_loss(labels, scores)))


def expected_log_loss(scores, probabilities) -> tuple[float, float]:
    """Mean log loss expected if each row is positive with `probabilities`, and its standard error."""
    p = _clip(_f64(scores))
    q = _f64(probabilities)
    loss_pos, loss_neg = -np.log(p), -np.log1p(-p)
    mean = float(np.mean(q * loss_pos + (1 - q) * loss_neg))
    variance = float(np.sum(q * (1 - q) * (loss_pos - loss_neg) ** 2)) / len(p) ** 2
    return mean, math.sqrt(variance)


def entropy(rate: float) -> float:
    """Entropy (nats) of a Bernoulli(rate): the log loss of always predicting the base rate."""
    if rate <= 0 or rate >= 1:
        return 0.0
    return -(rate * math.log(rate) + (1 - rate) * math.log1p(-rate))


def normalized_entropy(labels, scores) -> float | None:
    """Log loss over the entropy of the window's base rate (He et al. 2014); None if one class."""
    h = entropy(float(np.mean(_f64(labels))))
    return None if h == 0 else log_loss(labels, scores) / h


def brier(labels, scores) -> float:
    return float(np.mean((_f64(scores) - _f64(labels)) ** 2))


# ------------------------------------------------------------------ reliability


def reliability(labels, scores, n_bins: int = 10) -> dict:
    """Equal-mass reliability curve and ECE.

    Bins are scikit-learn's `calibration_curve(strategy="quantile")` bins; empty bins are
    dropped, as there. ECE = sum over bins of (count / n) x |observed rate - mean prediction|.
    """
    y = _f64(labels)
    p = _f64(scores)
    if len(p) == 0:
        return {"mean_predicted": [], "observed_rate": [], "counts": [], "edges": [], "ece": None}
    edges = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=p, minlength=n_bins)
    hits = np.bincount(ids, weights=y, minlength=n_bins)
    used = counts > 0
    mean_pred = sums[used] / counts[used]
    observed = hits[used] / counts[used]
    ece = float(np.sum(counts[used] / len(p) * np.abs(observed - mean_pred)))
    return {"mean_predicted": mean_pred.tolist(), "observed_rate": observed.tolist(),
            "counts": counts[used].astype(int).tolist(), "edges": edges.tolist(), "ece": ece}


# ------------------------------------------------------------------ count intervals and tests


def poisson_interval(count: float, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson mean given one observed count."""
    from scipy.stats import chi2

    low = 0.0 if count <= 0 else chi2.ppf(alpha / 2, 2 * count) / 2
    high = chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return float(low), float(high)


def rate_ratio_interval(observed: float, expected: float, ref_observed: float | None = None,
                        ref_expected: float | None = None, alpha: float = 0.05) -> tuple[float, float, float]:
    """phi = (observed / expected) / (ref_observed / ref_expected), with an exact interval.

    Without a reference, phi = observed / expected (Garwood). With one, conditional on the
    total, observed ~ Binomial(observed + ref_observed, expected*phi / (expected*phi + ref_expected)):
    a Clopper-Pearson interval on that proportion maps to one on phi.
    """
    from scipy.stats import beta

    if expected <= 0:
        return math.nan, math.nan, math.nan
    if ref_observed is None:
        low, high = poisson_interval(observed, alpha)
        return observed / expected, low / expected, high / expected
    if ref_expected is None or ref_expected <= 0:
        return math.nan, math.nan, math.nan
    n = observed + ref_observed
    if n <= 0:
        return math.nan, 0.0, math.inf
    p_low = 0.0 if observed <= 0 else float(beta.ppf(alpha / 2, observed, n - observed + 1))
    p_high = 1.0 if observed >= n else float(beta.ppf(1 - alpha / 2, observed + 1, n - observed))

    def to_phi(share: float) -> float:
        return math.inf if share >= 1 else share * ref_expected / ((1 - share) * expected)

    point = math.inf if ref_observed <= 0 else (observed / expected) / (ref_observed / ref_expected)
    return point, to_phi(p_low), to_phi(p_high)


def rate_ratio_pvalues(observed, expected, ref_observed, ref_expected, phi0: float):
    """One-sided exact p-values at phi = phi0: (evidence phi < phi0, evidence phi > phi0).

    Vectorised over groups; `ref_observed=None` compares with expected alone (Poisson),
    otherwise with the reference (conditional binomial). NaN where there is nothing to test.
    """
    from scipy.stats import binom, poisson

    y = _f64(observed)
    e = _f64(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        if ref_observed is None:
            mean = e * phi0
            below = poisson.cdf(y, mean)
            above = poisson.sf(y - 1, mean)
            bad = ~(e > 0)
        else:
            yr = _f64(ref_observed)
            er = _f64(ref_expected)
            n = y + yr
            share = e * phi0 / (e * phi0 + er)
            below = binom.cdf(y, n, share)
            above = binom.sf(y - 1, n, share)
            bad = ~((e > 0) & (er > 0) & (n > 0))
    return np.where(bad, np.nan, below), np.where(bad, np.nan, above)


def band_pvalues(observed, expected, ref_observed, ref_expected, tolerance: float):
    """Two-sided p-value of H0: phi within [1/(1+tol), 1+tol]; small when the interval leaves the band."""
    below, _ = rate_ratio_pvalues(observed, expected, ref_observed, ref_expected, 1.0 / (1.0 + tolerance))
    _, above = rate_ratio_pvalues(observed, expected, ref_observed, ref_expected, 1.0 + tolerance)
    return np.minimum(1.0, 2.0 * np.minimum(below, above))
