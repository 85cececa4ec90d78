"""The model interface explain/ works against, and the LightGBM adapter.

Every explainer needs only `Model.predict(frame) -> P(y=1) per row`. Two richer shapes
unlock faster or exact paths:

- `MatrixModel` encodes a frame once (`encode`) and predicts on the encoded matrix; the
  permutation loop then shuffles matrix columns instead of re-encoding frames. Encoding is
  column-wise, so shuffling an encoded column equals encoding a shuffled column.
- `TreeModel` adds exact path-dependent TreeSHAP (`contributions`, LightGBM's
  `pred_contrib`) and the booster's gain/split importances.
- `DeepModel` (DCN-V2 / ESMM, see the retrain issue) exposes its torch module, the
  interaction layer whose input is x0 (concatenated embeddings and dense features) and each
  raw feature's column slice of x0, so explain/deep.py can attribute at x0 on the
  (model, layer) pair and sum each feature's attribution over its embedding slice. A retrain/
  model directory's torch ranker is loaded as a `DeepRanker`, its LightGBM booster as a
  `TrainedLightGBM` (a TreeModel encoded exactly as the trainer encodes).

Models are read from LightGBM's text format or a retrain/ model directory (JSON and
safetensors / `weights_only` state dicts), never pickle. LightGBM's categorical columns are
encoded with a vocabulary (`{feature: [category, ...]}`, code = position, unknown = NaN;
the demo world's `world.json` has one) or, for boosters trained on pandas categoricals,
with the categories stored in the model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.models import check_text_model
from core.errors import DataSourceError, DriftlineError, SchemaError, require
from core.models import load_booster, load_vocabulary


@runtime_checkable
class Model(Protocol):
    name: str
    features: tuple[str, ...]

    def predict(self, frame) -> np.ndarray:
        """P(y=1) for every row of a pandas DataFrame holding (at least) `features`."""


@runtime_checkable
class MatrixModel(Model, Protocol):
    def encode(self, frame) -> np.ndarray: ...

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class TreeModel(MatrixModel, Protocol):
    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Path-dependent TreeSHAP in raw (log-odds) space: n x (features + 1), last column the base value."""

    def raw_score(self, matrix: np.ndarray) -> np.ndarray: ...

    def tree_importance(self, kind: str) -> np.ndarray:
        """LightGBM's "gain" or "split" importance per feature."""


@runtime_checkable
class DeepModel(Model, Protocol):
    """A torch ranker explained at the interaction network's input (see module docstring)."""

    module: Any  # torch.nn.Module, in eval mode
    feature_slices: dict[str, slice]  # columns of x0 belonging to each raw feature

    def inputs(self, frame) -> tuple:
        """The tensors `module(*inputs)` takes for these rows."""

    def interaction_layer(self) -> Any:
        """The submodule whose first input is x0; x0 reaches the rest of the network only through it."""


@dataclass
class LightGBMModel:
    """A LightGBM booster (binary objective) with the encoding of its input columns."""

    booster: Any
    name: str
    vocabulary: dict[str, list[str]]

    def __post_init__(self) -> None:
        self.features = tuple(self.booster.feature_name())
        raw = self.booster.params.get("categorical_feature", [])
        if isinstance(raw, str):
            raw = [p for p in raw.split(",") if p]
        indices = {int(p) if str(p).lstrip("-").isdigit() else self.features.index(p) for p in raw}
        self.categorical = tuple(f for i, f in enumerate(self.features) if i in indices)
        stored = self.booster.pandas_categorical or []
        # Boosters trained on pandas categoricals keep each categorical column's categories, in column order.
        self._stored_categories = dict(zip(self.categorical, stored)) if len(stored) == len(self.categorical) else {}

    @classmethod
    def from_file(cls, path: str | Path, vocabulary: dict[str, list[str]] | None = None,
                  name: str | None = None) -> "LightGBMModel":
        path = Path(path)
        check_text_model(path)  # before LightGBM parses it: a damaged file crashes its parser
        booster = load_booster(path)  # shared with skew/: text format only, clear errors
        objective = str(booster.params.get("objective", "binary"))
        if not objective.startswith(("binary", "cross_entropy", "xentropy")):
            raise DataSourceError(f"{path}: objective {objective!r} is not a binary classifier")
        return cls(booster, name or path.stem, dict(vocabulary or {}))

    def check_columns(self, frame) -> None:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"data lacks model feature column '{missing[0]}'"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

    def encode(self, frame) -> np.ndarray:
        """Model matrix: numerics as floats (null -> NaN), categoricals as codes (unknown -> NaN)."""
        import pandas as pd

        self.check_columns(frame)
        columns = []
        for name in self.features:
            series = frame[name]
            categories = self.vocabulary.get(name) or self._stored_categories.get(name)
            if name in self.categorical and categories is not None:
                values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
                if self.vocabulary.get(name) is not None:
                    values = values.astype("string")
                codes = pd.Categorical(values, categories=categories).codes
                columns.append(np.where(codes < 0, np.nan, codes.astype(np.float64)))
                continue
            try:
                columns.append(pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan))
            except (ValueError, TypeError) as exc:
                hint = " (give a vocabulary for categorical columns)" if name in self.categorical else ""
                raise SchemaError(f"column '{name}' is not numeric{hint}") from exc
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, num_threads=2)

    def predict(self, frame) -> np.ndarray:
        return self.predict_matrix(self.encode(frame))

    def raw_score(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, raw_score=True, num_threads=2)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, pred_contrib=True, num_threads=2)

    def tree_importance(self, kind: str) -> np.ndarray:
        return np.asarray(self.booster.feature_importance(importance_type=kind), dtype=np.float64)

    def fingerprint(self) -> str:
        import hashlib

        text = self.booster.model_to_string()
        return hashlib.sha256((text + json.dumps(self.vocabulary, sort_keys=True)).encode()).hexdigest()[:32]


