"""Label profiles of windows, scored reference rows, and label maturity.

Calibration, performance and concept checks judge a window from its label profile
(core.label_profile: per-segment sums and fine score histograms, mergeable like feature
profiles), computed by the model's engine (local batches, Spark partitions) and stored per
profile_granularity slice, so no check holds a window's rows. The scored reference is a
bounded uniform sample of rows (REFERENCE_MAX_ROWS), read once per runner: the concept
check fits its calibration map on it, and the spread and learned modes cut it into chunks
of a window's size; its own statistics come from its label profile, by the same kernel.
`Rows` (numpy arrays with dictionary-encoded segments) is that sample, and what the
one-off commands and tests hand to a check; a check profiles it before judging it.

Labels arrive late (a click within hours, a conversion within a day). A window is only
judged once every label it uses has matured (window end + delay <= now); until then its
result is `pending`, stored under the window's key and replaced by the real result when
the run ledger re-runs it. `now` comes from the run context (`context.now`), the check's
own `now`, or the clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.checks import WindowCheck
from core.label_profile import (  # noqa: F401  (NULL_SEGMENT re-exported)
    NULL_SEGMENT,
    OTHER_SEGMENT,
    GroupStats,
    GroupTable,
    LabelProfile,
    LabelSpec,
    profile_arrays,
)
from core.metric_points import with_points
from core.results import CheckResult
from core.errors import ConfigError, SchemaError

REFERENCE_MAX_ROWS = 2_000_000  # a larger scored reference is sampled uniformly to this size


@dataclass(frozen=True)
class Segment:
    """A dictionary-encoded segment column: codes index into categories."""

    codes: np.ndarray
    categories: tuple[str, ...]

    def take(self, mask: np.ndarray) -> "Segment":
        return Segment(self.codes[mask], self.categories)


@dataclass(frozen=True)
class Rows:
    """One (prediction, label) pair's rows: valid rows only, with their segments."""

    scores: np.ndarray
    labels: np.ndarray
    segments: dict[str, Segment] = field(default_factory=dict)
    dropped: int = 0  # rows without a label or a score

    @property
    def count(self) -> int:
        return len(self.scores)

    @property
    def positives(self) -> float:
        return float(self.labels.sum())

    def take(self, mask: np.ndarray) -> "Rows":
        return Rows(self.scores[mask], self.labels[mask], {k: s.take(mask) for k, s in self.segments.items()})

    def chunks(self, n: int) -> list["Rows"]:
        """n contiguous chunks in row (time) order, for learned thresholds."""
        bounds = np.linspace(0, self.count, n + 1).astype(int)
        return [self.take(np.arange(a, b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _encode(column: pa.ChunkedArray) -> Segment:
    text = pc.fill_null(pc.cast(column, pa.string()), NULL_SEGMENT)
    encoded = pc.dictionary_encode(text).combine_chunks()
    return Segment(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                   tuple(encoded.dictionary.to_pylist()))


def window_table(source, columns: list[str], start, end, where: str, role: str = "") -> pa.Table:
    """The rows of `columns` in [start, end) as one table; a missing column raises naming it."""
    missing = [c for c in columns if c not in source.schema.names]
    if missing:
        raise SchemaError(f"{where}: {role + ' ' if role else ''}column '{missing[0]}' is missing")
    batches = list(source.batches(columns, start, end))
    return pa.Table.from_batches(batches) if batches else pa.schema([source.schema.field(c) for c in columns]).empty_table()


def numeric(table: pa.Table, name: str, where: str, role: str) -> np.ndarray:
    """A numeric or boolean column as float64 (nulls: NaN); another type raises naming it."""
    column = table.column(name)
    kind = column.type
    if pa.types.is_boolean(kind):
        column = pc.cast(column, pa.int8())
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise SchemaError(f"{where}: {role} column '{name}' must be numeric, found {kind}")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN


def read_rows(batches: Iterable[pa.RecordBatch], schema: pa.Schema, prediction: str, label: str,
              segments: Iterable[str] = (), where: str = "data") -> Rows:
    """Validate and load one (prediction, label) pair with its segment columns.

    A missing column, a non-0/1 label or a score outside [0, 1] raises SchemaError naming
    `where` and the column; rows with a null label or score are dropped and counted.
    """
    segments = list(dict.fromkeys(segments))
    for name, role in [(prediction, "prediction"), (label, "label")] + [(s, "segment") for s in segments]:
        if name not in schema.names:
            raise SchemaError(f"{where}: {role} column '{name}' is missing")
    columns = list(dict.fromkeys([prediction, label] + segments))
    batches = list(batches)
    table = pa.Table.from_batches(batches) if batches else schema.empty_table()
    table = table.select(columns)
    scores = numeric(table, prediction, where, "prediction")
    labels = numeric(table, label, where, "label")
    valid = np.isfinite(scores) & np.isfinite(labels)
    bad_labels = np.setdiff1d(np.unique(labels[valid]), [0.0, 1.0])
    if len(bad_labels):
        raise SchemaError(f"{where}: label column '{label}' must hold 0/1, found {bad_labels[0]:g}")
    if valid.any() and (scores[valid].min() < 0 or scores[valid].max() > 1):
        raise SchemaError(f"{where}: prediction column '{prediction}' has values outside [0, 1] "
                          f"(min {scores[valid].min():g}, max {scores[valid].max():g})")
    encoded = {s: _encode(table.column(s)).take(valid) for s in segments}
    return Rows(scores[valid], labels[valid], encoded, dropped=int((~valid).sum()))


def profile_of(rows: "Rows | LabelProfile", segments=(), pairs=()) -> LabelProfile:
    """A check's input as a label profile: a profile as is, rows through the kernel."""
    if isinstance(rows, LabelProfile):
        return rows
    spec = LabelSpec("score", "label", tuple(segments), tuple(tuple(p) for p in pairs))
    encoded = {c: (s.codes, list(s.categories)) for c, s in rows.segments.items()}
    profile = profile_arrays(spec, rows.scores, rows.labels, encoded)
    profile.dropped += rows.dropped
    return profile


def top_names(table: GroupTable, top_n: int) -> list:
    """The top_n most frequent values of a profiled column (ties by value), plus `(other)` for the rest."""
    order = sorted(range(len(table.values)), key=lambda i: (-table.sums[i, 0], str(table.values[i])))
    names = [table.values[i] for i in order[:top_n]]
    if len(order) > top_n:
        names.append(OTHER_SEGMENT)
    return names


def value_index(values: list, names: list) -> np.ndarray:
    """Each profiled value's position among `names`; others go to `(other)` (or past the end)."""
    position = {name: i for i, name in enumerate(names)}
    other = position.get(OTHER_SEGMENT, len(names))
    return np.array([position.get(v, other) for v in values], dtype=np.int64)


def named_stats(table: GroupTable, names: list) -> list[GroupStats]:
    """The statistics of each of `names` (a value, or `(other)`: every value not named) in `table`."""
    index = value_index(table.values, names)
    return [table.stats(np.flatnonzero(index == i)) for i in range(len(names))]


def top_groups(segment: Segment, top_n: int) -> tuple[np.ndarray, list[str]]:
    """Codes remapped to the top_n most frequent categories plus one `(other)` group."""
    counts = np.bincount(segment.codes, minlength=len(segment.categories))
    order = np.argsort(-counts, kind="mergesort")
    keep = [int(c) for c in order[:top_n] if counts[c] > 0]
    mapping = np.full(len(segment.categories), len(keep), dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    names = [segment.categories[c] for c in keep]
    if counts.sum() > counts[keep].sum():
        names.append(OTHER_SEGMENT)
    return mapping[segment.codes], names


# ------------------------------------------------------------------ the window check shell


def _reference_rows(context, prediction: str, label: str, segments: list[str]) -> Rows:
    """The scored reference (prediction_reference, else reference), read once per runner
    (kept in the runner's bounded, locked state, keyed by the files' fingerprint)."""
    from core.reference import source_fingerprint

    source = context.runner.engine_source("prediction_reference")  # else the reference; Spark's on Spark
    key = ("labelled.reference", source_fingerprint(source), prediction, label, tuple(segments))

    def read() -> Rows:
        columns = [c for c in dict.fromkeys([prediction, label, *segments]) if c in source.schema.names]
        table = source.sample(REFERENCE_MAX_ROWS, columns, seed=0)
        return read_rows(table.to_batches(), source.schema, prediction, label, segments,
                         where=f"{source.location} ({_scored_reference_key(context.model)})")

    return context.state.get_or_create(key, read)


def _scored_reference_key(model) -> str:
    """Which config key holds the scored reference, so an error says what to set."""
    if model.prediction_reference is not None:
        return f"scored reference: models.{model.name}.prediction_reference"
    return (f"scored reference: models.{model.name}.reference, as models.{model.name}.prediction_reference "
            "is not set; set it to the model's scores and labels on held-out data")


def fit_cached(context, check, reference: Rows):
    """`check.fit(reference)`, reused while the same reference rows and parameters come back: a
    scheduled job re-fits nothing from window to window (kept in the runner's state)."""
    key = ("labelled.fitted", id(reference), check)  # checks are frozen dataclasses: hashable by parameters
    entry = context.state.get_or_create(key, lambda: (reference, check.fit(reference)))
    if entry[0] is not reference:  # an id reused after the rows were dropped: fit afresh
        return check.fit(reference)
    return entry[1]


def prediction_pairs(model, mapping: dict[str, str]) -> list[tuple[str, str, timedelta]]:
    """(prediction, label, label delay) pairs: configured, else predictions and labels in order."""
    schema = model.model_schema
    delays = {lab.name: lab.delay for lab in schema.labels}
    pairs = dict(mapping) or dict(zip(schema.predictions, [lab.name for lab in schema.labels]))
    if not pairs:
        raise ConfigError(f"models.{model.name}.schema: a label check needs a prediction and a label column")
    for prediction, label in pairs.items():
        if label not in delays:
            raise ConfigError(f"models.{model.name}.checks: label '{label}' is not in schema.labels")
    return [(p, lab, delays[lab]) for p, lab in pairs.items()]


def label_maturity(name: str, context, mature: datetime, delays: dict[str, str],
                   now: datetime | None = None) -> CheckResult | None:
    """A `pending` result while the window's labels mature (at `mature`), else None."""
    now = getattr(context, "now", None) or now or datetime.now(timezone.utc)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now  # naive means UTC, as in the store
    if mature <= now:
        return None
    return CheckResult(check=name, status="pending", details={
        "labels_mature_at": mature.isoformat(), "label_delays": delays}, **context.result_context)


class LabelledWindowCheck(WindowCheck):
    """Shell for checks on (prediction, label) rows: maturity, reading, one result per window.

    Subclasses implement `judge(pairs) -> CheckResult` on fitted/evaluated pairs; with
    several prediction/label pairs the results are combined by `combine`.
    """

    name = "labelled"

    def __init__(self, model_config, check_config=None, now: datetime | None = None) -> None:
        self.model = model_config
        self.config = check_config
        self.now = now
        mapping = dict(getattr(check_config, "predictions", {}) or {})
        self.pairs = prediction_pairs(model_config, mapping)
        configured = getattr(check_config, "segments", None)
        self.segments = list(model_config.model_schema.segments if configured is None else configured)

    def mature_at(self, end: datetime) -> datetime:
        return end + max(delay for _, _, delay in self.pairs)

    def run(self, context) -> CheckResult:
        pending = label_maturity(self.name, context, self.mature_at(context.end),
                                 {lab: str(delay) for _, lab, delay in self.pairs}, self.now)
        if pending is not None:
            return pending
        results, bad = [], ()
        for prediction, label, _ in self.pairs:
            reference = _reference_rows(context, prediction, label, self.segments)
            current, bad_files = context.label_profile(shared_spec(context, self.spec(prediction, label)))
            bad = tuple(dict.fromkeys(bad + bad_files))
            results.append(self.evaluate_pair(prediction, label, reference, current, context))
        result = with_points(combine(self.name, results, context.result_context))
        return result.with_updates(partial=bool(bad), bad_files=bad) if bad else result

    def spec(self, prediction: str, label: str) -> LabelSpec:
        """What this check needs profiled of a window (checks with the same spec share the profile)."""
        return LabelSpec(prediction, label, tuple(self.segments))

    def evaluate_pair(self, prediction, label, reference: Rows, current: LabelProfile, context) -> CheckResult:
        raise NotImplementedError  # pragma: no cover - interface


SHARED_PROFILE_CHECKS = ("calibration", "performance", "concept_drift")


def shared_spec(context, own: LabelSpec) -> LabelSpec:
    """`own` widened to the segments (and concept pairs) of every enabled check of
    SHARED_PROFILE_CHECKS that the data has, so one pass over the window serves them all."""
    model = context.model
    configs = [(n, getattr(model.checks, n, None)) for n in SHARED_PROFILE_CHECKS]
    configs = [(n, c) for n, c in configs if c is not None and c.enabled]
    if not configs:
        return own
    present = set(context.serving_source().schema.names)
    segments, pairs = list(own.segments), list(own.pairs)
    for name, config in configs:
        chosen = list(model.model_schema.segments if config.segments is None else config.segments)
        segments += [c for c in chosen if c in present]
        if name == "concept_drift":
            wanted = config.segment_pairs if config.segment_pairs is not None else itertools.combinations(chosen, 2)
            pairs += [tuple(p) for p in wanted if all(c in present for c in p)]
    return LabelSpec(own.prediction, own.label, tuple(dict.fromkeys(segments)), tuple(dict.fromkeys(pairs)))


def combine(name: str, results: list[CheckResult], result_context: dict) -> CheckResult:
    """One result per window: a single pair as is; several under details['predictions'][column]."""
    from core.results import worst_status

    if len(results) == 1:
        return results[0].with_updates(**result_context)
    return CheckResult(
        check=name, status=worst_status(r.status for r in results),
        features=tuple(f for r in results for f in r.features),
        reference_rows=max(r.reference_rows for r in results),
        current_rows=max(r.current_rows for r in results),
        details={"predictions": {r.details.get("prediction"): r.details for r in results}}, **result_context,
    )
