"""`recalibrate`: isotonic or Platt scaling on top of the production model.

The cheap repair for calibration decay (sum of p / sum of clicks drifting from 1 while
the ranking is fine): fit a monotone map from the current model's score to the observed
click rate on a recent labelled window, and save base model + map as a new version.
The base model is copied into the version (`base/`), so every version stands alone; the
map is JSON (isotonic thresholds, or Platt's two coefficients) — no pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from core.errors import ConfigError
from retrain.base import (Dataset, ProgressFn, StrictParams, Trainer, TrainedModel, TrainingError, load_model,
                          register_trainer)

_EPS = 1e-6


class RecalibrateParams(StrictParams):
    method: Literal["isotonic", "platt"] = "isotonic"
    min_rows: int = Field(1000, ge=1, description="refuse to fit on fewer labelled rows")


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step fit of labels on scores.
    Returns the block thresholds (x) and fitted rates (y), as scikit-learn keeps them."""
    order = np.argsort(scores, kind="mergesort")
    x, y = scores[order], labels[order].astype(np.float64)
    # Equal scores form one block first (their mean label), as in scikit-learn.
    ux, start = np.unique(x, return_index=True)
    sums = np.add.reduceat(y, start)
    counts = np.diff(np.append(start, len(x))).astype(np.float64)
    values, weights, lows, highs = [], [], [], []
    for i in range(len(ux)):
        v, w, lo, hi = sums[i] / counts[i], counts[i], ux[i], ux[i]
        while values and values[-1] >= v:  # pool with the previous block while it violates
            pv, pw = values.pop(), weights.pop()
            v = (pv * pw + v * w) / (pw + w)
            w += pw
            lo = lows.pop()
            highs.pop()
        values.append(v)
        weights.append(w)
        lows.append(lo)
        highs.append(hi)
    # Each block contributes its two ends (one when it is a single score).
    xs, ys = [], []
    for v, lo, hi in zip(values, lows, highs):
        xs += [lo] if lo == hi else [lo, hi]
        ys += [v] if lo == hi else [v, v]
    return np.asarray(xs), np.asarray(ys)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """p = σ(a · logit(score) + b) by Newton's method on the log loss (unregularised)."""
    z, y = _logit(scores), labels.astype(np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * z + b)))
        g = np.array([np.dot(p - y, z), np.sum(p - y)])
        w = p * (1 - p)
        h = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


class RecalibratedModel(TrainedModel):
    trainer = "recalibrate"

    def __init__(self, base: TrainedModel, calibration: dict, params: dict) -> None:
        self.base, self.calibration, self.params = base, calibration, params
        self.features, self.labels = base.features, base.labels

    def _map(self, scores: np.ndarray) -> np.ndarray:
        c = self.calibration
        if c["method"] == "isotonic":
            return np.interp(scores, c["x"], c["y"])  # clipped to the end values outside the range
        return 1 / (1 + np.exp(-(c["a"] * _logit(scores) + c["b"])))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._map(self.base.predict(frame))

    def predict_tasks(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        tasks = self.base.predict_tasks(frame)
        primary = next(iter(tasks))
        return dict(tasks, **{primary: self._map(tasks[primary])})

    def _save_files(self, directory: Path) -> None:
        self.base.save(directory / "base")
        (directory / "calibration.json").write_text(json.dumps(self.calibration) + "\n")


@register_trainer("recalibrate")
class RecalibrateTrainer(Trainer):
    Params = RecalibrateParams
    needs_base = True

    def fit(self, train: Dataset, valid: Dataset, params: RecalibrateParams,
            progress: ProgressFn | None = None, base: TrainedModel | None = None) -> RecalibratedModel:
        if base is None:
            raise ConfigError("trainer recalibrate needs a production model to recalibrate (none is promoted)")
        data = pd.concat([train.frame, valid.frame], ignore_index=True)
        Dataset(data, train.features, train.labels[:1]).check_trainable("recalibration window")
        if len(data) < params.min_rows:
            raise TrainingError(f"recalibration window has {len(data)} labelled rows, fewer than "
                                f"params.min_rows={params.min_rows}")
        scores, labels = base.predict(data), data[train.labels[0]].to_numpy(dtype=np.float64)
        if params.method == "isotonic":
            x, y = fit_isotonic(scores, labels)
            calibration = {"method": "isotonic", "x": x.tolist(), "y": y.tolist()}
        else:
            a, b = fit_platt(scores, labels)
            calibration = {"method": "platt", "a": a, "b": b}
        if progress is not None:
            progress(1, 1, f"{params.method} fitted on {len(data)} rows")
        return RecalibratedModel(base, calibration, dict(params.model_dump(), base_trainer=base.trainer))

    def load(self, directory: Path, header: dict) -> RecalibratedModel:
        calibration = json.loads((directory / "calibration.json").read_text())
        return RecalibratedModel(load_model(directory / "base"), calibration, header["params"])
