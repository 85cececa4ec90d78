"""Fit a small DCN-V2 and write its loss history as JSON (argv[1]); run it plainly or under
torchrun (`python -m torch.distributed.run --nproc_per_node 2 tests/ddp_fit.py OUT`)."""

import json
import os
import sys

import numpy as np
import pandas as pd


def data(n: int, seed: int):
    from retrain.base import Dataset, FeatureSet

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=n), "c": rng.integers(0, 20, n), "d": rng.integers(0, 5, n)})
    logit = 1.5 * frame["x"] + 0.3 * (frame["c"] % 3) - 0.5 * (frame["d"] == 2) - 1.0
    frame["click"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Dataset(frame, FeatureSet(("x",), ("c", "d")), ("click",))


def fit(out: str) -> None:
    from retrain.base import get_trainer

    trainer = get_trainer("dcn_v2")
    params = trainer.validate_params({"epochs": 3, "patience": 3, "batch_size": 256, "embedding_dim": 4,
                                      "deep_layers": [16], "cross_layers": 1, "device": "cpu", "num_threads": 1,
                                      "min_category_count": 1, "learning_rate": 0.01})
    model = trainer.fit(data(2048, 0), data(512, 1), params)
    if int(os.environ.get("RANK", 0)) == 0:
        with open(out, "w") as handle:
            json.dump({"history": model.info["history"], "processes": model.info["processes"]}, handle)


if __name__ == "__main__":
    fit(sys.argv[1])
