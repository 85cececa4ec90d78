"""Mergeable label profiles: what the calibration, performance and concept checks need of a
window's (score, label, segment) rows, without the rows.

One `LabelProfile` per (prediction, label) pair and segment spec. Per group (the whole
window, every value of every segment column, every value pair of a segment pair) it keeps:

- exact sums: rows, clicks (sum y), sum p as an exact fixed-point integer (so the
  calibration ratio sum(p)/sum(y) and its Garwood interval are bit-for-bit those of the
  rows, in any merge order);
- float sums: sum p^2, sum p*y, log loss and its square (Brier, log loss, its error);
- (not for segment pairs) score histograms per label on fixed fine bins, uniform in logit:
  AUC from the binned ROC (ties within a bin count one half, which moves the AUC by at most
  `auc_bound` = 1/2 x sum_b pos_b neg_b / (P N) over the bins whose scores are not all equal,
  reported with it), DeLong's error, and equal-mass reliability bins made of whole fine bins.

Profiles of disjoint rows merge into the profile of the union, so the same kernel runs on
local batches, Spark partitions and hourly slices. Rows with a null score or label are
dropped and counted; labels that are not 0/1 and scores outside [0, 1] are recorded, and
`validate` raises naming the column after the merge (an executor never raises for data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import SchemaError

LABEL_PROFILE_VERSION = 1
NULL_SEGMENT = "(null)"
OTHER_SEGMENT = "(other)"
OVERALL = ""  # the pseudo-column of the whole window: one value, ""
LOGIT_MAX = 16.0  # scores beyond sigmoid(+-16) share the two end bins
BIN_WIDTH = 1.0 / 256  # in logit units: ~0.4% relative steps of p at CTRs of a few percent
N_INNER = int(round(2 * LOGIT_MAX / BIN_WIDTH))
N_BINS = N_INNER + 2
DEFAULT_MAX_VALUES = 10_000  # distinct values kept per segment column; rarer ones fold into (other)
_SHIFT = 1126  # sum p kept as an integer multiple of 2^-_SHIFT: every float64 in [0, 1] is one
_EPS = np.finfo(np.float64).eps  # log loss clips like scikit-learn's
# columns of GroupTable.sums
N, Y, P, P2, PY, LOSS, LOSS2 = range(7)


@dataclass(frozen=True)
class LabelSpec:
    """What one label profile holds: the pair, its segment columns and segment pairs."""

    prediction: str
    label: str
    segments: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    max_values: int = DEFAULT_MAX_VALUES

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.prediction, self.label, *self.segments, *(c for p in self.pairs for c in p)]))

    def to_dict(self) -> dict:
        return {"prediction": self.prediction, "label": self.label, "segments": list(self.segments),
                "pairs": [list(p) for p in self.pairs], "max_values": self.max_values}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSpec":
        return cls(data["prediction"], data["label"], tuple(data["segments"]),
                   tuple(tuple(p) for p in data["pairs"]), data["max_values"])

    def key(self) -> str:
        import hashlib
        import json

        text = json.dumps({**self.to_dict(), "bins": [LOGIT_MAX, BIN_WIDTH], "v": LABEL_PROFILE_VERSION})
        return "labels-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def score_bins(scores: np.ndarray) -> np.ndarray:
    """Fixed fine bin of every score in [0, 1]: uniform in logit, end bins beyond +-LOGIT_MAX."""
    with np.errstate(divide="ignore"):
        logit = np.log(scores) - np.log1p(-scores)
    index = np.floor((logit + LOGIT_MAX) / BIN_WIDTH)
    return (np.clip(np.nan_to_num(index, nan=0.0, posinf=N_INNER, neginf=-1.0), -1, N_INNER) + 1).astype(np.int64)


def bin_edges() -> np.ndarray:
    """The N_BINS + 1 score edges of the bins (0, sigmoid(-16 + k w) ..., 1)."""
    logits = -LOGIT_MAX + BIN_WIDTH * np.arange(N_INNER + 1)
    return np.r_[0.0, 1.0 / (1.0 + np.exp(-logits)), 1.0]


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for non-negative keys; without a sort when they are small."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(keys.max()) + 1
    if top > max(4 * len(keys), 1 << 20):
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique, inverse.reshape(-1)
    present = np.bincount(keys, minlength=top) > 0
    lookup = np.cumsum(present) - 1
    return np.flatnonzero(present), lookup[keys]


class _Batch:
    """A batch's valid rows with what every group table sums over them, computed once."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        clipped = np.clip(scores, _EPS, 1 - _EPS)
        loss = -(labels * np.log(clipped) + (1.0 - labels) * np.log1p(-clipped))
        self.scores, self.labels = scores, labels
        self.weights = (None, labels, scores, scores * scores, scores * labels, loss, loss * loss)
        self.bins = score_bins(scores)
        mantissa, exponent = np.frexp(scores)
        whole = (mantissa * 2.0 ** 53).astype(np.int64)
        self.hi, self.lo = (whole >> 27).astype(np.float64), (whole & ((1 << 27) - 1)).astype(np.float64)
        self.exponent = exponent.astype(np.int64) + 1100


