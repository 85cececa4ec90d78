"""`id_drift`: high-cardinality ID columns (offer, advertiser, partner, hashed user) vs the reference.

A chi-square on the top categories says nothing about what hurts a CTR model on IDs: traffic
moving to IDs it never saw, or saw too rarely to learn (cold start), the head of the traffic
turning over, or a hashed ID's table filling up with collisions. Per declared ID column, from
bounded-memory sketches (core/idsketch.py) of the reference and the window:

- unseen_traffic_rate / unseen_value_rate: window rows / distinct window IDs absent from the
  reference (its Bloom filter: proven unseen; a fresh ID passes for seen with the filter's
  false-positive rate, so these are lower bounds by that much);
- cold_start_exposure: window rows on IDs the reference holds fewer than `cold_start_min_count`
  times (unseen included) - the traffic the model serves from barely trained embeddings;
- topk_coverage: window rows on the reference's top-k IDs; topk_jaccard: overlap of the two
  top-k sets (churn = 1 - Jaccard);
- for hashed columns (`hashed_buckets`): the expected bucket occupancy and collision rate
  (share of IDs sharing a bucket) of the reference's IDs plus the window's, vs the reference's.

What is "normal" comes from the reference itself: its last `1/holdout_chunks` of rows (in
file, i.e. time, order) is measured against the rest the same way; a window is judged on its
excess over that baseline, against [warn, alert] thresholds per signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from core.checks import Check, CheckParams, FittedCheck, register_check
from core.errors import ConfigError
from core.idsketch import HyperLogLog, IdSketch, batch_counts, expected_collisions, hash_ids
from core.results import SEVERITY, CheckResult, FeatureDrift, MetricPoint, worst_status
from core.settings import Pair

Signal = Literal["unseen_traffic", "cold_start", "topk_coverage", "topk_churn", "collision_rate"]
DEFAULT_THRESHOLDS: dict[str, Pair] = {
    "unseen_traffic": (0.03, 0.06),   # excess share of rows on unseen IDs
    "cold_start": (0.05, 0.10),       # excess share of rows on IDs seen < N times
    "topk_coverage": (0.05, 0.10),    # drop of the share of rows on the reference's top-k
    "topk_churn": (0.25, 0.45),       # rise of 1 - Jaccard(top-k sets)
    "collision_rate": (0.02, 0.05),   # rise of the expected share of colliding IDs
}


class IdDriftParams(CheckParams):
    enabled: bool = False
    columns: list[str] = Field(default=[], description="the ID columns (offer, advertiser, partner, user, ...)")
    top_k: int = Field(default=100, ge=1, description="size of the head compared (coverage, Jaccard)")
    cold_start_min_count: int = Field(default=10, ge=1, description="IDs the reference holds fewer times are cold")
    hashed_buckets: dict[str, int] = Field(default={}, description="column -> buckets the model hashes it into")
    heavy_hitters: int = Field(default=2000, ge=10, description="heavy-hitter counters per column (>= top_k)")
    count_width: int = Field(default=1 << 20, ge=1024, description="count-min columns for the reference's counts")
    count_depth: int = Field(default=4, ge=1, le=8)
    membership_bits: int = Field(default=1 << 27, ge=1 << 10, multiple_of=8,
                                 description="Bloom filter bits of the reference's IDs (unseen); 2**27 = 16 MiB")
    hll_precision: int = Field(default=14, ge=8, le=18, description="HyperLogLog registers: 2**p")
    holdout_chunks: int = Field(default=5, ge=2, description="the reference's last 1/n rows give the baseline")
    min_rows: int = Field(default=1000, ge=1, description="fewer non-null rows: insufficient_data")
    thresholds: dict[Signal, Pair] = Field(default={}, description="signal -> [warn, alert] on the excess")

    @model_validator(mode="after")
    def _consistent(self):
        if self.heavy_hitters < self.top_k:
            raise ValueError(f"heavy_hitters ({self.heavy_hitters}) must be >= top_k ({self.top_k})")
        for column, buckets in self.hashed_buckets.items():
            if buckets < 1:
                raise ValueError(f"hashed_buckets.{column}: expected >= 1 buckets, got {buckets}")
        for signal, (warn, alert) in self.thresholds.items():
            if not 0 <= warn <= alert:
                raise ValueError(f"thresholds.{signal}: expected [warn, alert] with 0 <= warn <= alert")
        return self

    def threshold(self, signal: str) -> Pair:
        return tuple(self.thresholds.get(signal, DEFAULT_THRESHOLDS[signal]))

    def empty_sketch(self, with_counts: bool) -> IdSketch:
        return IdSketch.empty(self.heavy_hitters, self.hll_precision, self.count_width if with_counts else None,
                              self.count_depth, self.membership_bits)


@dataclass(frozen=True)
class IdStats:
    """One ID column of one window (or the reference's holdout) measured against a reference sketch."""

    rows: int
    nulls: int
    distinct: float
    unseen_value_rate: float
    unseen_traffic_rate: float
    cold_start_exposure: float
    topk_coverage: float
    topk_jaccard: float
    reference_topk_mass: float
    bucket_occupancy: float | None = None
    collision_rate: float | None = None
    reference_collision_rate: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sketch_batches(arrays: Iterable[pa.Array], empty: IdSketch) -> IdSketch:
    sketch = empty
    for values in arrays:
        sketch = sketch.update(values)
    return sketch


class Measure:
    """A window's ID column measured against the reference's sketch, one batch at a time."""

    def __init__(self, reference: IdSketch, params: IdDriftParams, buckets: int | None = None) -> None:
        self.reference, self.params, self.buckets = reference, params, buckets
        self.top = [key for key, _ in reference.heavy.top(params.top_k)]
        self._top_set = pa.array(self.top, pa.string())
        self.window = params.empty_sketch(with_counts=False)
        self.unseen_distinct = HyperLogLog(params.hll_precision)
        self.unseen = self.cold = self.covered = 0

    def add(self, values: pa.Array) -> None:
        keys, counts = batch_counts(values)
        hashes = hash_ids(keys)
        new, held = self.reference.held(hashes)
        self.unseen += int(counts[new].sum())
        self.cold += int(counts[held < self.params.cold_start_min_count].sum())
        self.covered += int(counts[pc.is_in(keys, value_set=self._top_set).to_numpy(zero_copy_only=False)].sum())
        self.unseen_distinct = self.unseen_distinct.add_hashes(hashes[new])
        self.window = self.window.add_counted(keys, counts, hashes, len(values), values.null_count)

    def stats(self) -> IdStats:
        reference, window = self.reference, self.window
        present = window.rows - window.nulls
        distinct = window.distinct.estimate()
        window_top = {key for key, _ in window.heavy.top(self.params.top_k)}
        union = window_top | set(self.top)
        collisions = {}
        if self.buckets:
            occupancy, rate = expected_collisions(reference.distinct.merge(window.distinct).estimate(), self.buckets)
            collisions = dict(bucket_occupancy=occupancy, collision_rate=rate,
                              reference_collision_rate=expected_collisions(reference.distinct.estimate(),
                                                                           self.buckets)[1])
        reference_present = reference.rows - reference.nulls
        head = sum(c for _, c in reference.heavy.top(self.params.top_k))
        return IdStats(
            rows=window.rows, nulls=window.nulls, distinct=distinct,
            unseen_value_rate=min(1.0, self.unseen_distinct.estimate() / distinct) if distinct else 0.0,
            unseen_traffic_rate=self.unseen / present if present else 0.0,
            cold_start_exposure=self.cold / present if present else 0.0,
            topk_coverage=self.covered / present if present else 0.0,
            topk_jaccard=len(window_top & set(self.top)) / len(union) if union else 1.0,
            reference_topk_mass=head / reference_present if reference_present else 0.0,
            **collisions,
        )


def measure(reference: IdSketch, arrays: Iterable[pa.Array], params: IdDriftParams,
            buckets: int | None = None) -> IdStats:
    """The window's ID column (`arrays`, streamed once) against the reference's sketch."""
    measured = Measure(reference, params, buckets)
    for values in arrays:
        measured.add(values)
    return measured.stats()


def excesses(stats: IdStats, baseline: IdStats | None) -> dict[str, float]:
    """Each signal's move in its bad direction, beyond the reference's own holdout baseline."""
    base = baseline or IdStats(0, 0, 0, 0, 0, 0, stats.reference_topk_mass, 1.0, stats.reference_topk_mass)
    moves = {
        "unseen_traffic": stats.unseen_traffic_rate - base.unseen_traffic_rate,
        "cold_start": stats.cold_start_exposure - base.cold_start_exposure,
        "topk_coverage": base.topk_coverage - stats.topk_coverage,
        "topk_churn": base.topk_jaccard - stats.topk_jaccard,
    }
    if stats.collision_rate is not None:
        moves["collision_rate"] = stats.collision_rate - stats.reference_collision_rate
    return moves


@dataclass(frozen=True)
class IdReference:
    """The reference of one column: its sketch (with per-ID counts) and its holdout baseline."""

    sketch: IdSketch
    baseline: IdStats | None


def fit_column(batches_of, column: str, params: IdDriftParams, buckets: int | None) -> IdReference:
    """`batches_of()` streams the reference's arrays of `column`; read twice (rows, then sketches)."""
    total = sum(len(values) for values in batches_of())
    cut = total - total // params.holdout_chunks
    early, late, seen = params.empty_sketch(True), [], 0
    for values in batches_of():
        head = values.slice(0, max(0, min(len(values), cut - seen)))
        if len(head):
            early = early.update(head)
        if len(head) < len(values):
            late.append(values.slice(len(head)))
        seen += len(values)
    # The baseline's reference holds (1 - 1/holdout_chunks) of the rows: scale "cold" with it.
    scaled = params.model_copy(update={"cold_start_min_count": max(
        1, round(params.cold_start_min_count * (1 - 1 / params.holdout_chunks)))})
    baseline = measure(early, late, scaled, buckets) if late and early.rows else None
    return IdReference(sketch_batches(late, early), baseline)


class IdDriftCheck(Check):
    name = "id_drift"

    def __init__(self, model_config, params: IdDriftParams) -> None:
        self.params = params
        if params.enabled and not params.columns:
            raise ConfigError(f"models.{model_config.name}.checks.id_drift.columns: list the ID columns to watch")
        unknown = sorted(set(params.hashed_buckets) - set(params.columns))
        if unknown:
            raise ConfigError(f"models.{model_config.name}.checks.id_drift.hashed_buckets: "
                              f"'{unknown[0]}' is not in columns")

    def fit(self, reference) -> "FittedIdDrift":
        source = reference.source("reference")
        fitted, missing = {}, {}
        for column in self.params.columns:
            if column not in source.schema.names:
                missing[column] = f"{source.location} (reference): ID column '{column}' is missing"
                continue

            def arrays(column=column):
                return (batch.column(column) for batch in source.batches([column]))

            fitted[column] = fit_column(arrays, column, self.params, self.params.hashed_buckets.get(column))
        return FittedIdDrift(self.params, fitted, missing)


class FittedIdDrift(FittedCheck):
    def __init__(self, params: IdDriftParams, references: dict[str, IdReference], missing: dict[str, str]) -> None:
        self.params = params
        self.references = references
        self.missing = missing

    def evaluate(self, window) -> CheckResult:
        source = window.serving_source()
        present = [c for c in self.references if c in source.schema.names]
        measures = {c: Measure(self.references[c].sketch, self.params, self.params.hashed_buckets.get(c))
                    for c in present}
        if present:  # one pass over the window; memory stays that of the sketches
            for batch in source.batches(present, window.start, window.end):
                for column in present:
                    measures[column].add(batch.column(column))
        features, metrics, columns = [], [], {}
        for column in self.params.columns:
            why = self.missing.get(column) or (
                None if column in measures else f"{source.location} (window): ID column '{column}' is missing")
            if why:
                features.append(FeatureDrift(column, "id", "id_drift", None, None, "error", 0, 0, message=why))
                continue
            reference = self.references[column]
            stats = measures[column].stats()
            rows = stats.rows - stats.nulls
            moves = excesses(stats, reference.baseline)
            signals = {}
            for signal, move in moves.items():
                warn, alert = self.params.threshold(signal)
                status = ("insufficient_data" if rows < self.params.min_rows
                          else "alert" if move > alert else "warn" if move > warn else "ok")
                signals[signal] = {"excess": move, "warn": warn, "alert": alert, "status": status}
                metrics.append(MetricPoint("id_signal_excess", float(move), (("feature", column), ("signal", signal)),
                                           "An ID signal's move in its bad direction beyond the reference's baseline."))
            # One feature row per column (its status is the column's): the signal nearest its alert level.
            worst = max(signals, key=lambda k: (SEVERITY[signals[k]["status"]],
                                                signals[k]["excess"] / max(signals[k]["alert"], 1e-12)))
            top = signals[worst]
            features.append(FeatureDrift(column, "id", worst, top["excess"], top["alert"],
                                         worst_status(v["status"] for v in signals.values()),
                                         reference.sketch.rows, stats.rows, warn_threshold=top["warn"],
                                         unseen_share=stats.unseen_traffic_rate,
                                         reasons=tuple(k for k, v in signals.items() if v["status"] in ("warn", "alert"))))
            columns[column] = {"window": stats.to_dict(),
                               "baseline": None if reference.baseline is None else reference.baseline.to_dict(),
                               "signals": signals}
            metrics.extend(_points(column, stats))
        bad = tuple(f"{path}: {why}" for path, why in source.report.bad_files)
        return CheckResult(
            check="id_drift", status=worst_status(f.status for f in features), features=tuple(features),
            reference_rows=max((r.sketch.rows for r in self.references.values()), default=0),
            current_rows=max((s["window"]["rows"] for s in columns.values()), default=0),
            partial=bool(bad), bad_files=bad, metrics=tuple(metrics),
            details={"columns": columns, "top_k": self.params.top_k,
                     "cold_start_min_count": self.params.cold_start_min_count,
                     "thresholds": {s: list(self.params.threshold(s)) for s in DEFAULT_THRESHOLDS}},
            **window.result_context)


_HELP = {  # the per-column values exported (driftline_id_<name>), with id_distinct_estimate and id_signal_excess
    "unseen_value_rate": "Share of the window's distinct IDs absent from the reference.",
    "unseen_traffic_rate": "Share of the window's rows on IDs absent from the reference.",
    "cold_start_exposure": "Share of the window's rows on IDs the reference holds fewer than N times.",
    "topk_coverage": "Share of the window's rows on the reference's top-k IDs.",
    "topk_jaccard": "Jaccard overlap of the window's and the reference's top-k ID sets.",
    "collision_rate": "Expected share of IDs sharing a hash bucket (reference plus window IDs).",
    "bucket_occupancy": "Expected share of hash buckets used (reference plus window IDs).",
}


DECLARED_METRICS = tuple(f"id_{name}" for name in _HELP) + ("id_distinct_estimate", "id_signal_excess")


def _points(column: str, stats: IdStats) -> list[MetricPoint]:
    labels = (("feature", column),)
    points = [MetricPoint("id_distinct_estimate", float(stats.distinct), labels,
                          "Estimated distinct IDs in the window (HyperLogLog).")]
    for name, text in _HELP.items():
        value = getattr(stats, name)
        if value is not None:
            points.append(MetricPoint(f"id_{name}", float(value), labels, text))
    return points


@register_check("id_drift", params=IdDriftParams, needs=("rows",), exports=DECLARED_METRICS,
                summary="ID columns: unseen and cold-start traffic, top-k churn, hash collisions (sketches)")
def id_drift_check(model_config, params: IdDriftParams) -> IdDriftCheck:
    return IdDriftCheck(model_config, params)
