"""Label maturity: judge calibration on windows whose conversions have not all arrived yet.

Conversions arrive hours to days after the impression. Waiting for every label to mature (the
`pending` status of the label checks) makes a calibration decay visible a week late. Instead:

- `MaturityCurve.learn`: from matured history (events older than the horizon), the share F(d)
  of eventual positives that had arrived d hours after the event, on a fixed grid, per segment
  (segments with too few positives fall back to the overall curve). F's sampling error is
  binomial in the positives it was learned from.
- `immature_calibration`: on a window observed at row ages a_i, a calibrated model expects
  sum p_i F(a_i) positives so far (not sum p_i). The change of the calibration ratio against
  the reference is judged on O / (r * sum p_i F(a_i)) (r: the reference's observed/predicted),
  with a log-scale interval that adds the curve's own uncertainty to the Poisson noise of O. It
  also gives the expected eventual positives, O / F_w with F_w = sum p F(a) / sum p, with an
  interval.
- `curve_shift`: whether the window's positives arrive as the curve says. Given that a
  positive arrived by age a, its delay d has F(d) / F(a) ~ Uniform(0, 1) under the curve,
  whatever the calibration; a Kolmogorov-Smirnov test on those values (with a minimum effect
  size) flags a tracking or attribution break - and then the immature correction is not
  trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_GRID_HOURS = tuple(float(h) for h in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48, 72, 96, 120, 144, 168))


@dataclass(frozen=True)
class MaturityCurve:
    """F(d): share of eventual positives observed by d hours after the event; F(horizon) = 1."""

    grid: tuple[float, ...]
    share: tuple[float, ...]
    positives: int
    segments: dict = field(default_factory=dict)  # value -> MaturityCurve (no nested segments)

    @property
    def horizon(self) -> float:
        return self.grid[-1]

    @classmethod
    def learn(cls, delays_hours: np.ndarray, grid: tuple[float, ...] = DEFAULT_GRID_HOURS,
              segments: np.ndarray | None = None, min_positives: int = 200) -> "MaturityCurve":
        """From the delays of matured positives (censored at the horizon: later arrivals do not count)."""
        delays = np.asarray(delays_hours, dtype=np.float64)
        keep = np.isfinite(delays) & (delays >= 0) & (delays <= grid[-1])
        whole = cls._of(delays[keep], grid)
        if segments is None:
            return whole
        values = np.asarray(segments, dtype=object)[keep]
        by_value = {}
        for value in np.unique(values):
            mask = values == value
            if mask.sum() >= min_positives:
                by_value[str(value)] = cls._of(delays[keep][mask], grid)
        return cls(whole.grid, whole.share, whole.positives, by_value)

    @classmethod
    def _of(cls, delays: np.ndarray, grid: tuple[float, ...]) -> "MaturityCurve":
        if len(delays) == 0:
            raise ValueError("maturity curve: no matured positives to learn from")
        ordered = np.sort(delays)
        share = np.searchsorted(ordered, np.asarray(grid), side="right") / len(ordered)
        return cls(tuple(grid), tuple(float(s) for s in share), int(len(ordered)))

    def at(self, ages_hours, segments=None) -> np.ndarray:
        """F at each row's age (0 before any arrival, 1 from the horizon on), its segment's curve when learned."""
        ages = np.asarray(ages_hours, dtype=np.float64)
        grid = np.concatenate([[0.0], self.grid])
        result = np.interp(ages, grid, np.concatenate([[0.0], self.share]), left=0.0, right=1.0)
        if segments is not None and self.segments:
            values = np.asarray(segments, dtype=object)
            for value, curve in self.segments.items():
                mask = values == value
                if mask.any():
                    result[mask] = curve.at(ages[mask])
        return result

    def sd_at(self, ages_hours, segments=None) -> np.ndarray:
        """Sampling sd of F at each row's age (binomial in the positives the curve came from)."""
        share = self.at(ages_hours, segments)
        counts = np.full(share.shape, float(self.positives))
        if segments is not None and self.segments:
            values = np.asarray(segments, dtype=object)
            for value, curve in self.segments.items():
                counts[values == value] = curve.positives
        return np.sqrt(share * (1 - share) / counts)

    def to_dict(self) -> dict:
        return {"grid": list(self.grid), "share": list(self.share), "positives": self.positives,
                "segments": {k: c.to_dict() for k, c in self.segments.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "MaturityCurve":
        return cls(tuple(data["grid"]), tuple(data["share"]), int(data["positives"]),
                   {k: cls.from_dict(v) for k, v in (data.get("segments") or {}).items()})


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def immature_calibration(scores: np.ndarray, observed: np.ndarray, ages_hours: np.ndarray, curve: MaturityCurve,
                         segments=None, reference_ratio: float = 1.0, tolerance: tuple[float, float] = (0.025, 0.05),
                         alpha: float = 0.05, min_positives: float = 20,
                         reference_positives: float | None = None) -> dict:
    """Calibration change on a window whose labels are still arriving (see the module notes).

    `observed`: 1 where a positive has arrived by now; `ages_hours`: now - event time per row;
    `reference_ratio`: observed / predicted positives on the (matured) reference, measured on
    `reference_positives` positives (its Poisson error joins the interval; None: taken as exact).
    """
    scores = np.asarray(scores, dtype=np.float64)
    share = curve.at(ages_hours, segments)
    share_sd = curve.sd_at(ages_hours, segments)
    predicted = float(scores.sum())
    expected_so_far = float((scores * share).sum())
    positives = float(np.asarray(observed, dtype=np.float64).sum())
    maturity = expected_so_far / predicted if predicted > 0 else 0.0
    # One curve serves every row, so its errors add up (sd of the p-weighted mean, not /sqrt(n)).
    maturity_sd = float((scores * share_sd).sum() / predicted) if predicted > 0 else math.inf
    out = {"rows": int(len(scores)), "predicted_positives": predicted, "observed_so_far": positives,
           "expected_so_far": expected_so_far, "maturity": maturity, "maturity_sd": maturity_sd}
    if positives < min_positives or expected_so_far * reference_ratio < min_positives or maturity <= 0:
        return {**out, "status": "insufficient_data"}
    z = _z(alpha)
    log_change = math.log(positives / (reference_ratio * expected_so_far))
    reference_var = 1 / reference_positives if reference_positives else 0.0
    sd = math.sqrt(1 / positives + (maturity_sd / maturity) ** 2 + reference_var)
    eventual = positives / maturity
    eventual_sd = eventual * sd
    # The calibration ratio sum(p)/sum(y) moves by the inverse of observed/expected.
    status = "ok"
    for name, band in (("warn", tolerance[0]), ("alert", tolerance[1])):
        if abs(log_change) - math.log1p(band) > z * sd:  # the whole interval lies outside the band
            status = name
    return {**out, "expected_eventual_positives": eventual,
            "eventual_ci": (max(positives, eventual - z * eventual_sd), eventual + z * eventual_sd),
            "relative_ratio": math.exp(-log_change),
            "relative_ci": (math.exp(-log_change - z * sd), math.exp(-log_change + z * sd)),
            "log_sd": sd, "status": status}


def curve_shift(delays_hours: np.ndarray, ages_hours: np.ndarray, curve: MaturityCurve, segments=None,
                alpha: float = 0.01, min_distance: float = 0.1, min_positives: int = 50) -> dict:
    """Do the window's arrived positives come at the delays the curve says? (KS on F(d)/F(a))."""
    from scipy.stats import kstest

    delays = np.asarray(delays_hours, dtype=np.float64)
    ages = np.asarray(ages_hours, dtype=np.float64)
    if len(delays) < min_positives:
        return {"positives": int(len(delays)), "status": "insufficient_data"}
    limit = curve.at(ages, segments)
    ok = limit > 0
    u = np.clip(curve.at(delays[ok], None if segments is None else np.asarray(segments, dtype=object)[ok])
                / limit[ok], 0, 1)
    test = kstest(u, "uniform")
    shifted = test.pvalue < alpha and test.statistic > min_distance
    # Mean of u above 1/2: positives arrive nearer their age than the curve says, i.e. later
    # (a tracking delay); below: earlier.
    return {"positives": int(ok.sum()), "ks_distance": float(test.statistic), "p_value": float(test.pvalue),
            "mean_position": float(u.mean()), "direction": "later" if u.mean() > 0.5 else "earlier",
            "status": "alert" if shifted else "ok"}
