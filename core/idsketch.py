"""Sketches of high-cardinality ID columns: bounded memory, mergeable, serialisable, numpy-vectorised.

CTR models live on IDs (offer, advertiser, partner, hashed user) with millions of distinct
values. Exact per-ID counts of a reference or a week of windows do not fit a bounded budget,
so an ID column is reduced to three sketches, each with a stated error bound:

- `HeavyHitters`: the mergeable Misra-Gries / Space-Saving summary (Agarwal et al., "Mergeable
  summaries", 2012) with `capacity` counters. For every ID, `lower <= true count <= lower +
  error`, with `error = (rows - sum(counters)) / (capacity + 1) <= rows / (capacity + 1)`. Every
  ID holding more than that share of traffic is kept. Merging keeps the bound.
- `HyperLogLog`: the distinct count, 2**p one-byte registers, relative standard error
  1.04 / sqrt(2**p) (0.81% at p = 14). Merging (register max) is exact: the merge of two
  sketches equals the sketch of the union.
- `CountMin`: per-ID counts for membership ("was this ID in training?") and cold-start
  ("seen fewer than N times?"). It never undercounts; an estimate exceeds the truth by more
  than e / width * rows with probability at most exp(-depth). So `estimate == 0` proves an ID
  unseen, and `estimate < N` proves it cold; an unseen or cold ID can hide behind collisions
  (the chance is about (1 - exp(-distinct / width)) ** depth: 0.8 at 3M distinct in 2^20 x 4,
  so cold-start shares are lower bounds). Merging (adding tables of the same shape) is exact.
- `BloomFilter`: membership of the reference's IDs for "unseen": 2^27 bits (16 MiB) and 4
  probes keep a fresh ID's chance of looking seen at 5e-5 with 3M distinct IDs (a count-min of
  the same memory: 0.8). No false negatives; merging (OR) is exact.

Updates take Arrow arrays: values are cast to strings (so 7 and "7" are one ID), counted per
batch with Arrow's `value_counts`, and hashed with a vectorised 64-bit FNV-1a plus a
splitmix64 finaliser (deterministic across processes, unlike Python's `hash`).
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def as_ids(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Non-null values as one string array (IDs compare as text)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(values.type):
        values = pc.cast(values.dictionary_decode() if pa.types.is_dictionary(values.type) else values,
                         pa.string())
    return values.drop_null() if values.null_count else values


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_ids(ids: pa.Array) -> np.ndarray:
    """64-bit hashes of a string array (FNV-1a over the bytes, splitmix64 on top), vectorised over rows."""
    ids = as_ids(ids)
    n = len(ids)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0:
        return h
    _, offset_buffer, data_buffer = ids.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[ids.offset:ids.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    shortest, longest = int(lengths.min()), int(lengths.max())
    with np.errstate(over="ignore"):
        for j in range(shortest):  # every row has these bytes: no masking
            h = (h ^ data[starts + j].astype(np.uint64)) * _FNV_PRIME
        for j in range(shortest, longest):
            rows = np.nonzero(lengths > j)[0]
            h[rows] = (h[rows] ^ data[starts[rows] + j].astype(np.uint64)) * _FNV_PRIME
        return _splitmix64(h ^ lengths.astype(np.uint64))


def batch_counts(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(distinct IDs, their counts) of one batch; nulls are left out."""
    counted = pc.value_counts(as_ids(values))
    return counted.field("values"), counted.field("counts").to_numpy().astype(np.int64)


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes(), 1)).decode("ascii")


def _unpack(text: str, dtype) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).copy()


# ------------------------------------------------------------------ heavy hitters


