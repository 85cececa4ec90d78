"""The trainer protocol, the training data record and the trainer registry.

A trainer fits on a training and a validation set with validated params and returns a
TrainedModel; a TrainedModel predicts the primary task's probability for a frame, saves
itself to a directory (no pickles) and is loaded back by the trainer named in the
directory's `model.json`. Built-ins register with `@register_trainer`; outside trainers
through the `driftline.trainers` entry-point group. An unknown name lists the known ones.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ConfigError, DriftlineError

ARTIFACT_FORMAT = 1
_ENTRY_POINT_GROUP = "driftline.trainers"
_TRAINERS: dict[str, type["Trainer"]] = {}

# progress(done, total, message): called by trainers as they go (the CLI draws a bar).
ProgressFn = Callable[[int, int, str], None]


class TrainingError(DriftlineError):
    """The training data cannot train a model (empty window, one class only, ...)."""


class StrictParams(BaseModel):
    """Base of every trainer's params: unknown names are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class FeatureSet:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def __iter__(self):  # iterates over names, so `tuple(model.features)` is the feature list
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSet":
        return cls(tuple(data["numeric"]), tuple(data["categorical"]))


@dataclass(frozen=True)
class Dataset:
    """Rows to train or evaluate on: features, label columns (the first is the primary task)."""

    frame: pd.DataFrame
    features: FeatureSet
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame)

    def label(self, index: int = 0) -> np.ndarray:
        return self.frame[self.labels[index]].to_numpy(dtype=np.float32)

    def take(self, rows) -> "Dataset":
        return Dataset(self.frame.iloc[rows].reset_index(drop=True), self.features, self.labels)

    def check_trainable(self, what: str = "training set") -> None:
        """Empty or single-class data cannot train a classifier: say so, naming the column."""
        if len(self.frame) == 0:
            raise TrainingError(f"the {what} is empty: no labelled rows in the window")
        for name in self.labels:
            values = self.frame[name]
            if values.isna().any():
                raise TrainingError(f"label column '{name}' has {int(values.isna().sum())} null values in the {what}")
            distinct = set(np.unique(values.to_numpy()))
            if not distinct <= {0, 1}:
                raise TrainingError(f"label column '{name}' must be 0/1, found {sorted(distinct)[:5]}")
            if len(distinct) < 2:
                raise TrainingError(f"label column '{name}' has a single class ({distinct.pop()}) in the {what}")


class TrainedModel(abc.ABC):
    """A fitted model: scores frames, saves itself as plain files (weights, JSON, text)."""

    trainer: str
    features: FeatureSet
    labels: tuple[str, ...]
    params: dict

    @property
    def name(self) -> str:
        return self.trainer

    @abc.abstractmethod
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the primary label (pCTR) per row, float64 in [0, 1]."""

    def predict_tasks(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every head's probability, the primary one first; single-task models return it alone."""
        return {self.labels[0]: self.predict(frame)}

    def on_cpu(self) -> "TrainedModel":
        """This model scoring on the CPU, as a serving process loads it (itself if it does)."""
        return self

    @abc.abstractmethod
    def _save_files(self, directory: Path) -> None:
        """Write the model's own files (weights, vocabularies) into directory."""

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        header = {"format": ARTIFACT_FORMAT, "trainer": self.trainer, "features": self.features.to_dict(),
                  "labels": list(self.labels), "params": self.params}
        (directory / "model.json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")


def read_header(directory: Path) -> dict:
    path = Path(directory) / "model.json"
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DriftlineError(f"{path}: not a saved model ({exc})") from exc
    if header.get("format") != ARTIFACT_FORMAT:
        raise DriftlineError(f"{path}: unsupported artifact format {header.get('format')!r}")
    return header


def load_model(directory: Path) -> TrainedModel:
    """Load a saved model with the trainer that made it."""
    header = read_header(directory)
    trainer = get_trainer(header["trainer"])
    return trainer.load(Path(directory), header)


