"""The quantile sketch of numeric profiles: DDSketch-style log buckets, mergeable by adding counts."""

from __future__ import annotations

import math

import numpy as np

from core.buffers import scratch

SKETCH_RELATIVE_ACCURACY = 0.005
_SKETCH_GAMMA = (1 + SKETCH_RELATIVE_ACCURACY) / (1 - SKETCH_RELATIVE_ACCURACY)
_SKETCH_LOG_GAMMA = math.log(_SKETCH_GAMMA)
# Magnitudes below this go to the zero bucket; keeps bucket indices bounded.
_SKETCH_MIN_MAGNITUDE = 1e-12
_NO_KEYS = np.empty(0, np.int32)
_NO_COUNTS = np.empty(0, np.int64)


class QuantileSketch:
    """DDSketch-style log buckets: quantiles within 0.5% relative error, merged exactly by adding counts.

    Buckets are kept as sorted numpy arrays (bucket index int32, count int64), not dicts: a
    profile of a wide file holds ten thousand sketches per chunk, and a dict entry costs ~8x
    as much memory and merges ~10x slower. `positive` / `negative` give the dict view.
    """

    __slots__ = ("positive_keys", "positive_counts", "negative_keys", "negative_counts", "zero")

    def __init__(self, positive: dict[int, int] | None = None, negative: dict[int, int] | None = None,
                 zero: int = 0) -> None:
        self.positive_keys, self.positive_counts = _arrays(positive)
        self.negative_keys, self.negative_counts = _arrays(negative)
        self.zero = int(zero)

    @classmethod
    def _of(cls, positive: tuple[np.ndarray, np.ndarray], negative: tuple[np.ndarray, np.ndarray],
            zero: int) -> "QuantileSketch":
        sketch = cls.__new__(cls)
        sketch.positive_keys, sketch.positive_counts = positive
        sketch.negative_keys, sketch.negative_counts = negative
        sketch.zero = zero
        return sketch

    @property
    def positive(self) -> dict[int, int]:
        return dict(zip(self.positive_keys.tolist(), self.positive_counts.tolist()))

    @property
    def negative(self) -> dict[int, int]:
        return dict(zip(self.negative_keys.tolist(), self.negative_counts.tolist()))

    @property
    def count(self) -> int:
        return self.zero + int(self.positive_counts.sum()) + int(self.negative_counts.sum())

    def __eq__(self, other) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (self.zero == other.zero and np.array_equal(self.positive_keys, other.positive_keys)
                and np.array_equal(self.positive_counts, other.positive_counts)
                and np.array_equal(self.negative_keys, other.negative_keys)
                and np.array_equal(self.negative_counts, other.negative_counts))

    def __repr__(self) -> str:
        return f"QuantileSketch(positive={self.positive}, negative={self.negative}, zero={self.zero})"

    @staticmethod
    def from_values(values: np.ndarray) -> "QuantileSketch":
        """The sketch of finite `values`."""
        empty = (_NO_KEYS, _NO_COUNTS)
        if values.size == 0:
            return QuantileSketch._of(empty, empty, 0)
        low, high = float(values.min()), float(values.max())
        if low >= _SKETCH_MIN_MAGNITUDE:  # all positive (the common case): no masks, no copies
            return QuantileSketch._of(_buckets(values), empty, 0)
        if high <= -_SKETCH_MIN_MAGNITUDE:
            return QuantileSketch._of(empty, _buckets(-values), 0)
        magnitude = np.abs(values)
        is_zero = magnitude < _SKETCH_MIN_MAGNITUDE
        parts = []
        for sign_mask in ((values > 0) & ~is_zero, (values < 0) & ~is_zero):
            selected = magnitude[sign_mask]
            parts.append(_buckets(selected) if selected.size else empty)
        return QuantileSketch._of(parts[0], parts[1], int(np.count_nonzero(is_zero)))

    @staticmethod
    def from_counts(values: np.ndarray, counts: np.ndarray) -> "QuantileSketch":
        """The sketch of finite distinct `values`, each occurring `counts` times: the same as from_values
        of the values repeated."""
        magnitude = np.abs(values)
        is_zero = magnitude < _SKETCH_MIN_MAGNITUDE
        parts = []
        for sign_mask in ((values > 0) & ~is_zero, (values < 0) & ~is_zero):
            if not sign_mask.any():
                parts.append((_NO_KEYS, _NO_COUNTS))
                continue
            keys, position = np.unique(_log_keys(magnitude[sign_mask]), return_inverse=True)
            tally = np.zeros(keys.size, np.int64)
            np.add.at(tally, position, counts[sign_mask])
            parts.append((keys.astype(np.int32), tally))
        return QuantileSketch._of(parts[0], parts[1], int(counts[is_zero].sum()))

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        return QuantileSketch._of(
            _merged(self.positive_keys, self.positive_counts, other.positive_keys, other.positive_counts),
            _merged(self.negative_keys, self.negative_counts, other.negative_keys, other.negative_counts),
            self.zero + other.zero,
        )

    def quantile(self, q: float) -> float:
        total = self.count
        if total == 0:
            return float("nan")
        rank = q * (total - 1)
        # Ascending order: most negative first (largest index among negatives), then zero, then positives.
        seen = np.cumsum(self.negative_counts[::-1])
        at = int(np.searchsorted(seen, rank, side="right"))  # the first bucket whose running count passes rank
        if at < seen.size:
            return -self._value(int(self.negative_keys[::-1][at]))
        passed = (int(seen[-1]) if seen.size else 0) + self.zero
        if passed > rank:
            return 0.0
        seen = passed + np.cumsum(self.positive_counts)
        at = int(np.searchsorted(seen, rank, side="right"))
        if at < seen.size:
            return self._value(int(self.positive_keys[at]))
        return self._value(int(self.positive_keys[-1])) if self.positive_keys.size else 0.0

    @staticmethod
    def _value(key: int) -> float:
        return 2 * _SKETCH_GAMMA**key / (_SKETCH_GAMMA + 1)

    def to_dict(self) -> dict:
        return {
            "relative_accuracy": SKETCH_RELATIVE_ACCURACY,
            "zero": self.zero,
            "positive": {str(k): v for k, v in zip(self.positive_keys.tolist(), self.positive_counts.tolist())},
            "negative": {str(k): v for k, v in zip(self.negative_keys.tolist(), self.negative_counts.tolist())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "QuantileSketch":
        return cls(
            {int(k): int(v) for k, v in data["positive"].items()},
            {int(k): int(v) for k, v in data["negative"].items()},
            int(data["zero"]),
        )


def _arrays(buckets: dict[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    if not buckets:
        return _NO_KEYS, _NO_COUNTS
    keys = sorted(buckets)
    return np.asarray(keys, np.int32), np.asarray([buckets[k] for k in keys], np.int64)


def _merged(keys: np.ndarray, counts: np.ndarray, other_keys: np.ndarray,
            other_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add two sorted bucket arrays (arrays are never changed in place, so they may be shared)."""
    if not other_keys.size:
        return keys, counts
    if not keys.size:
        return other_keys, other_counts
    if keys.size == other_keys.size and np.array_equal(keys, other_keys):
        return keys, counts + other_counts
    # Two sorted runs: a stable sort merges them cheaply; equal keys end up adjacent and are summed.
    both = np.concatenate((keys, other_keys))
    order = np.argsort(both, kind="stable")
    both = both[order]
    starts = np.flatnonzero(np.concatenate(((True,), both[1:] != both[:-1])))
    return both[starts], np.add.reduceat(np.concatenate((counts, other_counts))[order], starts)


def _log_keys(magnitudes: np.ndarray) -> np.ndarray:
    """The definition of a bucket: ceil(log(x) / log(gamma)), as int64 (a scratch buffer)."""
    index = scratch("sketch_index", magnitudes.size, np.float64)
    np.log(magnitudes, out=index)
    index /= _SKETCH_LOG_GAMMA
    np.ceil(index, out=index)
    keys = scratch("sketch_buckets", magnitudes.size, np.int64)
    np.copyto(keys, index, casting="unsafe")  # what astype(np.int64) does, into a reused buffer
    return keys


# Bucket keys without a logarithm per value. A positive double's bits, read as an integer, grow
# with its value; the top bits (exponent and 12 mantissa bits) cut each octave into 4096 cells,
# each far narrower than a bucket (an octave holds ~69 buckets). A table gives the key of every
# cell that lies inside one bucket, found by `_log_keys` at the cell's two ends with a margin
# (about a million float64 ulps of the bucket index) that np.log's few-ulp error cannot cross,
# so every value in the cell gets the key `_log_keys` gives it. Cells that hold a bucket boundary
# (~1.7% of them) are marked, and their values take the logarithm. The table is the same for
# every column, so it is built once per range of octaves seen (a few milliseconds) and shared.
# The profile kernel looks keys up in it (core/kernel_passes.sketch_counts).
_CELL_SHIFT = 40  # 52 mantissa bits - 12
_UNSAFE = np.iinfo(np.int64).min
_MAX_TABLE_CELLS = 1 << 21  # 512 octaves (16 MiB): beyond, the values take the logarithm
_MIN_CELL = int(np.float64(_SKETCH_MIN_MAGNITUDE).view(np.int64)) >> _CELL_SHIFT
_OCTAVE_CELLS = 1 << (52 - _CELL_SHIFT)
_key_table: tuple[int, np.ndarray] = (0, np.empty(0, np.int64))  # (first cell, keys); replaced, never changed


def _cell_keys(first: int, last: int) -> np.ndarray:
    """Keys of cells first..last, `_UNSAFE` for a cell whose values may fall in two buckets."""
    cells = np.arange(first, last + 1, dtype=np.int64)
    low = (cells << _CELL_SHIFT).view(np.float64)
    high = (((cells + 1) << _CELL_SHIFT) - 1).view(np.float64)
    key_low, key_high = _log_keys(low).copy(), _log_keys(high).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        index_low = np.log(low) / _SKETCH_LOG_GAMMA
        index_high = np.log(high) / _SKETCH_LOG_GAMMA
    margin = 1e-9 * np.maximum(1.0, np.abs(index_high))
    safe = (key_low == key_high) & (index_low > key_low - 1 + margin) & (index_high < key_high - margin)
    return np.where(safe, key_high, _UNSAFE)


def _table_for(first: int, last: int) -> tuple[int, np.ndarray] | None:
    """The shared key table covering cells first..last (grown to whole octaves), or None if too wide."""
    global _key_table
    start, table = _key_table
    if table.size and start <= first and last < start + table.size:
        return start, table
    if table.size:
        first, last = min(first, start), max(last, start + table.size - 1)
    first -= first % _OCTAVE_CELLS
    last += _OCTAVE_CELLS - 1 - last % _OCTAVE_CELLS
    if first < _MIN_CELL - _OCTAVE_CELLS or last - first + 1 > _MAX_TABLE_CELLS:
        return None
    first = max(first, _MIN_CELL)  # cells below the zero threshold are never looked up
    _key_table = (first, _cell_keys(first, last))  # one assignment: other threads see the old or the new table
    return _key_table


def _buckets(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count positive magnitudes (all >= the zero threshold) into log buckets ceil(log(x) / log(gamma)).

    The definition, with a logarithm per value: the profile kernel gets the same keys from the
    table above (core/numeric_kernel.py); this serves from_values (tests, oracles, small data)."""
    buckets = _log_keys(magnitudes)
    low_key = int(buckets.min())
    buckets -= low_key
    counts = np.bincount(buckets)
    present = np.flatnonzero(counts)
    return (present + low_key).astype(np.int32), counts[present].astype(np.int64)