@dataclass
class HeavyHitters:
    """Mergeable Misra-Gries / Space-Saving summary: at most `capacity` (ID, count) counters."""

    capacity: int = 1000
    keys: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rows: int = 0

    @property
    def error(self) -> float:
        """Most any count here is below the truth (the same for every ID)."""
        return (self.rows - int(self.counts.sum())) / (self.capacity + 1)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.counts.nbytes)

    def update(self, values: pa.Array | pa.ChunkedArray) -> "HeavyHitters":
        keys, counts = batch_counts(values)
        return self.add_counts(keys, counts)

    def add_counts(self, keys: pa.Array, counts: np.ndarray) -> "HeavyHitters":
        """Fold in exact counts of distinct IDs (a batch's), as a merge with an exact summary."""
        return self._combine(keys, counts, int(counts.sum()))

    def merge(self, other: "HeavyHitters") -> "HeavyHitters":
        if other.capacity != self.capacity:
            raise ValueError(f"heavy hitters: cannot merge capacity {self.capacity} with {other.capacity}")
        return self._combine(other.keys, other.counts, other.rows)

    def _combine(self, keys: pa.Array, counts: np.ndarray, rows: int) -> "HeavyHitters":
        table = pa.table({"key": pa.concat_arrays([self.keys, as_ids(keys)]),
                          "count": np.concatenate([self.counts, counts])})
        summed = table.group_by("key").aggregate([("count", "sum")])
        keys, counts = summed.column("key").combine_chunks(), summed.column("count_sum").to_numpy()
        if len(counts) > self.capacity:  # subtract the (capacity+1)-th largest counter: Misra-Gries
            cut = np.partition(counts, len(counts) - self.capacity - 1)[len(counts) - self.capacity - 1]
            counts = counts - cut
            keep = np.nonzero(counts > 0)[0]
            keys, counts = keys.take(pa.array(keep)), counts[keep]
        return HeavyHitters(self.capacity, keys, counts.astype(np.int64), self.rows + rows)

    def top(self, k: int) -> list[tuple[str, int]]:
        """The k largest counters (lower bounds), largest first; ties by ID."""
        order = sorted(range(len(self.counts)), key=lambda i: (-int(self.counts[i]), self.keys[i].as_py()))[:k]
        return [(self.keys[i].as_py(), int(self.counts[i])) for i in order]

    def estimate(self, key: str) -> int:
        """Lower bound of `key`'s count (0 when not held); add `error` for the upper bound."""
        found = pc.index(self.keys, key).as_py()
        return int(self.counts[found]) if found >= 0 else 0

    def to_dict(self) -> dict:
        return {"capacity": self.capacity, "rows": self.rows, "keys": self.keys.to_pylist(),
                "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "HeavyHitters":
        return cls(int(data["capacity"]), pa.array(data["keys"], pa.string()),
                   np.asarray(data["counts"], dtype=np.int64), int(data["rows"]))


# ------------------------------------------------------------------ distinct count


@dataclass
class HyperLogLog:
    """Distinct count in 2**p one-byte registers; relative standard error 1.04 / sqrt(2**p)."""

    p: int = 14
    registers: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 4 <= self.p <= 18:
            raise ValueError(f"hyperloglog: p must be in [4, 18], got {self.p}")
        if self.registers is None:
            self.registers = np.zeros(1 << self.p, dtype=np.uint8)

    @property
    def relative_error(self) -> float:
        return 1.04 / math.sqrt(1 << self.p)

    @property
    def nbytes(self) -> int:
        return int(self.registers.nbytes)

    def update(self, values: pa.Array | pa.ChunkedArray) -> "HyperLogLog":
        return self.add_hashes(hash_ids(pc.unique(as_ids(values))))

    def add_hashes(self, hashes: np.ndarray) -> "HyperLogLog":
        bits = 64 - self.p
        index = (hashes >> np.uint64(bits)).astype(np.int64)
        rest = (hashes & np.uint64((1 << bits) - 1)).astype(np.float64)  # < 2**50: exact in a float
        _, exponent = np.frexp(rest)  # the bit length of rest (0 for 0)
        rank = (bits - exponent + 1).astype(np.uint8)
        registers = self.registers.copy()
        np.maximum.at(registers, index, rank)
        return HyperLogLog(self.p, registers)

    def merge(self, other: "HyperLogLog") -> "HyperLogLog":
        if other.p != self.p:
            raise ValueError(f"hyperloglog: cannot merge p={self.p} with p={other.p}")
        return HyperLogLog(self.p, np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:  # small range: linear counting
            return m * math.log(m / zeros)
        return raw

    def to_dict(self) -> dict:
        return {"p": self.p, "registers": _pack(self.registers)}

    @classmethod
    def from_dict(cls, data: dict) -> "HyperLogLog":
        return cls(int(data["p"]), _unpack(data["registers"], np.uint8))


# ------------------------------------------------------------------ per-ID counts


@dataclass
class CountMin:
    """Count-min sketch: never undercounts; over by > e/width * rows with probability <= exp(-depth)."""

    width: int = 1 << 20
    depth: int = 4
    table: np.ndarray | None = None
    rows: int = 0

    def __post_init__(self) -> None:
        if self.width < 16 or self.depth < 1:
            raise ValueError(f"count-min: width >= 16 and depth >= 1 expected, got {self.width} x {self.depth}")
        if self.table is None:
            self.table = np.zeros((self.depth, self.width), dtype=np.uint32)

    @property
    def epsilon(self) -> float:
        return math.e / self.width

    @property
    def delta(self) -> float:
        return math.exp(-self.depth)

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def _cells(self, hashes: np.ndarray) -> np.ndarray:
        """Column of each hash in each row (double hashing: h1 + i * h2)."""
        low = (hashes & np.uint64(0xFFFFFFFF)).astype(np.int64)
        high = ((hashes >> np.uint64(32)) | np.uint64(1)).astype(np.int64)
        return (low[None, :] + np.arange(self.depth, dtype=np.int64)[:, None] * high[None, :]) % self.width

    def add_hashes(self, hashes: np.ndarray, counts: np.ndarray) -> "CountMin":
        table = self.table.copy()
        cells = self._cells(hashes)
        for i in range(self.depth):
            table[i] += np.bincount(cells[i], weights=counts, minlength=self.width).astype(np.uint32)
        return CountMin(self.width, self.depth, table, self.rows + int(counts.sum()))

    def update(self, values: pa.Array | pa.ChunkedArray) -> "CountMin":
        keys, counts = batch_counts(values)
        return self.add_hashes(hash_ids(keys), counts)

    def estimate_hashes(self, hashes: np.ndarray) -> np.ndarray:
        cells = self._cells(hashes)
        return np.min(self.table[np.arange(self.depth)[:, None], cells], axis=0).astype(np.int64)

    def estimate(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return self.estimate_hashes(hash_ids(values))

    def merge(self, other: "CountMin") -> "CountMin":
        if (other.width, other.depth) != (self.width, self.depth):
            raise ValueError(f"count-min: cannot merge {self.width}x{self.depth} with {other.width}x{other.depth}")
        return CountMin(self.width, self.depth, self.table + other.table, self.rows + other.rows)

    def to_dict(self) -> dict:
        return {"width": self.width, "depth": self.depth, "rows": self.rows, "table": _pack(self.table)}

    @classmethod
    def from_dict(cls, data: dict) -> "CountMin":
        width, depth = int(data["width"]), int(data["depth"])
        return cls(width, depth, _unpack(data["table"], np.uint32).reshape(depth, width), int(data["rows"]))


# ------------------------------------------------------------------ membership


@dataclass
class BloomFilter:
    """Set membership in `bits` bits with `hashes` probes: no false negatives, so "not contained"
    proves an ID unseen; a fresh ID looks seen with probability (share of bits set) ** hashes.
    At the same memory it holds far more IDs than a count-min's zero cells (1 bit, not 32)."""

    bits: int = 1 << 27
    hashes: int = 4
    array: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.bits < 64 or self.bits % 8 or not 1 <= self.hashes <= 16:
            raise ValueError(f"bloom filter: bits a multiple of 8 (>= 64), 1-16 hashes; got {self.bits}, {self.hashes}")
        if self.array is None:
            self.array = np.zeros(self.bits // 8, dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    @property
    def false_positive_rate(self) -> float:
        """Chance that a fresh ID looks seen, from the bits set now."""
        filled = float(np.unpackbits(self.array).mean()) if self.bits <= 1 << 20 else \
            float(np.unpackbits(self.array[::max(1, len(self.array) // (1 << 17))]).mean())
        return filled ** self.hashes

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        low = (hashes & np.uint64(0xFFFFFFFF)).astype(np.int64)
        high = ((hashes >> np.uint64(32)) | np.uint64(1)).astype(np.int64)
        return (low[None, :] + np.arange(self.hashes, dtype=np.int64)[:, None] * high[None, :]) % self.bits

    def add_hashes(self, hashes: np.ndarray) -> "BloomFilter":
        positions = np.sort(self._positions(hashes).ravel())  # sorted: each byte's bits are adjacent
        if len(positions):
            positions = positions[np.concatenate([[True], positions[1:] != positions[:-1]])]
        cells = positions >> 3
        starts = np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]])) if len(cells) else cells
        array = self.array.copy()
        if len(cells):
            array[cells[starts]] |= np.bitwise_or.reduceat((1 << (positions & 7)).astype(np.uint8), starts)
        return BloomFilter(self.bits, self.hashes, array)

    def contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        positions = self._positions(hashes)
        return np.all((self.array[positions >> 3] >> (positions & 7).astype(np.uint8)) & 1, axis=0)

    def merge(self, other: "BloomFilter") -> "BloomFilter":
        if (other.bits, other.hashes) != (self.bits, self.hashes):
            raise ValueError(f"bloom filter: cannot merge {self.bits}/{self.hashes} with {other.bits}/{other.hashes}")
        return BloomFilter(self.bits, self.hashes, self.array | other.array)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "hashes": self.hashes, "array": _pack(self.array)}

    @classmethod
    def from_dict(cls, data: dict) -> "BloomFilter":
        return cls(int(data["bits"]), int(data["hashes"]), _unpack(data["array"], np.uint8))


# ------------------------------------------------------------------ one ID column


@dataclass
class IdSketch:
    """Everything kept about one ID column: rows, nulls, heavy hitters, distinct count and
    (for a reference) per-ID counts. Mergeable and JSON-serialisable; memory is fixed by the
    parameters, not by the number of distinct IDs."""

    heavy: HeavyHitters = field(default_factory=HeavyHitters)
    distinct: HyperLogLog = field(default_factory=HyperLogLog)
    counts: CountMin | None = None
    rows: int = 0
    nulls: int = 0
    seen: BloomFilter | None = None  # with `counts` (a reference): membership, exact for "unseen"

    @classmethod
    def empty(cls, capacity: int = 1000, p: int = 14, count_width: int | None = None,
              count_depth: int = 4, seen_bits: int = 1 << 27) -> "IdSketch":
        counts = CountMin(count_width, count_depth) if count_width else None
        seen = BloomFilter(seen_bits) if count_width else None
        return cls(HeavyHitters(capacity), HyperLogLog(p), counts, seen=seen)

    @property
    def nbytes(self) -> int:
        return (self.heavy.nbytes + self.distinct.nbytes + (self.counts.nbytes if self.counts is not None else 0)
                + (self.seen.nbytes if self.seen is not None else 0))

    def held(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unseen, count upper bound) per hashed ID: unseen is proven (no false negatives); the
        count never undercounts, and an unseen ID's is 0."""
        estimate = self.counts.estimate_hashes(hashes)
        unseen = ~self.seen.contains_hashes(hashes) if self.seen is not None else estimate == 0
        return unseen | (estimate == 0), np.where(unseen, 0, estimate)

    def update(self, values: pa.Array | pa.ChunkedArray) -> "IdSketch":
        keys, counts = batch_counts(values)
        return self.add_counted(keys, counts, hash_ids(keys), len(values), values.null_count)

    def add_counted(self, keys: pa.Array, counts: np.ndarray, hashes: np.ndarray, rows: int,
                    nulls: int) -> "IdSketch":
        """Fold in one batch already counted (`batch_counts`) and hashed (`hash_ids(keys)`)."""
        return IdSketch(self.heavy.add_counts(keys, counts), self.distinct.add_hashes(hashes),
                        None if self.counts is None else self.counts.add_hashes(hashes, counts),
                        self.rows + rows, self.nulls + nulls,
                        None if self.seen is None else self.seen.add_hashes(hashes))

    def merge(self, other: "IdSketch") -> "IdSketch":
        if (self.counts is None) != (other.counts is None):
            raise ValueError("id sketch: cannot merge a sketch with per-ID counts and one without")
        if (self.seen is None) != (other.seen is None):
            raise ValueError("id sketch: cannot merge a sketch with a membership filter and one without")
        return IdSketch(self.heavy.merge(other.heavy), self.distinct.merge(other.distinct),
                        None if self.counts is None else self.counts.merge(other.counts),
                        self.rows + other.rows, self.nulls + other.nulls,
                        None if self.seen is None else self.seen.merge(other.seen))

    def to_dict(self) -> dict:
        return {"rows": self.rows, "nulls": self.nulls, "heavy": self.heavy.to_dict(),
                "distinct": self.distinct.to_dict(),
                "counts": None if self.counts is None else self.counts.to_dict(),
                "seen": None if self.seen is None else self.seen.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "IdSketch":
        counts, seen = data.get("counts"), data.get("seen")
        return cls(HeavyHitters.from_dict(data["heavy"]), HyperLogLog.from_dict(data["distinct"]),
                   None if counts is None else CountMin.from_dict(counts), int(data["rows"]), int(data["nulls"]),
                   None if seen is None else BloomFilter.from_dict(seen))


def expected_collisions(distinct: float, buckets: int) -> tuple[float, float]:
    """(bucket occupancy, collision rate) of `distinct` IDs hashed uniformly into `buckets`:
    occupancy = share of buckets used; collision rate = share of IDs that share their bucket
    with at least one other ID (IDs the model cannot tell apart), 1 - (1 - 1/buckets)**(distinct - 1)."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    if distinct <= 0:
        return 0.0, 0.0
    if buckets == 1:
        return 1.0, 1.0 if distinct > 1 else 0.0
    empty = math.log1p(-1.0 / buckets)  # log of the chance one ID misses a given bucket
    return -math.expm1(distinct * empty), -math.expm1(max(distinct - 1, 0.0) * empty)
