"""A small simulated CTR world for the label-check tests: offers x OS with a known interaction.

The model's score is the true click probability of the reference world, so a window drawn
from the same world is calibrated by construction. `flip` reverses the offer x OS
interaction in the labels only (scores, offers and OS mix unchanged: the marginals hold);
`factor` scales the true CTR (calibration decay).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from checks.labelled import Rows, Segment

OFFERS = tuple(f"offer-{i:02d}" for i in range(20))
OSES = ("android", "ios", "windows")
OS_P = np.array([0.45, 0.35, 0.20])
OS_SIGN = np.array([-1.0, 1.0, 0.0])


def _catalog(ctr: float):
    rng = np.random.default_rng(1234)
    effect = rng.normal(0.0, 0.3, len(OFFERS))
    favoured = np.zeros(len(OFFERS))
    favoured[:5], favoured[5:10] = 1.0, -1.0  # +: better on ios, -: better on android
    return np.log(ctr / (1 - ctr)), effect, favoured


def simulate(n: int, seed: int, ctr: float = 0.02, factor: float = 1.0, flip: bool = False,
             interaction: float = 0.9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base, effect, favoured = _catalog(ctr)
    offer = rng.integers(0, len(OFFERS), n)
    os_ = rng.choice(len(OSES), n, p=OS_P)
    context = rng.normal(0.0, 0.8, n)  # what the model sees besides offer and OS
    logit = base + effect[offer] + context + interaction * favoured[offer] * OS_SIGN[os_]
    score = 1.0 / (1.0 + np.exp(-logit))
    true_logit = logit - (2 * interaction * favoured[offer] * OS_SIGN[os_] if flip else 0.0)
    truth = factor / (1.0 + np.exp(-true_logit))
    click = (rng.random(n) < truth).astype(np.int8)
    return {"offer_id": offer, "os": os_, "context": context, "score": score, "click": click}


def rows(data: dict[str, np.ndarray]) -> Rows:
    return Rows(data["score"].astype(np.float64), data["click"].astype(np.float64), {
        "offer_id": Segment(data["offer_id"].astype(np.int64), OFFERS),
        "os": Segment(data["os"].astype(np.int64), OSES),
    })


def table(data: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({
        "offer_id": pa.array(np.array(OFFERS)[data["offer_id"]]),
        "os": pa.array(np.array(OSES)[data["os"]]),
        "context": pa.array(data["context"]),
        "score": pa.array(data["score"]),
        "click": pa.array(data["click"]),
    })
