"""Simulated rollouts for the sequential test: hourly sums per arm, vectorised over rollouts.

Each hour each arm serves `per_hour` impressions; a click happens with the arm's CTR and its
price is one of a few levels (so revenue per impression = price x click has a known law).
The model predicts `predicted` for every impression (calibrated when it equals the CTR).
Returns cumulative ArmSums of shape (rollouts, hours): look h sees everything up to hour h.
"""

from __future__ import annotations

import numpy as np

from checks.sequential import ArmSums

PRICES = np.array([5.0, 20.0, 40.0, 120.0])
PRICE_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])


def simulate_arm(rng: np.random.Generator, rollouts: int, hours: int, per_hour: int, ctr: float,
                 predicted: float | None = None) -> ArmSums:
    predicted = ctr if predicted is None else predicted
    cells = np.concatenate([PRICE_WEIGHTS * ctr, PRICE_WEIGHTS * (1.0 - ctr)])
    counts = rng.multinomial(per_hour, cells, size=(rollouts, hours))[..., :len(PRICES)].astype(float)
    clicks = counts.sum(-1)
    revenue = counts @ PRICES
    revenue_sq = counts @ PRICES ** 2
    n = np.full((rollouts, hours), float(per_hour))
    hourly = ArmSums(n, clicks, n * predicted, n * predicted * (1 - predicted), revenue, revenue_sq)
    return ArmSums(*(np.cumsum(getattr(hourly, f), axis=1) for f in
                     ("impressions", "clicks", "predicted", "predicted_var", "revenue", "revenue_sq")))
