"""Feature encodings shared by the trainers, saved as JSON (never pickles).

- Vocabulary: per categorical feature the values seen at least `min_count` times in
  training, most frequent first; anything else (rare, unseen, null) is out of vocabulary.
  LightGBM gets the code (NaN when out of vocabulary); embeddings get code + 1 with row 0
  as the out-of-vocabulary bucket. Optionally values are hashed into a fixed number of
  buckets instead (no vocabulary to keep, collisions accepted).
- NumericScaler: sign(x)·log1p(|x|) — counts and prices are heavy-tailed — then
  standardised with training mean and deviation; nulls become 0 (the mean).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


def as_text(series: pd.Series) -> pd.Series:
    """Category values as strings; integral floats print as integers (3.0 -> '3') so a
    column read as int in training and as float (with nulls) at serving maps the same."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if np.all(finite == np.round(finite)):
            return series.astype("Int64").astype("string")
    return series.astype("string")


@dataclass(frozen=True)
class Vocabulary:
    values: dict[str, tuple[str, ...]]
    hash_buckets: int = 0  # > 0: hash values into this many buckets instead

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: tuple[str, ...], min_count: int = 1,
            max_size: int | None = None, hash_buckets: int = 0) -> "Vocabulary":
        if hash_buckets:
            return cls({f: () for f in features}, hash_buckets)
        values = {}
        for feature in features:
            counts = as_text(frame[feature]).value_counts(dropna=True)
            counts = counts[counts >= min_count]
            # Most frequent first, ties by value: deterministic for the same data.
            order = sorted(zip(counts.index.tolist(), counts.to_numpy().tolist()), key=lambda kv: (-kv[1], kv[0]))
            values[feature] = tuple(v for v, _ in order[:max_size])
        return cls(values)

    def size(self, feature: str) -> int:
        return self.hash_buckets or len(self.values[feature])

    def codes(self, frame: pd.DataFrame, feature: str) -> np.ndarray:
        """0-based code per row, -1 when out of vocabulary or null."""
        text = as_text(frame[feature])
        if self.hash_buckets:
            uniques, inverse = np.unique(text.fillna("\x00").to_numpy(dtype=object), return_inverse=True)
            hashed = np.array([zlib.crc32(str(u).encode()) % self.hash_buckets for u in uniques], dtype=np.int64)
            out = hashed[inverse]
            out[text.isna().to_numpy()] = -1
            return out
        return pd.Categorical(text, categories=list(self.values[feature])).codes.astype(np.int64)

    def to_dict(self) -> dict:
        return {"values": {k: list(v) for k, v in self.values.items()}, "hash_buckets": self.hash_buckets}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        return cls({k: tuple(v) for k, v in data["values"].items()}, int(data.get("hash_buckets", 0)))


@dataclass(frozen=True)
class NumericScaler:
    mean: dict[str, float]
    std: dict[str, float]

    @staticmethod
    def _log(values: np.ndarray) -> np.ndarray:
        return np.sign(values) * np.log1p(np.abs(values))

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: tuple[str, ...]) -> "NumericScaler":
        mean, std = {}, {}
        for feature in features:
            t = cls._log(frame[feature].to_numpy(dtype=np.float64, na_value=np.nan))
            t = t[np.isfinite(t)]
            mean[feature] = float(t.mean()) if len(t) else 0.0
            sd = float(t.std()) if len(t) else 0.0
            std[feature] = sd if sd > 1e-12 else 1.0
        return cls(mean, std)

    def transform(self, frame: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
        """(rows, features) float32 in the given order; nulls and infinities become 0."""
        columns = []
        for feature in features:
            raw = frame[feature].to_numpy(dtype=np.float64, na_value=np.nan)
            t = (self._log(raw) - self.mean[feature]) / self.std[feature]
            columns.append(np.where(np.isfinite(t), t, 0.0))
        if not columns:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.column_stack(columns).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> "NumericScaler":
        return cls({k: float(v) for k, v in data["mean"].items()}, {k: float(v) for k, v in data["std"].items()})
