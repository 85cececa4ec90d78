"""Torch trainers: `dcn_v2`, and the multi-task `esmm` and `mmoe` (all in the `deep` extra).

One training loop for all three (retrain/torch_loop.py). On CUDA: the training tensors
go to the device once (pinned host memory when they do not fit), bf16 autocast, large
batches, optional `torch.compile`; under torchrun, DistributedDataParallel. On the CPU the
same code runs in float32 with as many threads as cores are free. The batch size defaults
to ~64 steps per epoch. Early stopping on the validation loss keeps the best epoch's
weights; the holdout is then scored on the training device. Weights are saved as a state dict in
safetensors (or `torch.save`, loaded back with `weights_only=True`); the vocabulary,
numeric statistics and architecture as JSON. torch is imported inside functions, so
registering these trainers costs nothing when the extra is not installed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from core.errors import ConfigError, require
from retrain.base import Dataset, FeatureSet, ProgressFn, StrictParams, Trainer, TrainedModel, register_trainer
from retrain.encoding import NumericScaler, Vocabulary
from retrain.torch_loop import PREDICT_BATCH



class TorchParams(StrictParams):
    embedding_dim: int = Field(16, ge=1, le=1024)
    min_category_count: int = Field(2, ge=1, description="rarer values share the out-of-vocabulary bucket")
    max_vocabulary: int | None = Field(1_000_000, ge=1, description="per feature")
    hash_buckets: int = Field(0, ge=0, description="> 0: hash categories instead of a vocabulary")
    deep_layers: tuple[int, ...] = (256, 128)
    dropout: float = Field(0.0, ge=0, lt=1)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int | None = Field(None, ge=1, description="global batch; None: ~64 steps per epoch")
    epochs: int = Field(5, ge=1, le=1000)
    patience: int = Field(2, ge=1, description="epochs without validation improvement before stopping")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(True, description="bf16 autocast on CUDA (the CPU always runs float32)")
    compile: bool = Field(False, description="torch.compile the module for training")
    num_threads: int | None = Field(None, ge=1, description="CPU threads; None: the cores free now")
    seed: int = 0


class DCNParams(TorchParams):
    cross_layers: int = Field(2, ge=0, le=16)
    cross_rank: int | None = Field(None, ge=1, description="None: full-rank; else low-rank mixture of experts")
    experts: int = Field(4, ge=1, le=64)
    structure: Literal["stacked", "parallel"] = "parallel"


class ESMMParams(TorchParams):
    deep_layers: tuple[int, ...] = (128, 64)
    cross_layers: int = Field(1, ge=0, le=16)
    cross_rank: int | None = Field(None, ge=1)
    experts: int = Field(4, ge=1, le=64)


class MMoEParams(TorchParams):
    deep_layers: tuple[int, ...] = (64,)
    experts: int = Field(4, ge=1, le=64)
    expert_layers: tuple[int, ...] = (128,)
    tasks: Literal["click_conversion", "independent"] = Field(
        "click_conversion", description="click + click×conversion heads, or one head per label column")


class Preprocessor:
    """Vocabulary (code + 1, 0 = out of vocabulary) and the numeric scaler, saved as JSON."""

    def __init__(self, features: FeatureSet, vocab: Vocabulary, scaler: NumericScaler) -> None:
        self.features, self.vocab, self.scaler = features, vocab, scaler

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: FeatureSet, params: TorchParams) -> "Preprocessor":
        vocab = Vocabulary.fit(frame, features.categorical, params.min_category_count, params.max_vocabulary,
                               params.hash_buckets)
        return cls(features, vocab, NumericScaler.fit(frame, features.numeric))

    def cardinalities(self) -> list[int]:
        return [self.vocab.size(f) + 1 for f in self.features.categorical]

    def arrays(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(categorical codes + 1, int64) and (scaled numerics, float32), columns on parallel threads."""
        return (self.vocab.encode(frame, self.features.categorical, offset=1),
                self.scaler.transform(frame, self.features.numeric))

    def to_dict(self) -> dict:
        return {"vocabulary": self.vocab.to_dict(), "scaler": self.scaler.to_dict()}

    @classmethod
    def from_dict(cls, features: FeatureSet, data: dict) -> "Preprocessor":
        return cls(features, Vocabulary.from_dict(data["vocabulary"]), NumericScaler.from_dict(data["scaler"]))


def _save_state(state: dict, directory: Path) -> str:
    try:
        from safetensors.torch import save_file
    except ImportError:
        torch = require("torch", "deep")
        torch.save(state, directory / "weights.pt")
        return "weights.pt"
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(directory / "weights.safetensors"))
    return "weights.safetensors"