def _exact_sums(rows: _Batch, groups: np.ndarray, n_groups: int) -> list[int]:
    """Per group, sum(scores) exactly, as an integer number of 2^-_SHIFT."""
    out = [0] * n_groups
    if not len(rows.scores):
        return out
    hi, lo = rows.hi, rows.lo
    key = groups * 1200 + rows.exponent
    # bincount adds float64; each part is < 2^27, so sums of < 2^26 rows are exact
    for start in range(0, len(rows.scores), 1 << 25):
        part = slice(start, start + (1 << 25))
        keys, inverse = _unique(key[part])
        hi_sum = np.bincount(inverse, weights=hi[part], minlength=len(keys))
        lo_sum = np.bincount(inverse, weights=lo[part], minlength=len(keys))
        for k, h, low in zip(keys.tolist(), hi_sum.tolist(), lo_sum.tolist()):
            group, exp = divmod(k, 1200)
            value = (int(h) << 27) + int(low)
            shift = exp - 1100 - 53 + _SHIFT
            out[group] += value << shift if shift >= 0 else value >> -shift  # shift < 0 never for p <= 1
    return out


def exact_float(total: int) -> float:
    """The correctly rounded float of an exact sum (as math.fsum of the rows gives)."""
    return float(Fraction(total, 1 << _SHIFT))


