"""`lightgbm`: a binary CTR model with early stopping on validation log loss.

Categoricals use LightGBM's native handling on vocabulary codes (out of vocabulary ->
NaN, LightGBM's missing category), numerics go in as they are. The booster is saved in
LightGBM's text format next to the vocabulary (JSON).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from core.errors import require
from retrain.base import Dataset, FeatureSet, ProgressFn, StrictParams, Trainer, TrainedModel, register_trainer
from retrain.encoding import Vocabulary
from retrain.resources import free_cores


class LightGBMParams(StrictParams):
    learning_rate: float = Field(0.08, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=131072)
    min_data_in_leaf: int = Field(200, ge=1)
    num_boost_round: int = Field(300, ge=1, le=100_000)
    early_stopping_rounds: int = Field(30, ge=1)
    lambda_l2: float = Field(1.0, ge=0)
    feature_fraction: float = Field(1.0, gt=0, le=1)
    bagging_fraction: float = Field(1.0, gt=0, le=1)
    bagging_freq: int = Field(0, ge=0)
    cat_smooth: float = Field(10.0, ge=0)
    min_data_per_group: int = Field(100, ge=1)
    max_cat_to_onehot: int = Field(4, ge=1)
    min_category_count: int = Field(1, ge=1, description="rarer values are out of vocabulary")
    num_threads: int | None = Field(None, ge=1, description="None: the cores free now")
    seed: int = 0


def matrix(frame: pd.DataFrame, features: FeatureSet, vocab: Vocabulary) -> np.ndarray:
    """Model input: numerics as they are, then categoricals as vocabulary codes (NaN if unknown)."""
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, f in enumerate(features.numeric):
        out[:, j] = frame[f].to_numpy(dtype=np.float64, na_value=np.nan)
    codes = vocab.encode(frame, features.categorical)
    out[:, len(features.numeric):] = np.where(codes < 0, np.nan, codes)
    return out


class LightGBMModel(TrainedModel):
    trainer = "lightgbm"

    def __init__(self, booster, features: FeatureSet, vocab: Vocabulary, labels: tuple[str, ...],
                 params: dict, info: dict | None = None) -> None:
        self.booster = booster
        self.features = features
        self.vocab = vocab
        self.labels = tuple(labels)
        self.params = params
        self.info = info or {}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        threads = int(self.params.get("num_threads") or free_cores())
        return np.asarray(self.booster.predict(matrix(frame, self.features, self.vocab), num_threads=threads),
                          dtype=np.float64)

    def _save_files(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.txt"))
        (directory / "vocabulary.json").write_text(json.dumps(self.vocab.to_dict(), indent=2) + "\n")

    @classmethod
    def from_file(cls, model_file: Path, features: FeatureSet, vocabulary: dict[str, list[str]],
                  labels: tuple[str, ...], params: dict | None = None) -> "LightGBMModel":
        """Wrap a booster trained elsewhere (e.g. the demo world's model) whose categoricals
        are codes of the given vocabulary, in the order numeric then categorical."""
        lgb = require("lightgbm")
        booster = lgb.Booster(model_file=str(model_file))
        if booster.num_feature() != len(features.names):
            raise ValueError(f"{model_file}: {booster.num_feature()} features, expected {len(features.names)}")
        vocab = Vocabulary({f: tuple(vocabulary[f]) for f in features.categorical})
        return cls(booster, features, vocab, labels, dict(params or {}))


@register_trainer("lightgbm")
class LightGBMTrainer(Trainer):
    Params = LightGBMParams

    def fit(self, train: Dataset, valid: Dataset, params: LightGBMParams,
            progress: ProgressFn | None = None, base: TrainedModel | None = None) -> LightGBMModel:
        lgb = require("lightgbm")
        train.check_trainable("training set")
        features = train.features
        vocab = Vocabulary.fit(train.frame, features.categorical, min_count=params.min_category_count)
        n_num = len(features.numeric)
        categorical = list(range(n_num, n_num + len(features.categorical)))
        names = list(features.names)
        dtrain = lgb.Dataset(matrix(train.frame, features, vocab), label=train.label(), feature_name=names,
                             categorical_feature=categorical, params={"verbose": -1}, free_raw_data=True)
        dvalid = lgb.Dataset(matrix(valid.frame, features, vocab), label=valid.label(), reference=dtrain)
        p = params.model_dump()
        rounds, patience = p.pop("num_boost_round"), p.pop("early_stopping_rounds")
        p.pop("min_category_count")
        p["num_threads"] = params.num_threads or free_cores()
        lgb_params = dict(p, objective="binary", metric="binary_logloss", deterministic=True,
                          force_row_wise=True, verbose=-1)

        def report(env) -> None:
            if progress is not None:
                loss = env.evaluation_result_list[0][2] if env.evaluation_result_list else float("nan")
                progress(env.iteration + 1, rounds, f"tree {env.iteration + 1}, valid log loss {loss:.5f}")

        callbacks = [report]
        if len(valid):
            callbacks.append(lgb.early_stopping(patience, first_metric_only=True, verbose=False))
        started = time.perf_counter()
        booster = lgb.train(lgb_params, dtrain, num_boost_round=rounds,
                            valid_sets=[dvalid] if len(valid) else None, callbacks=callbacks)
        rounds_run, best = booster.current_iteration(), booster.best_iteration or booster.current_iteration()
        if best < rounds_run:
            # Keep only the trees up to the best validation round.
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        info = {"trees": booster.num_trees(), "best_iteration": best, "rounds_run": rounds_run,
                "max_rounds": rounds, "early_stopped": rounds_run < rounds, "threads": p["num_threads"],
                "train_seconds": time.perf_counter() - started}
        return LightGBMModel(booster, features, vocab, train.labels, params.model_dump(), info)

    def load(self, directory: Path, header: dict) -> LightGBMModel:
        from core.models import check_text_model

        lgb = require("lightgbm")
        check_text_model(directory / "model.txt")  # LightGBM segfaults on some damaged files instead of raising
        booster = lgb.Booster(model_file=str(directory / "model.txt"))
        vocab = Vocabulary.from_dict(json.loads((directory / "vocabulary.json").read_text()))
        return LightGBMModel(booster, FeatureSet.from_dict(header["features"]), vocab,
                             tuple(header["labels"]), header["params"])
