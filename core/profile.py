"""Mergeable per-feature profiles: the one kernel every engine runs.

A profile is a pure function of Arrow record batches and a `ProfileSpec` (bin edges
fixed from the reference). Profiles of disjoint data merge into the profile of the
union: counts and histograms add exactly, moments combine with Chan's formula, the
quantile sketch adds bucket counts, categorical counts add. So hourly profiles merge
into days and weeks without reading rows again, and partitions profiled anywhere
(threads, Spark executors) merge into the same answer.

Numeric features keep a fine histogram over reference-quantile edges with per-bin sums
(bin means let Wasserstein be computed without rows), exact null/NaN/inf counts,
moments, min/max and a DDSketch-style quantile sketch. Categorical features keep exact
value counts up to a bound, folding the rarest into an `other` bucket beyond it.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Iterable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.buffers import scratch
from core.errors import SchemaError
from core.numeric_kernel import _GRID_MIN_VALUES, PASSES, numeric_state
from core.pipeline import map_bounded
from core.sketch import SKETCH_RELATIVE_ACCURACY, QuantileSketch  # noqa: F401  (re-exported)

PROFILE_SCHEMA_VERSION = 1
Kind = Literal["numeric", "categorical"]

DEFAULT_NUMERIC_BINS = 100
DEFAULT_MAX_CATEGORIES = 10_000


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class FeatureSpec:
    """How one feature is profiled: its kind and, for numerics, the fixed bin edges."""

    name: str
    kind: Kind
    edges: tuple[float, ...] = ()  # interior edges; bins are (-inf,e0), [e0,e1), ..., [e_last, inf)
    arrow_type: str = ""  # the reference's type, to report retyped columns

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "edges": list(self.edges), "arrow_type": self.arrow_type}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        return cls(data["name"], data["kind"], tuple(float(e) for e in data["edges"]), data.get("arrow_type", ""))


@dataclass(frozen=True)
class ProfileSpec:
    features: tuple[FeatureSpec, ...]
    max_categories: int = DEFAULT_MAX_CATEGORIES

    def __getitem__(self, name: str) -> FeatureSpec:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, FeatureSpec]:  # a wide spec is looked up once per feature
        return {f.name: f for f in self.features}

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def to_dict(self) -> dict:
        return {"max_categories": self.max_categories, "features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: dict) -> "ProfileSpec":
        return cls(tuple(FeatureSpec.from_dict(f) for f in data["features"]), int(data["max_categories"]))


def infer_kind(arrow_type: pa.DataType) -> Kind:
    """Numbers are numeric; strings, booleans and dictionaries are categorical."""
    if pa.types.is_dictionary(arrow_type):
        return "categorical"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_boolean(arrow_type):
        return "categorical"
    raise SchemaError(f"column type {arrow_type} is neither numeric nor categorical")


def edges_from_sample(values: np.ndarray, n_bins: int = DEFAULT_NUMERIC_BINS) -> tuple[float, ...]:
    """Interior bin edges: reference quantiles, or midpoints between values when few are distinct.

    Midpoints keep every distinct value of a discrete feature in a bin of its own, so a
    value never sits on an edge and bin means are the values themselves.
    """
    finite = np.sort(values[np.isfinite(values)])  # sorted once: distinct values and quantiles both use it
    if finite.size == 0:
        return ()
    starts = np.empty(finite.size, dtype=bool)
    starts[0] = True
    np.not_equal(finite[1:], finite[:-1], out=starts[1:])
    if np.count_nonzero(starts) <= n_bins:
        distinct = finite[starts]
        return tuple(float(e) for e in (distinct[1:] + distinct[:-1]) / 2)
    quantiles = np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])
    return tuple(float(e) for e in np.unique(quantiles))


# --------------------------------------------------------------------------- feature profiles


@dataclass
class NumericProfile:
    """Counts, moments, fine histogram (counts and sums per bin) and a quantile sketch."""

    edges: tuple[float, ...]
    rows: int = 0
    null_count: int = 0
    nan_count: int = 0
    inf_count: int = 0
    count: int = 0  # finite values
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    min: float = math.inf
    max: float = -math.inf
    bin_counts: np.ndarray | None = None
    bin_sums: np.ndarray | None = None
    sketch: QuantileSketch = field(default_factory=QuantileSketch)
    kind: Kind = "numeric"

    def __post_init__(self) -> None:
        if self.bin_counts is None:
            self.bin_counts = np.zeros(len(self.edges) + 1, dtype=np.int64)
        if self.bin_sums is None:
            self.bin_sums = np.zeros(len(self.edges) + 1, dtype=np.float64)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    @property
    def missing_count(self) -> int:
        """Values that cannot be scored: nulls, NaN and infinities (the 'null rate' counts all three)."""
        return self.null_count + self.nan_count + self.inf_count

    @property
    def bin_means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.bin_counts > 0, self.bin_sums / np.maximum(self.bin_counts, 1), np.nan)

    @staticmethod
    def from_array(array: pa.Array, edges: tuple[float, ...]) -> "NumericProfile":
        edges = tuple(edges)
        profile = NumericProfile(edges)
        profile.rows = len(array)
        profile.null_count = array.null_count
        values = _non_null_values(array) if profile.null_count else array.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "i" and values.size >= _GRID_MIN_VALUES:
            integers = np.ascontiguousarray(values, dtype=np.int64)
            low, high = PASSES.integer_range(integers)
            if high - low < values.size:  # counts, flags, small codes: profile the distinct values
                tally = np.zeros(high - low + 1, np.int64)
                PASSES.count_offsets(integers, low, tally)
                present = np.flatnonzero(tally)
                return profile._with_counts((present + low).astype(np.float64), tally[present])
        if values.dtype != np.float64:
            if values.dtype.kind in "iuf":
                converted = scratch("values", values.size, np.float64)
                np.copyto(converted, values, casting="unsafe")
                values = converted
            else:
                values = values.astype(np.float64)
        state = numeric_state(values, edges)
        profile.count, profile.nan_count, profile.inf_count = state.count, state.nan_count, state.inf_count
        if state.count:
            profile.mean, profile.m2, profile.min, profile.max = state.mean, state.m2, state.min, state.max
            profile.bin_counts, profile.bin_sums, profile.sketch = state.bin_counts, state.bin_sums, state.sketch
        return profile

    def _with_counts(self, values: np.ndarray, counts: np.ndarray) -> "NumericProfile":
        """Fill in the statistics of finite sorted distinct `values` occurring `counts` (> 0) times.

        The same profile as of the values repeated: counts and sums of integers are exact either
        way; m2 differs only in rounding."""
        self.count = int(counts.sum())
        weighted = values * counts
        self.mean = float(weighted.sum()) / self.count
        self.m2 = float((counts * (values - self.mean) ** 2).sum())
        self.min, self.max = float(values[0]), float(values[-1])
        bins = np.searchsorted(np.asarray(self.edges), values, side="right")
        self.bin_counts = np.bincount(bins, weights=counts, minlength=len(self.edges) + 1).astype(np.int64)
        self.bin_sums = np.bincount(bins, weights=weighted, minlength=len(self.edges) + 1)
        self.sketch = QuantileSketch.from_counts(values, counts)
        return self

    def merge(self, other: "NumericProfile") -> "NumericProfile":
        if self.edges is not other.edges and tuple(self.edges) != tuple(other.edges):
            raise ValueError("cannot merge numeric profiles with different bin edges")
        if not other.rows:  # merging into (or with) an empty profile: a copy of the other side
            return replace(self)
        if not self.rows:
            return replace(other)
        merged = NumericProfile(self.edges, bin_counts=self.bin_counts + other.bin_counts,
                                bin_sums=self.bin_sums + other.bin_sums)
        merged.rows = self.rows + other.rows
        merged.null_count = self.null_count + other.null_count
        merged.nan_count = self.nan_count + other.nan_count
        merged.inf_count = self.inf_count + other.inf_count
        merged.count = self.count + other.count
        if merged.count:
            delta = other.mean - self.mean
            merged.mean = self.mean + delta * other.count / merged.count
            merged.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / merged.count
        merged.min = min(self.min, other.min)
        merged.max = max(self.max, other.max)
        merged.sketch = self.sketch.merge(other.sketch)
        return merged

    def to_dict(self) -> dict:
        return {
            "kind": "numeric",
            "rows": self.rows,
            "null_count": self.null_count,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "edges": list(self.edges),
            "bin_counts": self.bin_counts.tolist(),
            "bin_sums": self.bin_sums.tolist(),
            "sketch": self.sketch.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "NumericProfile":
        return cls(
            edges=tuple(data["edges"]),
            rows=data["rows"],
            null_count=data["null_count"],
            nan_count=data["nan_count"],
            inf_count=data["inf_count"],
            count=data["count"],
            mean=data["mean"],
            m2=data["m2"],
            min=math.inf if data["min"] is None else data["min"],
            max=-math.inf if data["max"] is None else data["max"],
            bin_counts=np.asarray(data["bin_counts"], dtype=np.int64),
            bin_sums=np.asarray(data["bin_sums"], dtype=np.float64),
            sketch=QuantileSketch.from_dict(data["sketch"]),
        )


@dataclass
class CategoricalProfile:
    """Exact value counts up to `max_categories` distinct values; the rarest fold into `other_count`."""

    max_categories: int = DEFAULT_MAX_CATEGORIES
    rows: int = 0
    null_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    other_count: int = 0  # values folded away once the bound was reached
    kind: Kind = "categorical"

    @property
    def count(self) -> int:
        return self.rows - self.null_count

    @property
    def missing_count(self) -> int:
        return self.null_count

    @property
    def truncated(self) -> bool:
        return self.other_count > 0

    @staticmethod
    def from_array(array: pa.Array, max_categories: int) -> "CategoricalProfile":
        profile = CategoricalProfile(max_categories)
        profile.rows = len(array)
        profile.null_count = array.null_count
        if pa.types.is_dictionary(array.type) and array.dictionary.null_count == 0:
            # Count the indices, then name the values that occur: no per-row strings.
            dictionary = array.dictionary
            if not (pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)):
                dictionary = pc.cast(dictionary, pa.string())
            profile.counts = _named_counts(dictionary, _count_indices(array.indices, len(dictionary)))
            return profile._bounded()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pc.cast(array, pa.string())
        counted = pc.value_counts(array.drop_null())
        values = counted.field("values").to_pylist()
        totals = counted.field("counts").to_pylist()
        profile.counts = dict(zip(values, totals))
        return profile._bounded()

    def _bounded(self) -> "CategoricalProfile":
        if len(self.counts) > self.max_categories:
            # Keep the most frequent; ties broken by value so the result is deterministic.
            ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
            kept = dict(ranked[: self.max_categories])
            self.other_count += sum(v for _, v in ranked[self.max_categories :])
            self.counts = kept
        return self

    def merge(self, other: "CategoricalProfile") -> "CategoricalProfile":
        merged = CategoricalProfile(
            min(self.max_categories, other.max_categories),
            self.rows + other.rows,
            self.null_count + other.null_count,
            dict(self.counts),
            self.other_count + other.other_count,
        )
        for key, value in other.counts.items():
            merged.counts[key] = merged.counts.get(key, 0) + value
        return merged._bounded()

    def to_dict(self) -> dict:
        return {
            "kind": "categorical",
            "rows": self.rows,
            "null_count": self.null_count,
            "max_categories": self.max_categories,
            "counts": dict(sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))),
            "other_count": self.other_count,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CategoricalProfile":
        return cls(data["max_categories"], data["rows"], data["null_count"], dict(data["counts"]), data["other_count"])


# Dictionary strings kept per thread for reuse (~8 MB of Python strings); a larger dictionary
# (an ID-like column) is not kept, and only the values that occur are turned into strings.
_KEPT_STRINGS = 100_000
_KEPT_DICTIONARY_MAX = 20_000
_dictionary_names_kept = threading.local()


def _named_counts(dictionary: pa.Array, tally: np.ndarray) -> dict[str, int]:
    """Value -> count from a dictionary and the tally of its indices (counts of a repeated value add)."""
    present = np.flatnonzero(tally)
    if len(dictionary) <= _KEPT_DICTIONARY_MAX:
        names, distinct = _dictionary_names(dictionary)
        if distinct and present.size == len(names):  # every value occurs (the usual case)
            return dict(zip(names, tally.tolist()))
        names = [names[i] for i in present.tolist()]
    else:
        names = dictionary.take(pa.array(present)).to_pylist()
    counts: dict[str, int] = {}
    for name, count in zip(names, tally[present].tolist()):
        counts[name] = counts.get(name, 0) + count
    return counts


def _dictionary_names(dictionary: pa.Array) -> tuple[list[str], bool]:
    """A dictionary's values as Python strings, and whether they are distinct.

    Every batch carries its own copy of its row group's dictionary, so consecutive batches of a
    column bring equal dictionaries: the strings of the last ones each thread saw (up to
    _KEPT_STRINGS) are reused when an equal one comes (Arrow compares the buffers, ~1 us), instead
    of building a thousand Python strings and hashing them for every column of every batch."""
    kept: dict = getattr(_dictionary_names_kept, "by_size", None)
    if kept is None:
        kept = _dictionary_names_kept.by_size = {}
    key = (len(dictionary), dictionary.nbytes)
    entry = kept.get(key)
    if entry is not None and entry[0].equals(dictionary):
        return entry[1], entry[2]
    names = dictionary.to_pylist()
    kept.pop(key, None)
    while kept and sum(len(e[1]) for e in kept.values()) + len(names) > _KEPT_STRINGS:
        kept.pop(next(iter(kept)))  # the oldest first
    kept[key] = (dictionary, names, len(set(names)) == len(names))
    return names, kept[key][2]


_VALID_PASSES = {pa.float64(): ("valid_floats", np.float64), pa.int64(): ("valid_integers", np.int64)}


def _non_null_values(array: pa.Array) -> np.ndarray:
    """The array's non-null values as numpy. float64 and int64 columns (most) are compacted by one
    compiled pass into a reused buffer: `pc.drop_null` allocated a fresh column for every batch."""
    if not array.null_count:  # (then the bitmap may be absent, and _as_numpy gives none)
        return array.to_numpy(zero_copy_only=False)
    compact = _VALID_PASSES.get(array.type)
    if compact is None:
        return pc.drop_null(array).to_numpy(zero_copy_only=False)
    name, dtype = compact
    values, bitmap = _as_numpy(array, dtype)
    count = len(array) - array.null_count
    out = scratch(name, count + 1, dtype)  # one spare slot: the pass writes every value, keeps the valid
    kept = getattr(PASSES, name)(values, bitmap, array.offset, out)
    if kept != count:
        raise SchemaError(f"a column's validity bitmap holds {kept} values where its null count leaves {count}")
    return out[:count]


def _as_numpy(array: pa.Array, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A primitive array's values and validity bitmap as numpy views, no copy (the bitmap is empty
    when no value is null; it starts at bit `array.offset`, the values at the array's first)."""
    validity, data = array.buffers()
    values = np.frombuffer(data, dtype, count=array.offset + len(array))[array.offset:]
    bitmap = np.frombuffer(validity, np.uint8) if validity is not None and array.null_count else _NO_BYTES
    return values, bitmap


