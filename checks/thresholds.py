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
cannot know about), times k, never below the static value and never above `learned_cap`
times it (results say when and how far a tolerance was widened, and when the cap held).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.errors import ConfigError

ThresholdMode = Literal["static", "learned", "spread"]
THRESHOLD_MODES = ("static", "learned", "spread")
DEFAULT_K = (3.0, 5.0)  # warn, alert: multiples of the excess spread, as data_drift learns
SPREAD_K = (2.0, 3.0)  # warn, alert: multiples of the chunk-to-chunk std at the window's size (NannyML: 3)
MIN_SPREAD_CHUNKS = 8  # reference chunks of the window's size the spread mode needs; fewer: static


DEFAULT_CAP = 3.0  # a learned tolerance is at most this multiple of the static one


@dataclass(frozen=True)
class Tolerance:
    """(warn, alert) tolerances of one effect; `learned` says the reference raised them.

    A learned tolerance keeps the static pair it started from (`static`) and says whether the
    cap (`cap` x static) held it down, so output can show how far and why it was widened.
    """

    warn: float
    alert: float
    learned: bool = False
    static: tuple[float, float] | None = None
    capped: bool = False
    uncapped: tuple[float, float] | None = None  # what the reference's spread asked for, when capped
    sigma: float | None = None  # spread mode: the effect's std at the window's size (tolerance = k x sigma)

    def __post_init__(self) -> None:
        if not (0 <= self.warn <= self.alert) or not math.isfinite(self.alert):
            raise ConfigError(f"thresholds: expected [warn, alert] with 0 <= warn <= alert, got {self.pair}")

    @property
    def pair(self) -> tuple[float, float]:
        return (self.warn, self.alert)

    @property
    def widened_by(self) -> float:
        """alert over the static alert tolerance (1.0 when not widened)."""
        if self.static is None or self.static[1] <= 0:
            return 1.0
        return self.alert / self.static[1]

    def to_dict(self) -> dict:
        out = {"warn": self.warn, "alert": self.alert, "learned": self.learned}
        if self.sigma is not None:
            out.update(basis="chunk_spread", sigma=self.sigma)
        if self.static is not None:
            out.update(static_warn=self.static[0], static_alert=self.static[1], widened_by=self.widened_by,
                       capped=self.capped)
            if self.uncapped is not None:
                out.update(uncapped_warn=self.uncapped[0], uncapped_alert=self.uncapped[1])
        return out

    def note(self, name: str, digits: int = 4) -> str | None:
        """One line for tables, reports and alerts when the reference widened this tolerance."""
        if not self.learned or self.static is None:
            return None
        text = (f"{name} tolerance widened by the reference's spread: warn {self.static[0]:.{digits}g} -> "
                f"{self.warn:.{digits}g}, alert {self.static[1]:.{digits}g} -> {self.alert:.{digits}g} "
                f"(x{self.widened_by:.2f})")
        if self.capped and self.uncapped is not None:
            text += f", capped (the spread asked for {self.uncapped[0]:.{digits}g}/{self.uncapped[1]:.{digits}g})"
        return text


def tolerance_notes(tolerances: dict[str, Tolerance]) -> list[str]:
    """The widened-tolerance lines of one result, for `details["tolerance_notes"]`."""
    return [line for name, tol in tolerances.items() if (line := tol.note(name)) is not None]


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
                    k: tuple[float, float] = DEFAULT_K, cap: float = DEFAULT_CAP,
                    ceiling: tuple[float, float] | None = None) -> Tolerance:
    """Raise static tolerances to k x the between-chunk spread that sampling noise does not explain.

    `chunk_effects` are one statistic's deviations per reference chunk from the whole (so
    centred on 0: the tolerance is 0 + k x std); `chunk_variances` their sampling variances
    (known from the test), so that only the excess (overdispersion) counts. With fewer than
    3 usable chunks the static tolerances stand. A learned tolerance never exceeds `ceiling`
    (default `cap` x static): a reference that varies wildly must not make an effect
    unreachable; the result says when the cap held.
    """
    warn, alert = static
    spread = excess_spread(chunk_effects, chunk_variances)
    if spread is None:
        return Tolerance(warn, alert)
    learned_warn, learned_alert = max(warn, k[0] * spread), max(alert, k[1] * spread)
    top_warn, top_alert = ceiling if ceiling is not None else (cap * warn, cap * alert)
    capped = learned_warn > top_warn or learned_alert > top_alert
    return Tolerance(min(learned_warn, top_warn), min(learned_alert, top_alert),
                     learned=learned_warn > warn or learned_alert > alert, static=(warn, alert), capped=capped,
                     uncapped=(learned_warn, learned_alert) if capped else None)


def validate_mode(mode: str, learned_cap: float, allowed=THRESHOLD_MODES) -> None:
    if mode not in allowed:
        raise ConfigError(f"threshold_mode: expected {' or '.join(allowed)}, got {mode!r}")
    if not learned_cap >= 1:
        raise ConfigError(f"learned_cap: must be at least 1, got {learned_cap}")


def spread_tolerance(excess: float | None, sampling_se: float, k: tuple[float, float] = SPREAD_K) -> Tolerance | None:
    """Spread mode: tolerances k x the std of a window-versus-reference effect, at the window's size.

    NannyML's band is mean +- 3 std of the statistic over reference chunks of the window's size.
    That std has two parts, kept apart here: the sampling error, known from the test for this
    very window (`sampling_se`, window and reference together), and the chunk-to-chunk
    variation beyond it (`excess`: `excess_spread` over reference chunks of the window's size,
    0 unless Cochran's Q says the chunks really differ). A few chunks then cannot make the band
    narrower than the window's own noise, and pure noise gives the normal tail rate.
    """
    if excess is None or not math.isfinite(sampling_se):
        return None
    scale = math.hypot(sampling_se, excess)
    return Tolerance(k[0] * scale, k[1] * scale, sigma=scale)


def gated_p(effect, p_zero, tolerance: float) -> float:
    """Spread mode: the effect must reach the tolerance *and* be significantly above zero."""
    if effect is None or not math.isfinite(effect) or not math.isfinite(p_zero):
        return math.nan
    return float(p_zero) if effect >= tolerance else 1.0


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
