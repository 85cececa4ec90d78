"""Synthetic training examples keyed by `id`, shared by the skew tests of both engines."""

from __future__ import annotations

import numpy as np
import pandas as pd


def events(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 100.0, n).round()
    tenure[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "price": rng.lognormal(3.0, 0.5, n).round(2),
        "tenure": tenure,
        "rate": rng.random(n),
        "device": rng.choice(["mobile", "desktop", "tablet"], n, p=[0.5, 0.4, 0.1]),
        "slot": rng.choice(["1", "2", "3"], n),
    })