def _load_state(directory: Path, name: str) -> dict:
    if name.endswith(".safetensors"):
        return require("safetensors.torch", "deep").load_file(str(directory / name))
    torch = require("torch", "deep")
    return torch.load(directory / name, map_location="cpu", weights_only=True)


class TorchModel(TrainedModel):
    """Scores on the device its module is on (the training device after fit; the CPU when
    loaded), in float32."""

    def __init__(self, trainer: str, module, arch: dict, prep: Preprocessor, labels: tuple[str, ...],
                 params: dict, info: dict | None = None) -> None:
        self.trainer, self.module, self.arch, self.prep = trainer, module.eval(), arch, prep
        self.features, self.labels, self.params, self.info = prep.features, tuple(labels), params, info or {}

    def on_cpu(self) -> "TorchModel":
        if next(self.module.parameters()).device.type == "cpu":
            return self
        import copy

        return TorchModel(self.trainer, copy.deepcopy(self.module).cpu(), self.arch, self.prep, self.labels,
                          self.params, self.info)

    def predict_tasks(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        torch = require("torch", "deep")
        if len(frame) == 0:
            return {name: np.zeros(0) for name in self.module.tasks}
        device = next(self.module.parameters()).device
        cat, num = self.prep.arrays(frame)
        cat_t, num_t = torch.from_numpy(cat), torch.from_numpy(num)
        if device.type == "cuda":
            cat_t, num_t = cat_t.pin_memory(), num_t.pin_memory()
        outputs: dict[str, list] = {}
        with torch.no_grad():
            for lo in range(0, len(frame), PREDICT_BATCH):
                sl = slice(lo, lo + PREDICT_BATCH)
                logits = self.module(cat_t[sl].to(device, non_blocking=True),
                                     num_t[sl].to(device, non_blocking=True)).float()
                for name, p in self.module.probabilities(logits).items():
                    outputs.setdefault(name, []).append(p)
        return {name: torch.cat(parts).cpu().numpy().astype(np.float64) for name, parts in outputs.items()}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return next(iter(self.predict_tasks(frame).values()))  # the first head is the primary one

    # -- what explain/ needs to attribute at x0 (explain.models.DeepModel) ---------------
    def inputs(self, frame: pd.DataFrame) -> tuple:
        torch = require("torch", "deep")
        cat, num = self.prep.arrays(frame)
        return torch.from_numpy(cat), torch.from_numpy(num)

    def interaction_layer(self):
        """The module's body: everything after the embeddings, called once with x0."""
        return self.module.body

    @property
    def feature_slices(self) -> dict[str, slice]:
        """x0 = [embedding of each categorical, in order] + [numerics]."""
        d, fields = self.arch["embedding_dim"], self.features.categorical
        slices = {f: slice(i * d, (i + 1) * d) for i, f in enumerate(fields)}
        slices.update({f: slice(len(fields) * d + j, len(fields) * d + j + 1)
                       for j, f in enumerate(self.features.numeric)})
        return slices

    def _save_files(self, directory: Path) -> None:
        weights = _save_state(self.module.state_dict(), directory)
        (directory / "architecture.json").write_text(json.dumps(dict(self.arch, weights=weights), indent=2) + "\n")
        (directory / "preprocess.json").write_text(json.dumps(self.prep.to_dict()) + "\n")


def resolve_device(name: str):
    torch = require("torch", "deep")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.device: cuda was asked for but torch sees no CUDA device")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


class TorchTrainer(Trainer):
    kind: str = "dcn_v2"

    def targets(self, params: TorchParams, labels: tuple[str, ...]) -> list[str]:
        """The label columns the training targets come from."""
        if not self.multitask:
            return list(labels[:1])
        if len(labels) < 2:
            raise ConfigError(f"trainer {self.name} needs 2 label columns (click, conversion, or two tasks); "
                              f"got {list(labels)} (set retrain.labels)")
        if getattr(params, "tasks", "click_conversion") == "independent":
            return list(labels)  # one head per label
        return list(labels[:2])  # click, conversion

    def architecture(self, prep: Preprocessor, params: TorchParams, labels: tuple[str, ...] = ()) -> dict:
        arch = {"kind": self.kind, "cardinalities": prep.cardinalities(), "n_numeric": len(prep.features.numeric),
                "embedding_dim": params.embedding_dim, "deep_layers": list(params.deep_layers),
                "dropout": params.dropout}
        for key in ("cross_layers", "cross_rank", "experts", "structure", "expert_layers"):
            if key in type(params).model_fields:
                value = getattr(params, key)
                arch[key] = list(value) if isinstance(value, tuple) else value
        if getattr(params, "tasks", "click_conversion") == "independent":
            arch["task_names"], arch["independent"] = list(labels), True
        return arch

    def fit(self, train: Dataset, valid: Dataset, params: TorchParams,
            progress: ProgressFn | None = None, base: TrainedModel | None = None) -> TorchModel:
        torch = require("torch", "deep")
        from retrain.dcn import build_module
        from retrain.resources import Distributed, auto_batch_size, free_cores
        from retrain.torch_loop import train_loop

        train.check_trainable("training set")
        targets = self.targets(params, train.labels)
        columns = lambda data: np.column_stack([data.frame[c].to_numpy(dtype=np.float32)  # noqa: E731
                                                for c in targets])
        y_train, y_valid = columns(train), columns(valid)
        dist = Distributed.from_env()
        device = resolve_device(params.device)
        joined, finished = False, False
        if dist.active:
            device, joined = _join_process_group(torch, device, dist)
        threads_before = torch.get_num_threads()
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
        threads = params.num_threads or max(1, free_cores() // local_procs)
        torch.set_num_threads(threads)
        try:
            started = time.perf_counter()
            prep = Preprocessor.fit(train.frame, train.features, params)
            train_arrays = [*prep.arrays(train.frame), y_train]
            valid_arrays = [*prep.arrays(valid.frame), y_valid]
            encode_seconds = time.perf_counter() - started
            arch = self.architecture(prep, params, train.labels)
            torch.manual_seed(params.seed)
            module = build_module(arch).to(device)
            batch = params.batch_size or auto_batch_size(len(train), device.type, dist.world_size)
            loop = train_loop(torch, module, train_arrays, valid_arrays, device, batch=batch, epochs=params.epochs,
                              patience=params.patience, learning_rate=params.learning_rate,
                              weight_decay=params.weight_decay, seed=params.seed, bf16=params.bf16,
                              compile=params.compile, dist=dist, progress=progress)
            finished = True
        finally:
            torch.set_num_threads(threads_before)
            if joined:
                _leave_process_group(wait=finished)
        if loop.best_state is not None:
            module.load_state_dict(loop.best_state)
        info = {"device": device.type, "best_epoch": loop.best_epoch, "epochs_run": len(loop.history),
                "history": loop.history, "batch_size": batch, "threads": threads, "processes": dist.world_size,
                "samples_per_second": loop.trained_samples / loop.train_seconds if loop.train_seconds else None,
                "encode_seconds": encode_seconds, "train_seconds": loop.train_seconds,
                "bf16": device.type == "cuda" and params.bf16, "compiled": params.compile}
        return TorchModel(self.name, module.float(), arch, prep, train.labels, params.model_dump(mode="json"), info)

    def load(self, directory: Path, header: dict) -> TorchModel:
        require("torch", "deep")
        from retrain.dcn import build_module

        arch = json.loads((directory / "architecture.json").read_text())
        weights = arch.pop("weights")
        module = build_module(arch)
        module.load_state_dict(_load_state(directory, weights))
        features = FeatureSet.from_dict(header["features"])
        prep = Preprocessor.from_dict(features, json.loads((directory / "preprocess.json").read_text()))
        return TorchModel(header["trainer"], module, arch, prep, tuple(header["labels"]), header["params"])


def _join_process_group(torch, device, dist):
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA): this process's device, and
    whether this call created the group (then fit leaves it again)."""
    import torch.distributed as td

    if device.type == "cuda":
        torch.cuda.set_device(dist.local_rank)
        device = torch.device("cuda", dist.local_rank)
    if td.is_initialized():
        return device, False
    td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def _leave_process_group(wait: bool) -> None:
    """Destroy the group, after every rank got here when training finished (a failed rank must
    not wait for peers stuck in a collective): a gloo group left to the interpreter's exit aborts
    a rank now and then ("terminate called without an active exception")."""
    import torch.distributed as td

    try:
        if wait:
            td.barrier()
    finally:
        td.destroy_process_group()


@register_trainer("dcn_v2")
class DCNTrainer(TorchTrainer):
    Params = DCNParams
    kind = "dcn_v2"


@register_trainer("esmm")
class ESMMTrainer(TorchTrainer):
    Params = ESMMParams
    kind = "esmm"
    multitask = True


@register_trainer("mmoe")
class MMoETrainer(TorchTrainer):
    Params = MMoEParams
    kind = "mmoe"
    multitask = True