class Trainer(abc.ABC):
    name: ClassVar[str]
    Params: ClassVar[type[StrictParams]] = StrictParams
    multitask: ClassVar[bool] = False     # needs two labels (click, conversion)
    needs_base: ClassVar[bool] = False    # fitted on top of the production model

    def validate_params(self, params: dict | None) -> StrictParams:
        """Validated params; a bad one raises ConfigError naming it (`params.num_leaves: ...`)."""
        try:
            return self.Params.model_validate(params or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "params"
            known = ", ".join(sorted(self.Params.model_fields))
            hint = f" (known: {known})" if first["type"] == "extra_forbidden" else ""
            raise ConfigError(f"params.{key}: {first['msg']}{hint} (trainer {self.name})") from exc

    @abc.abstractmethod
    def fit(self, train: Dataset, valid: Dataset, params: StrictParams,
            progress: ProgressFn | None = None, base: TrainedModel | None = None) -> TrainedModel:
        """Fit on train, early-stop / select on valid."""

    @abc.abstractmethod
    def load(self, directory: Path, header: dict) -> TrainedModel:
        """Rebuild the model saved in directory (header is its model.json)."""


def register_trainer(name: str):
    def decorator(cls: type[Trainer]) -> type[Trainer]:
        if name in _TRAINERS and _TRAINERS[name] is not cls:
            raise ValueError(f"trainer {name!r} is registered twice")
        cls.name = name
        _TRAINERS[name] = cls
        return cls

    return decorator


def _load_builtins() -> None:
    import retrain.lightgbm_trainer  # noqa: F401  (lightgbm)
    import retrain.dcn_trainer  # noqa: F401  (dcn_v2, esmm, mmoe; torch is imported only when used)
    import retrain.recalibrate  # noqa: F401  (recalibrate)


class PluginError(ConfigError):
    """An outside trainer (entry point) cannot be loaded or used; the message names it."""


def _entry_points(name: str | None = None) -> list:
    from importlib.metadata import entry_points

    found = entry_points(group=_ENTRY_POINT_GROUP)
    return [e for e in found if name is None or e.name == name]


def _describe(entry) -> str:
    dist = getattr(getattr(entry, "dist", None), "name", None)
    return f"trainer plugin {entry.name!r} ({entry.value}{f', from {dist}' if dist else ''})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_plugin(entry) -> type["Trainer"]:
    """Import one entry point; a failure is a PluginError naming it, other trainers unaffected."""
    what = _describe(entry)
    try:
        cls = entry.load()
    except Exception as exc:  # an outside package's import can raise anything
        raise PluginError(f"{what} failed to load: {_one_line(exc)}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise PluginError(f"{what} is not a retrain.base.Trainer subclass (got {cls!r})")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise PluginError(f"{what} does not implement {', '.join(missing)}")
    cls.name = entry.name
    return cls


def known_trainers() -> list[str]:
    """Built-in and outside trainer names; outside plugins are listed, not imported."""
    _load_builtins()
    return sorted(set(_TRAINERS) | {e.name for e in _entry_points()})


def get_trainer(name: str) -> Trainer:
    """The named trainer. Only that trainer's plugin is imported, so a broken plugin breaks
    only itself."""
    _load_builtins()
    if name not in _TRAINERS:
        entries = _entry_points(name)
        if not entries:
            raise ConfigError(f"unknown trainer {name!r} (known: {', '.join(known_trainers())})")
        _TRAINERS[name] = _load_plugin(entries[0])
    return _TRAINERS[name]()


def run_fit(trainer: Trainer, *args, **kwargs) -> TrainedModel:
    """trainer.fit, with an unexpected exception turned into one line naming the trainer
    (driftline's own errors pass through as they are)."""
    try:
        model = trainer.fit(*args, **kwargs)
    except DriftlineError:
        raise
    except Exception as exc:
        raise TrainingError(f"trainer {trainer.name!r} failed in fit: {_one_line(exc)}") from exc
    if not isinstance(model, TrainedModel):
        raise TrainingError(f"trainer {trainer.name!r}: fit returned {type(model).__name__}, not a TrainedModel")
    return model