@dataclass
class GroupTable:
    """The groups of one column (or segment pair): values, sums and, optionally, histograms.

    hist_keys = value index x N_BINS + bin (sorted, unique), with the positive count, negative
    count, sum, min and max of the scores of each (value, bin) present (a bin whose rows share
    one score holds true ties: it adds nothing to the AUC's error bound)."""

    values: list = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    exact_p: list[int] = field(default_factory=list)
    hist_keys: np.ndarray | None = None
    hist: np.ndarray | None = None  # (len(hist_keys), 5): positives, negatives, sum, min, max of p
    folded: int = 0  # values folded into (other) beyond max_values (summed over the merged parts)

    @classmethod
    def of(cls, codes: np.ndarray, values: list, rows: _Batch, histograms: bool) -> "GroupTable":
        """The groups `codes` index into `values` (with histograms or not)."""
        k = len(values)
        scores, labels = rows.scores, rows.labels
        sums = np.stack([np.bincount(codes, weights=w, minlength=k).astype(np.float64) for w in rows.weights],
                        axis=1) if k else np.zeros((0, 7))
        table = cls(list(values), sums, _exact_sums(rows, codes, k))
        if histograms:
            keys, inverse = _unique(codes * N_BINS + rows.bins)
            low, high = np.full(len(keys), np.inf), np.full(len(keys), -np.inf)
            np.minimum.at(low, inverse, scores)
            np.maximum.at(high, inverse, scores)
            positives = np.bincount(inverse, weights=labels, minlength=len(keys))
            table.hist_keys = keys.astype(np.int64)
            table.hist = np.stack([positives, np.bincount(inverse, minlength=len(keys)) - positives,
                                   np.bincount(inverse, weights=scores, minlength=len(keys)), low, high], axis=1)
        return table._drop_empty()

    def _drop_empty(self) -> "GroupTable":
        keep = self.sums[:, N] > 0
        if keep.all():
            return self
        return self._select(np.flatnonzero(keep))

    def _select(self, rows: np.ndarray) -> "GroupTable":
        """Only `rows` (value indices, in that order); their histograms are renumbered."""
        mapping = np.full(len(self.values), -1, np.int64)
        mapping[rows] = np.arange(len(rows))
        table = GroupTable([self.values[i] for i in rows], self.sums[rows], [self.exact_p[i] for i in rows],
                           folded=self.folded)
        if self.hist_keys is not None:
            new = mapping[self.hist_keys // N_BINS]
            kept = new >= 0
            table.hist_keys = new[kept] * N_BINS + self.hist_keys[kept] % N_BINS
            table.hist = self.hist[kept]
        return table

    def merge(self, other: "GroupTable", max_values: int = DEFAULT_MAX_VALUES) -> "GroupTable":
        position = {v: i for i, v in enumerate(self.values)}
        values = list(self.values)
        remap = np.empty(len(other.values), np.int64)
        for i, v in enumerate(other.values):
            if v not in position:
                position[v] = len(values)
                values.append(v)
            remap[i] = position[v]
        sums = np.zeros((len(values), 7))
        sums[: len(self.values)] += self.sums
        np.add.at(sums, remap, other.sums)
        exact = list(self.exact_p) + [0] * (len(values) - len(self.values))
        for i, total in zip(remap.tolist(), other.exact_p):
            exact[i] += total
        merged = GroupTable(values, sums, exact, folded=self.folded + other.folded)
        if self.hist_keys is not None or other.hist_keys is not None:
            mine = self._hist_parts()
            theirs = other._hist_parts()
            keys = np.r_[mine[0], remap[theirs[0] // N_BINS] * N_BINS + theirs[0] % N_BINS] if len(theirs[0]) \
                else mine[0]
            stacked = np.r_[mine[1], theirs[1]] if len(theirs[0]) else mine[1]
            merged.hist_keys, merged.hist = _reduce(keys, stacked)
        return merged._bounded(max_values)

    def _hist_parts(self) -> tuple[np.ndarray, np.ndarray]:
        if self.hist_keys is None:
            return np.zeros(0, np.int64), np.zeros((0, 5))
        return self.hist_keys, self.hist

    def _bounded(self, max_values: int) -> "GroupTable":
        """At most max_values values: the rarest fold into (other), by row count then name."""
        if len(self.values) <= max_values:
            return self
        order = sorted(range(len(self.values)), key=lambda i: (-self.sums[i, N], str(self.values[i])))
        other_name = OTHER_SEGMENT if not isinstance(self.values[0], tuple) else (OTHER_SEGMENT,) * len(self.values[0])
        keep = [i for i in order if self.values[i] != other_name][: max_values - 1]
        kept = set(keep)
        fold = [i for i in range(len(self.values)) if i not in kept]
        target = GroupTable(
            [self.values[i] for i in keep] + [other_name], np.r_[self.sums[keep], self.sums[fold].sum(0)[None]],
            [self.exact_p[i] for i in keep] + [sum(self.exact_p[i] for i in fold)],
            folded=self.folded + len([i for i in fold if self.values[i] != other_name]))
        if self.hist_keys is not None:
            mapping = np.full(len(self.values), len(keep), np.int64)
            mapping[keep] = np.arange(len(keep))
            keys = mapping[self.hist_keys // N_BINS] * N_BINS + self.hist_keys % N_BINS
            target.hist_keys, target.hist = _reduce(keys, self.hist)
        return target

    # ---------------------------------------------------------------- reading groups

    def stats(self, indices: Iterable[int]) -> "GroupStats":
        """The statistics of the union of the given values."""
        indices = list(indices)
        sums = self.sums[indices].sum(0) if indices else np.zeros(7)
        exact = sum(self.exact_p[i] for i in indices)
        hist = None
        if self.hist_keys is not None:
            chosen = np.isin(self.hist_keys // N_BINS, np.asarray(indices, np.int64))
            bins, reduced = _reduce(self.hist_keys[chosen] % N_BINS, self.hist[chosen])
            hist = np.zeros((N_BINS, 5))
            hist[:, 3], hist[:, 4] = np.inf, -np.inf
            hist[bins] = reduced
        return GroupStats(sums, exact, hist)

    def to_dict(self) -> dict:
        data = {"values": [list(v) if isinstance(v, tuple) else v for v in self.values],
                "sums": self.sums.tolist(), "exact_p": [str(e) for e in self.exact_p], "folded": self.folded}
        if self.hist_keys is not None:
            data["hist_keys"] = self.hist_keys.tolist()
            data["hist"] = self.hist.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "GroupTable":
        table = cls([tuple(v) if isinstance(v, list) else v for v in data["values"]],
                    np.asarray(data["sums"], np.float64).reshape(-1, 7), [int(e) for e in data["exact_p"]],
                    folded=data.get("folded", 0))
        if "hist_keys" in data:
            table.hist_keys = np.asarray(data["hist_keys"], np.int64)
            table.hist = np.asarray(data["hist"], np.float64).reshape(-1, 5)
        return table


def _reduce(keys: np.ndarray, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram rows with equal keys combined: counts and sums add, min and max combine."""
    unique, inverse = _unique(keys)
    out = np.zeros((len(unique), 5))
    for column in range(3):
        out[:, column] = np.bincount(inverse, weights=hist[:, column], minlength=len(unique))
    out[:, 3], out[:, 4] = np.inf, -np.inf
    np.minimum.at(out[:, 3], inverse, hist[:, 3])
    np.maximum.at(out[:, 4], inverse, hist[:, 4])
    return unique.astype(np.int64), out


@dataclass(frozen=True)
class GroupStats:
    """One group's sufficient statistics (see the module doc)."""

    sums: np.ndarray
    exact_p: int
    hist: np.ndarray | None = None  # (N_BINS, 5): positives, negatives, sum, min, max of p per fine bin

    @property
    def count(self) -> int:
        return int(round(self.sums[N]))

    @property
    def positives(self) -> float:
        return float(self.sums[Y])

    @property
    def predicted(self) -> float:
        """sum p, correctly rounded (what math.fsum of the rows gives)."""
        return exact_float(self.exact_p)


@dataclass
class LabelProfile:
    """The label profile of one window (or chunk) for one LabelSpec."""

    spec: LabelSpec
    rows: int = 0  # rows read, valid or not
    dropped: int = 0  # rows without a score or a label
    min_score: float = math.inf
    max_score: float = -math.inf
    bad_label: float | None = None  # a label value other than 0/1, if any was met
    tables: dict[str, GroupTable] = field(default_factory=dict)  # column (OVERALL, segment, "a\x1fb") -> groups

    def table(self, column: str) -> GroupTable:
        return self.tables.get(column) or GroupTable()

    def overall(self) -> GroupStats:
        table = self.table(OVERALL)
        return table.stats(range(len(table.values)))

    @property
    def count(self) -> int:
        return self.overall().count

    def pair_table(self, a: str, b: str) -> GroupTable:
        return self.table(pair_key(a, b))

    def merge(self, other: "LabelProfile") -> "LabelProfile":
        if self.spec != other.spec:
            raise ValueError("cannot merge label profiles of different specs")
        tables = {}
        for name in dict.fromkeys([*self.tables, *other.tables]):
            mine, theirs = self.tables.get(name), other.tables.get(name)
            tables[name] = theirs if mine is None else mine if theirs is None else \
                mine.merge(theirs, self.spec.max_values)
        bad = self.bad_label if self.bad_label is not None else other.bad_label
        return LabelProfile(self.spec, self.rows + other.rows, self.dropped + other.dropped,
                            min(self.min_score, other.min_score), max(self.max_score, other.max_score), bad, tables)

    def validate(self, where: str) -> "LabelProfile":
        """Raise SchemaError naming the column for labels not 0/1 or scores outside [0, 1]."""
        if self.bad_label is not None:
            raise SchemaError(f"{where}: label column '{self.spec.label}' must hold 0/1, found {self.bad_label:g}")
        if self.rows > self.dropped and (self.min_score < 0 or self.max_score > 1):
            raise SchemaError(f"{where}: prediction column '{self.spec.prediction}' has values outside [0, 1] "
                              f"(min {self.min_score:g}, max {self.max_score:g})")
        return self

    def to_dict(self) -> dict:
        return {"label_profile_version": LABEL_PROFILE_VERSION, "spec": self.spec.to_dict(), "rows": self.rows,
                "dropped": self.dropped, "min_score": _finite(self.min_score), "max_score": _finite(self.max_score),
                "bad_label": self.bad_label, "tables": {k: t.to_dict() for k, t in self.tables.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelProfile":
        if data.get("label_profile_version") != LABEL_PROFILE_VERSION:
            raise ValueError(f"unsupported label profile version {data.get('label_profile_version')!r}")
        return cls(LabelSpec.from_dict(data["spec"]), data["rows"], data["dropped"],
                   math.inf if data["min_score"] is None else data["min_score"],
                   -math.inf if data["max_score"] is None else data["max_score"], data["bad_label"],
                   {k: GroupTable.from_dict(t) for k, t in data["tables"].items()})


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def pair_key(a: str, b: str) -> str:
    return f"{a}\x1f{b}"


# --------------------------------------------------------------------------- the kernel


def _numeric(column: pa.Array, name: str, role: str, where: str) -> np.ndarray:
    kind = column.type
    if pa.types.is_boolean(kind):
        column = pc.cast(column, pa.int8())
    elif pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise SchemaError(f"{where}: {role} column '{name}' must be numeric, found {kind}")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def check_columns(schema: pa.Schema, spec: LabelSpec, where: str) -> None:
    """A missing column, or a score/label that is not numeric, raises naming it (before any job)."""
    roles = [(spec.prediction, "prediction"), (spec.label, "label")] + [(c, "segment") for c in spec.columns[2:]]
    for name, role in roles:
        if name not in schema.names:
            raise SchemaError(f"{where}: {role} column '{name}' is missing")
        kind = schema.field(name).type
        if role != "segment" and not (pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)
                                      or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise SchemaError(f"{where}: {role} column '{name}' must be numeric, found {kind}")


def _encode(column: pa.Array) -> tuple[np.ndarray, list]:
    text = pc.fill_null(pc.cast(column, pa.string()), NULL_SEGMENT)
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def profile_arrays(spec: LabelSpec, scores: np.ndarray, labels: np.ndarray,
                   segments: dict[str, tuple[np.ndarray, list]], rows: int | None = None) -> LabelProfile:
    """The kernel on arrays: scores and labels (NaN: missing) and dictionary-encoded segments."""
    valid = np.isfinite(scores) & np.isfinite(labels)
    profile = LabelProfile(spec, len(scores) if rows is None else rows, int((~valid).sum()))
    if not valid.all():
        scores, labels = scores[valid], labels[valid]
        segments = {c: (codes[valid], values) for c, (codes, values) in segments.items()}
    if len(scores):
        profile.min_score, profile.max_score = float(scores.min()), float(scores.max())
        bad = labels[(labels != 0) & (labels != 1)]
        if len(bad):
            profile.bad_label = float(bad[0])
            return profile
        if profile.min_score < 0 or profile.max_score > 1:
            return profile
    rows = _Batch(scores, labels)
    profile.tables[OVERALL] = GroupTable.of(np.zeros(len(scores), np.int64), [OVERALL], rows, True)
    for column in spec.segments:
        codes, values = segments[column]
        profile.tables[column] = GroupTable.of(codes, values, rows, True)._bounded(spec.max_values)
    for a, b in spec.pairs:
        (ca, va), (cb, vb) = segments[a], segments[b]
        joint, inverse = _unique(ca * max(len(vb), 1) + cb)
        values = [(va[j // max(len(vb), 1)], vb[j % max(len(vb), 1)]) for j in joint.tolist()]
        profile.tables[pair_key(a, b)] = GroupTable.of(inverse.astype(np.int64), values, rows,
                                                       False)._bounded(spec.max_values)
    return profile


def profile_label_batch(batch: pa.RecordBatch | pa.Table, spec: LabelSpec, where: str = "data") -> LabelProfile:
    """The kernel on one Arrow batch (every engine calls this)."""
    scores = _numeric(_column(batch, spec.prediction), spec.prediction, "prediction", where)
    labels = _numeric(_column(batch, spec.label), spec.label, "label", where)
    segments = {c: _encode(_column(batch, c)) for c in dict.fromkeys([*spec.segments, *(c for p in spec.pairs
                                                                                          for c in p)])}
    return profile_arrays(spec, scores, labels, segments, batch.num_rows)


def _column(batch, name: str) -> pa.Array:
    column = batch.column(batch.schema.get_field_index(name))
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def empty_label_profile(spec: LabelSpec) -> LabelProfile:
    return LabelProfile(spec)


def profile_label_batches(batches: Iterable[pa.RecordBatch], spec: LabelSpec, where: str = "data") -> LabelProfile:
    profile = empty_label_profile(spec)
    for batch in batches:
        profile = profile.merge(profile_label_batch(batch, spec, where))
    return profile
