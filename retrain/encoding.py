"""Feature encodings shared by the trainers, saved as JSON (never pickles).

- Vocabulary: per categorical feature the values seen at least `min_count` times in
  training, most frequent first; anything else (rare, unseen, null) is out of vocabulary.
  LightGBM gets the code (NaN when out of vocabulary); embeddings get code + 1 with row 0
  as the out-of-vocabulary bucket. Optionally values are hashed into a fixed number of
  buckets instead (no vocabulary to keep, collisions accepted).
- NumericScaler: sign(x)·log1p(|x|) — counts and prices are heavy-tailed — then
  standardised with training mean and deviation; nulls become 0 (the mean).

Values are compared as text (`as_text`), but only the distinct values of a column are ever
turned into text: a column is first factorised into codes + distinct values (integers,
and floats holding integers, by a dense lookup table over their range; anything else by
pandas' hash table), the vocabulary is mapped onto the distinct values, and the rows get
their codes by one gather. Columns are encoded on parallel threads (NumPy and pandas
release the GIL in these loops). The result equals encoding every row's text.
"""

from __future__ import annotations

import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, TypeVar

import numpy as np
import pandas as pd

from retrain.resources import free_cores

T = TypeVar("T")
_DENSE_RANGE_FACTOR = 4  # a lookup table up to 4x the rows (or 1M entries) beats hashing


def as_text(series: pd.Series) -> pd.Series:
    """Category values as strings; integral floats print as integers (3.0 -> '3') so a
    column read as int in training and as float (with nulls) at serving maps the same."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if np.all(finite == np.round(finite)):
            return series.astype("Int64").astype("string")
    return series.astype("string")


def parallel_map(fn: Callable[[T], object], items: Iterable[T], threads: int | None = None) -> list:
    """fn over items on up to `threads` threads (default: the cores free now), in order."""
    items = list(items)
    threads = min(len(items), threads or free_cores())
    if threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def fill_rows(out: np.ndarray, columns: list[Callable[[int, int], np.ndarray]], threads: int | None = None,
              block: int = 8192) -> np.ndarray:
    """out[r0:r1, j] = columns[j](r0, r1), block by block (a block of every column stays in
    cache: writing a whole column of a row-major matrix at once is 3x slower), the rows
    split between threads."""
    n = len(out)
    if n == 0 or not columns:
        return out
    threads = max(1, min(threads or free_cores(), -(-n // block)))
    bounds = np.linspace(0, -(-n // block), threads + 1).astype(int) * block

    def rows(part: int) -> None:
        for r0 in range(bounds[part], min(bounds[part + 1], n), block):
            r1 = min(r0 + block, n)
            for j, column in enumerate(columns):
                out[r0:r1, j] = column(r0, r1)

    parallel_map(rows, range(threads), threads)
    return out


def _as_integers(series: pd.Series) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(int64 values, valid mask or None) when every value's text is that of an integer
    (ints, nullable ints, floats holding integers), else None."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        values = series.to_numpy()
        if dtype.kind == "u" and len(values) and values.max() > np.iinfo(np.int64).max:
            return None
        return values.astype(np.int64, copy=False), None
    if pd.api.types.is_integer_dtype(dtype):  # nullable Int64 & co.
        valid = ~series.isna().to_numpy()
        return series.to_numpy(dtype=np.int64, na_value=0), valid
    if pd.api.types.is_float_dtype(dtype):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        valid = ~np.isnan(floats)
        finite = floats[valid]
        if np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)) and (
                not len(finite) or np.abs(finite).max() < 2 ** 53):
            return np.where(valid, floats, 0).astype(np.int64), valid
    return None


def _dense_offsets(values: np.ndarray, valid: np.ndarray | None,
                   offsets: bool = True) -> tuple[np.ndarray | None, int, int] | None:
    """(values - lo with nulls at hi - lo + 1 (None unless offsets), lo, hi) when the range
    is small enough for a lookup table, else None."""
    present = values if valid is None else values[valid]
    lo, hi = (int(present.min()), int(present.max())) if len(present) else (0, 0)
    if hi - lo >= max(_DENSE_RANGE_FACTOR * len(values), 1 << 20):
        return None
    if not offsets:
        return None, lo, hi
    offset = values - lo
    if valid is not None:
        offset[~valid] = hi - lo + 1
    return offset, lo, hi


def factorize(series: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(codes, distinct values): codes index the distinct values, -1 for nulls."""
    ints = _as_integers(series)
    if ints is not None:
        return _factorize_integers(*ints)
    if pd.api.types.is_float_dtype(series.dtype):  # fractions: by bit pattern, so -0.0 and 0.0 stay apart
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        valid = ~np.isnan(floats)
        codes, uniques = pd.factorize(np.where(valid, floats, 0.0).view(np.int64))
        codes[~valid] = -1
        return _compacted(codes, pd.Series(uniques.view(np.float64)))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if series.dtype == object and not all(isinstance(u, str) for u in uniques):
        # Mixed objects: 3 == 3.0 == True for the hash table but not as text; go by text.
        codes, uniques = pd.factorize(as_text(series), use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), pd.Series(uniques)


