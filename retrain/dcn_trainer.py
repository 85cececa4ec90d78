"""Torch trainers: `dcn_v2`, and the multi-task `esmm` and `mmoe` (all in the `deep` extra).

One training loop for all three. On CUDA: the training tensors go to the device once
(pinned host memory when they do not fit), bf16 autocast, large batches, optional
`torch.compile`. On the CPU the same code runs in float32. Early stopping on the
validation loss keeps the best epoch's weights. Weights are saved as a state dict in
safetensors (or `torch.save`, loaded back with `weights_only=True`); the vocabulary,
numeric statistics and architecture as JSON. torch is imported inside functions, so
registering these trainers costs nothing when the extra is not installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from core.errors import ConfigError, require
from retrain.base import Dataset, FeatureSet, ProgressFn, StrictParams, Trainer, TrainedModel, register_trainer
from retrain.encoding import NumericScaler, Vocabulary

PREDICT_BATCH = 65_536


class TorchParams(StrictParams):
    embedding_dim: int = Field(16, ge=1, le=1024)
    min_category_count: int = Field(2, ge=1, description="rarer values share the out-of-vocabulary bucket")
    max_vocabulary: int | None = Field(1_000_000, ge=1, description="per feature")
    hash_buckets: int = Field(0, ge=0, description="> 0: hash categories instead of a vocabulary")
    deep_layers: tuple[int, ...] = (256, 128)
    dropout: float = Field(0.0, ge=0, lt=1)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(4096, ge=1)
    epochs: int = Field(5, ge=1, le=1000)
    patience: int = Field(2, ge=1, description="epochs without validation improvement before stopping")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(True, description="bf16 autocast on CUDA (the CPU always runs float32)")
    compile: bool = Field(False, description="torch.compile the module for training")
    num_threads: int | None = Field(None, ge=1, description="CPU threads (torch.set_num_threads)")
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
        if self.features.categorical:
            cat = np.column_stack([self.vocab.codes(frame, f) + 1 for f in self.features.categorical])
        else:
            cat = np.zeros((len(frame), 0), dtype=np.int64)
        return cat.astype(np.int64), self.scaler.transform(frame, self.features.numeric)

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
    def __init__(self, trainer: str, module, arch: dict, prep: Preprocessor, labels: tuple[str, ...],
                 params: dict, info: dict | None = None) -> None:
        self.trainer, self.module, self.arch, self.prep = trainer, module.eval(), arch, prep
        self.features, self.labels, self.params, self.info = prep.features, tuple(labels), params, info or {}

    def predict_tasks(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        torch = require("torch", "deep")
        if len(frame) == 0:
            return {name: np.zeros(0) for name in self.module.tasks}
        cat, num = self.prep.arrays(frame)
        outputs: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for lo in range(0, len(frame), PREDICT_BATCH):
                logits = self.module(torch.from_numpy(cat[lo:lo + PREDICT_BATCH]),
                                     torch.from_numpy(num[lo:lo + PREDICT_BATCH])).float()
                for name, p in self.module.probabilities(logits).items():
                    outputs.setdefault(name, []).append(p.numpy().astype(np.float64))
        return {name: np.concatenate(parts) for name, parts in outputs.items()}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_tasks(frame)["ctr"]

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

    def architecture(self, prep: Preprocessor, params: TorchParams) -> dict:
        arch = {"kind": self.kind, "cardinalities": prep.cardinalities(), "n_numeric": len(prep.features.numeric),
                "embedding_dim": params.embedding_dim, "deep_layers": list(params.deep_layers),
                "dropout": params.dropout}
        for key in ("cross_layers", "cross_rank", "experts", "structure", "expert_layers"):
            if key in type(params).model_fields:
                value = getattr(params, key)
                arch[key] = list(value) if isinstance(value, tuple) else value
        return arch

    def _labels(self, data: Dataset) -> np.ndarray:
        need = 2 if self.multitask else 1
        if len(data.labels) < need:
            raise ConfigError(f"trainer {self.name} needs {need} label columns (click, conversion); "
                              f"got {list(data.labels)} (set retrain.labels)")
        return np.column_stack([data.label(i) for i in range(need)]).astype(np.float32)

    def fit(self, train: Dataset, valid: Dataset, params: TorchParams,
            progress: ProgressFn | None = None, base: TrainedModel | None = None) -> TorchModel:
        torch = require("torch", "deep")
        from retrain.dcn import build_module

        train.check_trainable("training set")
        y_train, y_valid = self._labels(train), self._labels(valid)
        if params.num_threads:
            torch.set_num_threads(params.num_threads)
        device = resolve_device(params.device)
        prep = Preprocessor.fit(train.frame, train.features, params)
        arch = self.architecture(prep, params)
        torch.manual_seed(params.seed)
        module = build_module(arch).to(device)
        step_fn = torch.compile(module) if params.compile else module
        autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and params.bf16)

        def tensors(frame: pd.DataFrame, labels: np.ndarray):
            cat, num = prep.arrays(frame)
            out = [torch.from_numpy(cat), torch.from_numpy(num), torch.from_numpy(labels)]
            if device.type == "cuda":
                try:  # the whole set on the device: no host->device copy per batch
                    return [t.to(device) for t in out]
                except torch.OutOfMemoryError:
                    return [t.pin_memory() for t in out]
            return out

        cat, num, y = tensors(train.frame, y_train)
        vcat, vnum, vy = tensors(valid.frame, y_valid)
        optimiser = torch.optim.Adam(module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay,
                                     fused=device.type == "cuda")
        generator = torch.Generator().manual_seed(params.seed)
        n, batch = len(train), params.batch_size
        steps_per_epoch = (n + batch - 1) // batch
        total_steps = steps_per_epoch * params.epochs

        def validation_loss() -> float:
            if len(valid) == 0:
                return float("nan")
            module.eval()
            total = 0.0
            with torch.no_grad(), torch.autocast(**autocast):
                for lo in range(0, len(valid), PREDICT_BATCH):
                    sl = slice(lo, lo + PREDICT_BATCH)
                    logits = module(vcat[sl].to(device), vnum[sl].to(device)).float()
                    total += float(module.loss(logits, vy[sl].to(device))) * len(vy[sl])
            module.train()
            return total / len(valid)

        best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
        trained_samples, train_seconds, history = 0, 0.0, []
        module.train()
        for epoch in range(1, params.epochs + 1):
            order = torch.randperm(n, generator=generator).to(cat.device)
            started = time.perf_counter()
            running = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * batch:(step + 1) * batch]
                b_cat, b_num, b_y = (t[idx].to(device, non_blocking=True) for t in (cat, num, y))
                with torch.autocast(**autocast):
                    logits = step_fn(b_cat, b_num)
                loss = module.loss(logits.float(), b_y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if step % 50 == 0 or step == steps_per_epoch - 1:
                    running = loss.item()
                    if progress is not None:
                        progress((epoch - 1) * steps_per_epoch + step + 1, total_steps,
                                 f"epoch {epoch}/{params.epochs}, train loss {running:.5f}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - started
            trained_samples += n
            loss_valid = validation_loss()
            history.append({"epoch": epoch, "train_loss": running, "valid_loss": loss_valid})
            if progress is not None:
                progress(epoch * steps_per_epoch, total_steps,
                         f"epoch {epoch}/{params.epochs}, valid loss {loss_valid:.5f}")
            if not loss_valid < best_loss and len(valid):
                stale += 1
                if stale >= params.patience:
                    break
                continue
            best_loss, best_epoch, stale = loss_valid, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if best_state is not None:
            module.load_state_dict(best_state)
        info = {"device": device.type, "best_epoch": best_epoch, "epochs_run": len(history), "history": history,
                "samples_per_second": trained_samples / train_seconds if train_seconds else None,
                "bf16": autocast["enabled"], "compiled": params.compile}
        return TorchModel(self.name, module.cpu().float(), arch, prep, train.labels, params.model_dump(mode="json"),
                          info)

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
