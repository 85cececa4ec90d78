"""The quantile sketch of numeric profiles: DDSketch-style log buckets, mergeable by adding counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.buffers import scratch

SKETCH_RELATIVE_ACCURACY = 0.005
_SKETCH_GAMMA = (1 + SKETCH_RELATIVE_ACCURACY) / (1 - SKETCH_RELATIVE_ACCURACY)
_SKETCH_LOG_GAMMA = math.log(_SKETCH_GAMMA)
# Magnitudes below this go to the zero bucket; keeps bucket indices bounded.
_SKETCH_MIN_MAGNITUDE = 1e-12


@dataclass
class QuantileSketch:
    """DDSketch-style log buckets: quantiles within 0.5% relative error, merged exactly by adding counts."""

    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    zero: int = 0

    @property
    def count(self) -> int:
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    @staticmethod
    def from_values(values: np.ndarray) -> "QuantileSketch":
        sketch = QuantileSketch()
        if values.size == 0:
            return sketch
        low, high = float(values.min()), float(values.max())
        if low >= _SKETCH_MIN_MAGNITUDE:  # all positive (the common case): no masks, no copies
            _add_buckets(values, sketch.positive)
            return sketch
        if high <= -_SKETCH_MIN_MAGNITUDE:
            _add_buckets(-values, sketch.negative)
            return sketch
        magnitude = np.abs(values)
        is_zero = magnitude < _SKETCH_MIN_MAGNITUDE
        sketch.zero = int(np.count_nonzero(is_zero))
        for sign_mask, target in ((values > 0) & ~is_zero, sketch.positive), ((values < 0) & ~is_zero, sketch.negative):
            selected = magnitude[sign_mask]
            if selected.size:
                _add_buckets(selected, target)
        return sketch

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        merged = QuantileSketch(dict(self.positive), dict(self.negative), self.zero + other.zero)
        for source, target in ((other.positive, merged.positive), (other.negative, merged.negative)):
            for key, value in source.items():
                target[key] = target.get(key, 0) + value
        return merged

    def quantile(self, q: float) -> float:
        total = self.count
        if total == 0:
            return float("nan")
        rank = q * (total - 1)
        seen = 0
        # Ascending order: most negative first (largest index among negatives), then zero, then positives.
        for key in sorted(self.negative, reverse=True):
            seen += self.negative[key]
            if seen > rank:
                return -self._value(key)
        seen += self.zero
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return self._value(key)
        return self._value(max(self.positive)) if self.positive else 0.0

    @staticmethod
    def _value(key: int) -> float:
        return 2 * _SKETCH_GAMMA**key / (_SKETCH_GAMMA + 1)

    def to_dict(self) -> dict:
        return {
            "relative_accuracy": SKETCH_RELATIVE_ACCURACY,
            "zero": self.zero,
            "positive": {str(k): v for k, v in sorted(self.positive.items())},
            "negative": {str(k): v for k, v in sorted(self.negative.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "QuantileSketch":
        return cls(
            {int(k): int(v) for k, v in data["positive"].items()},
            {int(k): int(v) for k, v in data["negative"].items()},
            int(data["zero"]),
        )


def _add_buckets(magnitudes: np.ndarray, target: dict[int, int]) -> None:
    """Count positive magnitudes (all >= the zero threshold) into log buckets ceil(log(x) / log(gamma))."""
    index = scratch("sketch_index", magnitudes.size, np.float64)
    np.log(magnitudes, out=index)
    index /= _SKETCH_LOG_GAMMA
    np.ceil(index, out=index)
    buckets = scratch("sketch_buckets", magnitudes.size, np.int64)
    np.copyto(buckets, index, casting="unsafe")  # what astype(np.int64) does, into a reused buffer
    low = int(buckets.min())
    buckets -= low
    counts = np.bincount(buckets)
    present = np.flatnonzero(counts)
    target.update(zip((present + low).tolist(), counts[present].tolist()))