def _count_indices(indices: pa.Array, size: int) -> np.ndarray:
    """How often each of `size` dictionary entries occurs among the valid `indices` (one compiled pass)."""
    tally = np.zeros(size, np.int64)
    if not len(indices):
        return tally
    if indices.type != pa.int32():
        indices = pc.cast(indices, pa.int32())
    values, bitmap = _as_numpy(indices, np.int32)
    if PASSES.count_indices(values, bitmap, indices.offset, tally):
        raise SchemaError(f"a dictionary index is outside its dictionary of {size} values")
    return tally


_NO_BYTES = np.empty(0, np.uint8)


@dataclass
class FeatureError:
    """A feature that could not be profiled (missing or retyped column); the rest of the run goes on."""

    message: str
    rows: int = 0
    kind: str = "error"

    @property
    def count(self) -> int:
        return 0

    def merge(self, other):
        return FeatureError(self.message, self.rows + other.rows) if isinstance(other, FeatureError) else self

    def to_dict(self) -> dict:
        return {"kind": "error", "message": self.message, "rows": self.rows}


FeatureProfile = NumericProfile | CategoricalProfile | FeatureError


def feature_profile_from_dict(data: dict) -> FeatureProfile:
    if data["kind"] == "numeric":
        return NumericProfile.from_dict(data)
    if data["kind"] == "categorical":
        return CategoricalProfile.from_dict(data)
    return FeatureError(data["message"], data.get("rows", 0))


