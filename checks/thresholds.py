"""Thresholds and the noise budget of the label-based checks (calibration, performance, concept).

Every comparison is judged twice, the way "the interval leaves the band" reads:
an effect (a calibration ratio's deviation, an AUC drop, a residual's change) is tested
against the warn and against the alert tolerance; it warns or alerts only when it is
*significantly beyond* that tolerance. Effects inside the tolerance never alert however
many rows a window has (an effect size, not a bare p-value), and small windows do not
alert on noise (the test knows their variance).

Many comparisons per window (features x segments x cells) share one noise budget:
Benjamini-Hochberg over the family's p-values, so a window with no change raises an
alarm with probability at most `alpha` whatever the family's size, not once per 1/alpha
comparisons.

Tolerances are static, or learned from the reference: the spread of a statistic between
reference chunks beyond what sampling noise explains (day-to-day variation the tests
cannot know about), times k, never below the static value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.errors import ConfigError

ThresholdMode = Literal["static", "learned"]
DEFAULT_K = (3.0, 5.0)  # warn, alert: multiples of the excess spread, as data_drift learns


@dataclass(frozen=True)
class Tolerance:
    """(warn, alert) tolerances of one effect; `learned` says the reference raised them."""

    warn: float
    alert: float
    learned: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.warn <= self.alert) or not math.isfinite(self.alert):
            raise ConfigError(f"thresholds: expected [warn, alert] with 0 <= warn <= alert, got {self.pair}")

    @property
    def pair(self) -> tuple[float, float]:
        return (self.warn, self.alert)

    def to_dict(self) -> dict:
        return {"warn": self.warn, "alert": self.alert, "learned": self.learned}


def excess_spread(chunk_effects, chunk_variances=None, guard: float = 0.01) -> float | None:
    """Spread of a statistic between reference chunks beyond its sampling noise (None: < 3 chunks).

    With known sampling variances this is the DerSimonian-Laird between-chunk std, taken as 0
    unless Cochran's Q says the chunks really differ more than their noise (p < `guard`):
    a noisy variance estimate from a few small chunks must not inflate the tolerances.
    Without variances, the plain std.
    """
    effects = np.asarray(chunk_effects, dtype=np.float64)
    variances = None if chunk_variances is None else np.asarray(chunk_variances, np.float64)
    keep = np.isfinite(effects) & (True if variances is None else np.isfinite(variances) & (variances > 0))
    if keep.sum() < 3:
        return None
    effects = effects[keep]
    if variances is None:
        return float(np.std(effects, ddof=1))
    from scipy.stats import chi2

    weights = 1.0 / variances[keep]
    mean = float(np.sum(weights * effects) / weights.sum())
    q = float(np.sum(weights * (effects - mean) ** 2))
    df = len(effects) - 1
    if chi2.sf(q, df) >= guard:
        return 0.0
    tau2 = (q - df) / (weights.sum() - np.sum(weights ** 2) / weights.sum())
    return math.sqrt(max(0.0, float(tau2)))


def learn_tolerance(static: tuple[float, float], chunk_effects, chunk_variances=None,
                    k: tuple[float, float] = DEFAULT_K) -> Tolerance:
    """Raise static tolerances to k x the between-chunk spread that sampling noise does not explain.

    `chunk_effects` are one statistic's deviations per reference chunk from the whole (so
    centred on 0: the tolerance is 0 + k x std); `chunk_variances` their sampling variances
    (known from the test), so that only the excess (overdispersion) counts. With fewer than
    3 usable chunks the static tolerances stand.
    """
    warn, alert = static
    spread = excess_spread(chunk_effects, chunk_variances)
    if spread is None:
        return Tolerance(warn, alert)
    learned_warn, learned_alert = k[0] * spread, k[1] * spread
    return Tolerance(max(warn, learned_warn), max(alert, learned_alert),
                     learned=learned_warn > warn or learned_alert > alert)


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN entries are not tested and stay NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="mergesort")]
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return out


def benjamini_hochberg(pvalues, q: float = 0.05) -> np.ndarray:
    """Which hypotheses BH rejects at false-discovery rate q (NaN p-values are never rejected)."""
    adjusted = bh_adjust(pvalues)
    return np.where(np.isfinite(adjusted), adjusted <= q, False)


def decide(p_warn, p_alert, alpha: float = 0.05) -> list[str]:
    """Statuses for one family: alert/warn where BH (at `alpha`) rejects "within the alert/warn tolerance".

    p_warn[i] tests H0: effect_i <= warn tolerance; p_alert[i] H0: effect_i <= alert tolerance.
    NaN means not testable (too few data): that comparison is `insufficient_data`.
    """
    p_warn = np.asarray(p_warn, dtype=np.float64)
    alerts = benjamini_hochberg(p_alert, alpha)
    warns = benjamini_hochberg(p_warn, alpha)
    statuses = []
    for i in range(len(p_warn)):
        if not np.isfinite(p_warn[i]):
            statuses.append("insufficient_data")
        elif alerts[i]:
            statuses.append("alert")
        elif warns[i]:
            statuses.append("warn")
        else:
            statuses.append("ok")
    return statuses


def normal_sf(z) -> np.ndarray:
    """P(Z >= z) for a standard normal (vectorised; NaN passes through)."""
    from scipy.special import ndtr

    return ndtr(-np.asarray(z, dtype=np.float64))


def one_sided_p(effect, se, tolerance: float) -> np.ndarray:
    """p-value of H0: true effect <= tolerance, for an estimate with standard error se (normal)."""
    effect = np.asarray(effect, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (effect - tolerance) / se, np.where(effect > tolerance, np.inf, -np.inf))
    return np.where(np.isfinite(effect), normal_sf(z), np.nan)