def _factorize_integers(values: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, pd.Series]:
    dense = _dense_offsets(values, valid) if len(values) else None
    if dense is not None:
        offset, lo, hi = dense
        present = np.flatnonzero(np.bincount(offset, minlength=hi - lo + 2)[:hi - lo + 1])
        compact = np.full(hi - lo + 2, -1, dtype=np.int64)
        compact[present] = np.arange(len(present))
        return compact[offset], pd.Series(present + lo, dtype=np.int64)
    codes, uniques = pd.factorize(values)
    if valid is not None:
        codes[~valid] = -1
    return _compacted(codes, pd.Series(uniques, dtype=np.int64))


def _compacted(codes: np.ndarray, uniques: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Drop distinct values no row uses (the placeholder a null was given)."""
    used = np.bincount(codes[codes >= 0], minlength=len(uniques)) > 0
    if used.all():
        return codes.astype(np.int64, copy=False), uniques
    renumber = np.append(np.cumsum(used) - 1, -1)
    return renumber[codes].astype(np.int64), uniques[used].reset_index(drop=True)


_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


def _fit_integers(values: np.ndarray, valid: np.ndarray | None, min_count: int,
                  max_size: int | None) -> tuple[tuple[str, ...], tuple[np.ndarray, np.ndarray]]:
    """An integer column's vocabulary (distinct integers are distinct texts: no merging),
    and its entries as integers for encoding without text."""
    codes, uniques = _factorize_integers(values, valid)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    keep = counts >= min_count
    ints, counts = uniques.to_numpy()[keep], counts[keep]
    texts = ints.astype(str)  # the decimal text, as pandas' astype("string") writes it
    order = np.lexsort((texts, -counts))[:max_size]  # most frequent first, ties by text (digits only)
    ints = ints[order]
    by_value = np.argsort(ints, kind="stable")
    return tuple(texts[order].tolist()), (ints[by_value], by_value.astype(np.int64))


def _texts(uniques: pd.Series) -> np.ndarray:
    return as_text(uniques).to_numpy(dtype=object, na_value=None)


@dataclass(frozen=True)
class Vocabulary:
    values: dict[str, tuple[str, ...]]
    hash_buckets: int = 0  # > 0: hash values into this many buckets instead

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: tuple[str, ...], min_count: int = 1,
            max_size: int | None = None, hash_buckets: int = 0, threads: int | None = None) -> "Vocabulary":
        if hash_buckets:
            return cls({f: () for f in features}, hash_buckets)

        def one(feature: str) -> tuple[tuple[str, ...], tuple | None]:
            ints = _as_integers(frame[feature])
            if ints is not None:
                return _fit_integers(*ints, min_count, max_size)
            codes, uniques = factorize(frame[feature])
            counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
            by_text = pd.Series(counts).groupby(_texts(uniques), sort=False).sum()  # 3 and "3" are one value
            by_text = by_text[by_text >= min_count]
            # Most frequent first, ties by value: deterministic for the same data.
            order = sorted(zip(by_text.index.tolist(), by_text.to_numpy().tolist()), key=lambda kv: (-kv[1], kv[0]))
            return tuple(v for v, _ in order[:max_size]), None

        fitted = parallel_map(one, features, threads)
        vocab = cls({f: values for f, (values, _) in zip(features, fitted)})
        vocab._integer_cache.update({f: ints for f, (_, ints) in zip(features, fitted) if ints is not None})
        return vocab

    def size(self, feature: str) -> int:
        return self.hash_buckets or len(self.values[feature])

    @cached_property
    def _integer_cache(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {}

    def _integer_entries(self, feature: str) -> tuple[np.ndarray, np.ndarray]:
        """(sorted integers, their codes) of the feature's entries that are an integer's
        text: the only ones an integer column can match ('007' and '+3' cannot)."""
        if feature not in self._integer_cache:
            values = self.values[feature]
            texts = np.array(values, dtype=str)
            try:
                ints = texts.astype(np.int64)
                ok = ints.astype(str) == texts  # canonical text only
            except (ValueError, OverflowError):  # some entries are no integer: one by one
                ok = np.array([bool(_INTEGER_TEXT.fullmatch(v)) and -2 ** 63 <= int(v) < 2 ** 63 for v in values],
                              dtype=bool)
                ints = np.array([int(v) if good else 0 for v, good in zip(values, ok)], dtype=np.int64)
            index = np.flatnonzero(ok)
            order = np.argsort(ints[index], kind="stable")
            self._integer_cache[feature] = (ints[index][order], index[order])
        return self._integer_cache[feature]

    def _integer_plan(self, feature: str, values: np.ndarray,
                      valid: np.ndarray | None) -> Callable[[int, int], np.ndarray]:
        """rows -> codes for an integer column: one lookup table over the column's range, or
        a binary search in the vocabulary's integers when the range is too wide."""
        keys, index = self._integer_entries(feature)
        dense = _dense_offsets(values, valid, offsets=False) if len(values) else None
        if dense is not None:
            _, lo, hi = dense
            table = np.full(hi - lo + 2, -1, dtype=np.int64)  # the last slot: nulls
            inside = (keys >= lo) & (keys <= hi)
            table[keys[inside] - lo] = index[inside]
            if valid is None:
                return lambda r0, r1: table[values[r0:r1] - lo]
            null = hi - lo + 1
            return lambda r0, r1: table[np.where(valid[r0:r1], values[r0:r1] - lo, null)]
        if not len(keys):
            return lambda r0, r1: np.full(r1 - r0, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        out = np.where(keys[pos] == values, index[pos], -1)
        if valid is not None:
            out[~valid] = -1
        return lambda r0, r1: out[r0:r1]

    def _plan(self, frame: pd.DataFrame, feature: str) -> Callable[[int, int], np.ndarray]:
        ints = None if self.hash_buckets else _as_integers(frame[feature])
        if ints is not None:
            return self._integer_plan(feature, *ints)
        codes, uniques = factorize(frame[feature])
        texts = _texts(uniques)
        if self.hash_buckets:
            mapped = np.array([zlib.crc32(str(t).encode()) % self.hash_buckets for t in texts], dtype=np.int64)
        else:
            mapped = pd.Index(self.values[feature], dtype=object).get_indexer(texts).astype(np.int64)
        mapped = np.append(mapped, -1)  # code -1 (null) picks the appended -1
        return lambda r0, r1: mapped[codes[r0:r1]]

    def codes(self, frame: pd.DataFrame, feature: str) -> np.ndarray:
        """0-based code per row, -1 when out of vocabulary or null."""
        return self._plan(frame, feature)(0, len(frame))

    def encode(self, frame: pd.DataFrame, features: tuple[str, ...], offset: int = 0,
               threads: int | None = None) -> np.ndarray:
        """(rows, features) int64 codes + offset; columns prepared, then rows filled, on threads."""
        plans = parallel_map(lambda f: self._plan(frame, f), features, threads)
        columns = [(lambda plan: (lambda r0, r1: plan(r0, r1) + offset))(plan) for plan in plans]
        return fill_rows(np.empty((len(frame), len(features)), dtype=np.int64), columns, threads)

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
        """sign(x)·log1p(|x|), in place on a fresh array (the same IEEE result, fewer passes)."""
        out = np.abs(values)
        np.log1p(out, out=out)
        out *= np.sign(values)
        return out

    @staticmethod
    def _column(frame: pd.DataFrame, feature: str) -> np.ndarray:
        series = frame[feature]
        if series.dtype == np.float64:
            return series.to_numpy()
        return series.to_numpy(dtype=np.float64, na_value=np.nan)

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: tuple[str, ...], threads: int | None = None) -> "NumericScaler":
        def one(feature: str) -> tuple[float, float]:
            t = cls._log(cls._column(frame, feature))
            t = t[np.isfinite(t)]
            sd = float(t.std()) if len(t) else 0.0
            return (float(t.mean()) if len(t) else 0.0), (sd if sd > 1e-12 else 1.0)

        stats = parallel_map(one, features, threads)
        return cls({f: m for f, (m, _) in zip(features, stats)}, {f: s for f, (_, s) in zip(features, stats)})

    def transform(self, frame: pd.DataFrame, features: tuple[str, ...], threads: int | None = None) -> np.ndarray:
        """(rows, features) float32 in the given order; nulls and infinities become 0."""

        def column(feature: str) -> Callable[[int, int], np.ndarray]:
            raw, mean, std = self._column(frame, feature), self.mean[feature], self.std[feature]

            def rows(r0: int, r1: int) -> np.ndarray:
                t = self._log(raw[r0:r1])
                t -= mean
                t /= std
                t[~np.isfinite(t)] = 0.0
                return t

            return rows

        return fill_rows(np.empty((len(frame), len(features)), dtype=np.float32), [column(f) for f in features],
                         threads)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> "NumericScaler":
        return cls({k: float(v) for k, v in data["mean"].items()}, {k: float(v) for k, v in data["std"].items()})