# --------------------------------------------------------------------------- dataset profile


@dataclass
class DatasetProfile:
    """Profiles of every feature of one window (or chunk) of data."""

    spec: ProfileSpec
    rows: int = 0
    features: dict[str, FeatureProfile] = field(default_factory=dict)

    def merge(self, other: "DatasetProfile") -> "DatasetProfile":
        if self.spec is not other.spec and self.spec != other.spec:
            raise ValueError("cannot merge profiles computed with different specs")
        merged = DatasetProfile(self.spec, self.rows + other.rows)
        for name in self.spec.names:
            mine, theirs = self.features.get(name), other.features.get(name)
            if mine is None or theirs is None:
                merged.features[name] = mine if theirs is None else theirs
            elif isinstance(theirs, FeatureError) and not isinstance(mine, FeatureError):
                merged.features[name] = theirs.merge(mine)
            else:
                merged.features[name] = mine.merge(theirs)
        return merged

    def to_dict(self) -> dict:
        return {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "rows": self.rows,
            "spec": self.spec.to_dict(),
            "features": {name: profile.to_dict() for name, profile in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetProfile":
        if data.get("schema_version") != PROFILE_SCHEMA_VERSION:
            raise ValueError(f"unsupported profile schema_version {data.get('schema_version')!r}")
        return cls(
            ProfileSpec.from_dict(data["spec"]),
            data["rows"],
            {name: feature_profile_from_dict(f) for name, f in data["features"].items()},
        )


def empty_profile(spec: ProfileSpec) -> DatasetProfile:
    features: dict[str, FeatureProfile] = {}
    for feature in spec.features:
        if feature.kind == "numeric":
            features[feature.name] = NumericProfile(feature.edges)
        else:
            features[feature.name] = CategoricalProfile(spec.max_categories)
    return DatasetProfile(spec, 0, features)


def _profile_column(column: pa.Array | None, spec: FeatureSpec, max_categories: int, rows: int) -> FeatureProfile:
    if column is None:
        return FeatureError(f"column '{spec.name}' is missing", rows)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    try:
        actual = infer_kind(column.type)
    except SchemaError:
        actual = None
    if pa.types.is_null(column.type):
        # An all-null column read from CSV/JSON has no type; it is simply all missing.
        column = pa.nulls(len(column), pa.float64() if spec.kind == "numeric" else pa.string())
        actual = spec.kind
    if actual != spec.kind:
        expected = spec.arrow_type or spec.kind
        return FeatureError(f"column '{spec.name}' is retyped: {expected} in reference, {column.type} now", rows)
    if spec.kind == "numeric":
        return NumericProfile.from_array(column, spec.edges)
    return CategoricalProfile.from_array(column, max_categories)


def profile_batch(batch: pa.RecordBatch | pa.Table, spec: ProfileSpec) -> DatasetProfile:
    """Profile one batch: the pure kernel that every engine calls."""
    names = set(batch.schema.names)
    profile = DatasetProfile(spec, batch.num_rows)
    for feature in spec.features:
        column = batch.column(feature.name) if feature.name in names else None
        profile.features[feature.name] = _profile_column(column, feature, spec.max_categories, batch.num_rows)
    return profile


def profile_batches(batches: Iterable[pa.RecordBatch], spec: ProfileSpec, workers: int = 2) -> DatasetProfile:
    """Stream batches through the kernel and merge; decoded batches in flight are bounded in bytes."""
    result = empty_profile(spec)
    for profile in map_bounded(batches, lambda batch: profile_batch(batch, spec), _batch_bytes, workers):
        result = result.merge(profile)
    return result


def _batch_bytes(batch: pa.RecordBatch | pa.Table) -> int:
    return batch.nbytes


def profile_table(table: pa.Table, spec: ProfileSpec, batch_rows: int = 262_144) -> DatasetProfile:
    return profile_batches(table.to_batches(max_chunksize=batch_rows), spec)


def build_spec(
    sample: pa.Table,
    features: dict[str, Kind] | list[str] | None = None,
    n_bins: int = DEFAULT_NUMERIC_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    edges: dict[str, list[float]] | None = None,
) -> ProfileSpec:
    """Fix each feature's kind and bin edges from a (sample of the) reference.

    `features` maps names to kinds, or lists names whose kinds are inferred from the
    Arrow types; None profiles every column. `edges` overrides the edges of a feature.
    """
    if features is None:
        features = list(sample.schema.names)
    fields = {f.name: f for f in sample.schema}  # one lookup per feature, however wide the table
    if isinstance(features, list):
        missing = [name for name in features if name not in fields]
        if missing:
            raise SchemaError(f"column '{missing[0]}' is not in the reference data")
        features = {name: infer_kind(fields[name].type) for name in features}
    specs: list[FeatureSpec] = []
    to_bin: dict[int, pa.ChunkedArray] = {}  # spec index -> column whose edges come from the sample
    for name, kind in features.items():
        if name not in fields:
            raise SchemaError(f"column '{name}' is not in the reference data")
        arrow_type = str(fields[name].type)
        if kind == "numeric":
            feature_edges: tuple[float, ...] = ()
            if edges and name in edges:
                feature_edges = tuple(sorted(float(e) for e in edges[name]))
            else:
                column = sample.column(name)
                if infer_kind(column.type) != "numeric":
                    raise SchemaError(f"column '{name}' is declared numeric but has type {column.type}")
                to_bin[len(specs)] = column
            specs.append(FeatureSpec(name, "numeric", feature_edges, arrow_type))
        elif kind == "categorical":
            specs.append(FeatureSpec(name, "categorical", (), arrow_type))
        else:
            raise SchemaError(f"feature '{name}' has unknown kind {kind!r} (numeric or categorical)")

    def sample_edges(column: pa.ChunkedArray) -> tuple[float, ...]:
        values = column.to_numpy().astype(np.float64) if column.null_count == 0 else (
            pc.drop_null(column).to_numpy().astype(np.float64)
        )
        return edges_from_sample(values, n_bins)

    if len(to_bin) > 1:
        from concurrent.futures import ThreadPoolExecutor

        # Sorting the sample dominates; numpy releases the GIL, so columns sort in parallel.
        with ThreadPoolExecutor(max_workers=2) as pool:
            computed = list(pool.map(sample_edges, to_bin.values()))
    else:
        computed = [sample_edges(column) for column in to_bin.values()]
    for index, feature_edges in zip(to_bin, computed):
        specs[index] = replace(specs[index], edges=feature_edges)
    return ProfileSpec(tuple(specs), max_categories)