class TrainedLightGBM(LightGBMModel):
    """A retrain/ LightGBM model directory as a tree model: the booster, encoded by the trainer's
    own `matrix` (its numeric-then-categorical order, its Vocabulary codes with `as_text` and
    hashing) so the SHAP values explain exactly the inputs the trees were trained on."""

    def __init__(self, trained, name: str) -> None:
        self.trained = trained
        super().__init__(trained.booster, name, {f: list(v) for f, v in trained.vocab.values.items()})

    def __post_init__(self) -> None:
        names = tuple(self.trained.features.names)
        if tuple(self.booster.feature_name()) != names:
            raise DataSourceError(f"model {self.name!r}: the booster's features {self.booster.feature_name()} "
                                  f"are not the trainer's {list(names)}")
        self.features, self.categorical = names, tuple(self.trained.features.categorical)
        self._stored_categories = {}

    def encode(self, frame) -> np.ndarray:
        from retrain.lightgbm_trainer import matrix

        self.check_columns(frame)
        for name in self.trained.features.numeric:  # the trainer casts without checking: name the column
            try:
                frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            except (ValueError, TypeError) as exc:
                raise SchemaError(f"column '{name}' is not numeric") from exc
        return matrix(frame, self.trained.features, self.trained.vocab)

    def fingerprint(self) -> str:
        import hashlib

        text = self.booster.model_to_string() + json.dumps(self.trained.vocab.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


_DEEP_FILES = {"model.json", "architecture.json", "preprocess.json"}


class DeepRanker:
    """A retrain/ torch ranker (DCN-V2, ESMM, MMoE) as explain/ sees it: a `DeepModel` with the
    features as a tuple, the categorical ones named (their drift kind) and a fingerprint of the
    saved files (the key of cached baselines). Attribution goes to the primary task's logit."""

    def __init__(self, trained, directory: Path, name: str) -> None:
        self.trained, self.directory, self.name = trained, Path(directory), name
        self.features = tuple(trained.features)
        self.categorical = tuple(trained.features.categorical)
        self.module = trained.module
        self.feature_slices = trained.feature_slices

    def inputs(self, frame) -> tuple:
        return self.trained.inputs(frame)

    def interaction_layer(self):
        return self.trained.interaction_layer()

    def predict(self, frame) -> np.ndarray:
        return self.trained.predict(frame)

    def fingerprint(self) -> str:
        """Of the files the model is loaded from (not a registry version's metadata or reports)."""
        import hashlib

        digest = hashlib.sha256()
        for file in sorted(self.directory.iterdir()):
            if file.is_file() and (file.name in _DEEP_FILES or file.name.startswith("weights.")):
                digest.update(file.name.encode() + b"\0" + file.read_bytes())
        return digest.hexdigest()[:32]


def load_model(path: str | Path, vocabulary: str | Path | dict | None = None, name: str | None = None) -> Model:
    """A LightGBM text model file, a demo world directory (its model coded with world.json), or a
    retrain/ model directory (model.json + weights; its torch rankers become DeepRankers)."""
    path = Path(path)
    if path.is_dir() and (path / "model.json").is_file():  # a retrain/ artifact (DCN-V2, ESMM, LightGBM)
        from retrain.base import load_model as load_trained, read_header
        from retrain.lightgbm_trainer import LightGBMModel as TrainedBooster

        if read_header(path).get("trainer") == "lightgbm":
            check_text_model(path / "model.txt")
        try:
            trained = load_trained(path)
        except DriftlineError:
            raise
        except Exception as exc:  # missing or damaged weights/architecture (LightGBMError is no OSError)
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DataSourceError(f"{path}: not a loadable model ({why})") from exc
        # A registry version <registry>/<model>/<n>/ is named <model>/<n>.
        name = name or (f"{path.parent.name}/{path.name}" if path.name.isdigit() else path.name)
        if isinstance(trained, TrainedBooster):
            return TrainedLightGBM(trained, name)
        return DeepRanker(trained, path, name) if isinstance(trained, DeepModel) else trained
    if path.is_dir() and (path / "world.json").is_file() and vocabulary is None:
        vocabulary, path = path / "world.json", path / "model" / "model.txt"
        name = name or "demo-world"
    if path.is_dir():
        raise DataSourceError(f"{path}: a directory but not a model (no model.json of a retrain/ model directory, "
                              "no world.json of a demo world)")
    vocab = load_vocabulary(vocabulary) if isinstance(vocabulary, (str, Path)) else vocabulary
    return LightGBMModel.from_file(path, vocab, name)


def as_sklearn(model: Model):
    """A thin scikit-learn classifier around `model`, for sklearn's scorers and inspection tools."""
    require("sklearn", "dev")
    from sklearn.base import BaseEstimator, ClassifierMixin

    class DriftlineEstimator(ClassifierMixin, BaseEstimator):
        def __init__(self, model=None):
            self.model = model

        def fit(self, X=None, y=None):  # already trained; fitting only declares the classes
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X):
            p = np.asarray(self.model.predict(X), dtype=np.float64)
            return np.column_stack([1.0 - p, p])

        def predict(self, X):
            return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    return DriftlineEstimator(model).fit()
