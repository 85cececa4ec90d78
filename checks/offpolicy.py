"""Off-policy estimates: what CTR (or revenue per impression) would a candidate policy get on the
traffic the serving policy logged?

Inputs per logged impression: the reward r (click, or price x click), the serving propensity
p0 = P(serving policy shows the logged offer | context) as logged, and the candidate's
probability p1 of showing that same offer (1/0 for a deterministic ranker). With w = p1 / p0:

- IPS: mean(w r), unbiased when p0 > 0 wherever p1 > 0;
- SNIPS: sum(w r) / sum(w), self-normalised: a little biased, much less variance;
- DR (doubly robust): mean(q1 + w (r - q0)), where q0 is a reward model's prediction for the
  logged offer and q1 its expected reward under the candidate (sum over offers of p1 x
  prediction; for a deterministic candidate the prediction for its chosen offer). Unbiased if
  either the propensities or the reward model are right, and with less variance than IPS
  when the model is roughly right.

Each comes with a normal (1 - alpha) interval (SNIPS by the delta method) and the effective
sample size (sum w)^2 / sum w^2: how many on-policy impressions the estimate is worth. All
functions reduce along the last axis, so one call estimates many simulated logs at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import SchemaError

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    low: float
    high: float
    se: float
    ess: float
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def weights(propensity, target, where: str = "logs") -> np.ndarray:
    """w = p1 / p0, refusing propensities outside (0, 1] or target probabilities outside [0, 1]."""
    p0 = np.asarray(propensity, dtype=float)
    p1 = np.asarray(target, dtype=float)
    if not np.all((p0 > 0) & (p0 <= 1)):
        bad = p0[~((p0 > 0) & (p0 <= 1))].ravel()[0]
        raise SchemaError(f"{where}: logged propensities must lie in (0, 1], found {bad:g}")
    if not np.all((p1 >= 0) & (p1 <= 1)):
        bad = p1[~((p1 >= 0) & (p1 <= 1))].ravel()[0]
        raise SchemaError(f"{where}: target probabilities must lie in [0, 1], found {bad:g}")
    return p1 / p0


def effective_sample_size(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    return np.square(w.sum(-1)) / np.maximum(np.square(w).sum(-1), 1e-300)


def ips(rewards, w) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, standard error) along the last axis."""
    terms = np.asarray(w) * np.asarray(rewards, dtype=float)
    n = terms.shape[-1]
    return terms.mean(-1), terms.std(-1, ddof=1) / math.sqrt(n)


def snips(rewards, w) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=float)
    r = np.asarray(rewards, dtype=float)
    total = np.maximum(w.sum(-1), 1e-300)
    value = (w * r).sum(-1) / total
    se = np.sqrt((np.square(w) * np.square(r - value[..., None])).sum(-1)) / total
    return value, se


def doubly_robust(rewards, w, q_logged, q_target) -> tuple[np.ndarray, np.ndarray]:
    terms = np.asarray(q_target, dtype=float) + np.asarray(w) * (np.asarray(rewards, dtype=float)
                                                                  - np.asarray(q_logged, dtype=float))
    n = terms.shape[-1]
    return terms.mean(-1), terms.std(-1, ddof=1) / math.sqrt(n)


def estimate(rewards, propensity, target, q_logged=None, q_target=None, alpha: float = 0.05,
             where: str = "logs") -> dict[str, Estimate]:
    """IPS, SNIPS and (with a reward model's q_logged and q_target) DR for one log."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 1 or len(r) < 2:
        raise SchemaError(f"{where}: off-policy estimates need at least 2 logged rows, found {r.size}")
    w = weights(propensity, target, where)
    z = _z(alpha)
    ess = float(effective_sample_size(w))
    found = {"ips": ips(r, w), "snips": snips(r, w)}
    if q_logged is not None and q_target is not None:
        found["dr"] = doubly_robust(r, w, q_logged, q_target)
    return {name: Estimate(name, float(v), float(v - z * se), float(v + z * se), float(se), ess, len(r))
            for name, (v, se) in found.items()}
