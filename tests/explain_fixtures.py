"""Small synthetic LightGBM models with known structure for the explain/ tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic(n: int, seed: int, flip: bool = False, shift: float = 0.0) -> pd.DataFrame:
    """strong drives the label, weak a little, noise not at all; a x b interact (sign flips with `flip`)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "strong": rng.normal(size=n) + shift,
        "weak": rng.normal(size=n),
        "noise": rng.normal(size=n),
        "a": rng.choice([-1.0, 1.0], n),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n), categories=["red", "green", "blue"]),
    })
    sign = -1.0 if flip else 1.0
    z = (-0.5 + 1.5 * (frame.strong - shift) + 0.3 * frame.weak
         + sign * 1.2 * frame.a * np.where(frame.colour == "red", 1.0, -1.0))
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    return frame


def train(frame: pd.DataFrame, path, trees: int = 60, **params) -> str:
    import lightgbm as lgb

    features = [c for c in frame.columns if c != "label"]
    booster = lgb.train(dict(objective="binary", learning_rate=0.1, num_leaves=15, min_data_in_leaf=50,
                             num_threads=2, deterministic=True, force_row_wise=True, seed=0, verbose=-1, **params),
                        lgb.Dataset(frame[features], label=frame["label"]), num_boost_round=trees)
    booster.save_model(str(path))
    return str(path)
