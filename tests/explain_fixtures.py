"""Small synthetic LightGBM models with known structure for the explain/ tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


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


def deep_synthetic(n: int, seed: int) -> pd.DataFrame:
    """For the deep rankers: `strong` drives the label, `noise` does not; `os` adds a little."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"strong": rng.normal(size=n), "noise": rng.normal(size=n),
                          "os": rng.choice(["android", "ios", "web"], n)})
    z = -0.3 + 2.5 * frame.strong + np.where(frame.os == "ios", 0.4, 0.0)
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    return frame


def train_dcn(frame: pd.DataFrame, directory, trainer: str = "dcn_v2", labels=("label",)) -> str:
    """A tiny DCN-V2 (or ESMM, with two labels) fitted through the retrain trainer and saved as a
    model directory."""
    from retrain.base import Dataset, FeatureSet, get_trainer

    fitter = get_trainer(trainer)
    params = fitter.validate_params({"embedding_dim": 3, "deep_layers": [16], "cross_layers": 1, "epochs": 6,
                                     "batch_size": 256, "learning_rate": 0.01, "min_category_count": 1,
                                     "device": "cpu", "num_threads": 1, "seed": 0})
    data = Dataset(frame, FeatureSet(("strong", "noise"), ("os",)), tuple(labels))
    cut = int(len(frame) * 0.8)
    fitter.fit(data.take(range(cut)), data.take(range(cut, len(frame))), params).save(directory)
    return str(directory)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Import into a test module to run its torch code on one thread: the models are tiny, and
    on a shared 2-core machine OpenMP threads only spin-wait for a busy core."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
