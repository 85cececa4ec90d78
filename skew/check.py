"""Train/serve skew of one window: schema, distribution, feature-value and prediction skew.

`SkewCheck(...)` holds parameters only; `run(training, serving, ...)` reads both sources
and returns a `SkewReport`. Each part marks what it could not do and the others go on;
only a key that cannot join (missing, or a string on one side and an integer on the
other) stops the run first, with one line naming the key column and both types.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Mapping

import pyarrow as pa

from core.errors import DriftlineError, SchemaError
from core.profile import infer_kind
from core.sources import Source
from skew.distribution import (
    DistributionFinding,
    DistributionSettings,
    distribution_skew,
    profile_pair,
    spark_profile_pair,
)
from skew.feature_values import JoinSettings, ValueCounts, value_skew
from skew.prediction import DEFAULT_THRESHOLDS as PREDICTION_THRESHOLDS
from skew.prediction import DEFAULT_TOLERANCE, ModelAdapter, prediction_skew
from skew.results import FeatureSkew, JoinStats, SchemaIssue, SkewReport, grade, rate
from skew.schema import DOMAIN_THRESHOLDS, column_issues, domain_issues

_RANK = {"ok": 1, "warn": 2, "error": 3, "alert": 4}
_FEATURE_BREAKING = {"missing", "missing_in_training", "retyped"}


@dataclass(frozen=True)
class SkewCheck:
    key: str | None = None  # example id joining serving rows to training examples; None: no value skew
    features: Mapping[str, str] | None = None  # name -> numeric|categorical; None: every training column
    serving_absent: tuple[str, ...] = ()  # columns absent at serving by design (labels)
    ignore: tuple[str, ...] = ()  # columns that are not features (timestamp, score, model version)
    distribution: DistributionSettings = DistributionSettings()
    join: JoinSettings = JoinSettings()
    value_thresholds: tuple[float, float] = (0.001, 0.01)  # share of joined examples whose values differ
    join_thresholds: tuple[float, float] = (0.01, 0.05)  # share of rows without a partner on the other side
    domain_thresholds: tuple[float, float] = DOMAIN_THRESHOLDS
    score_column: str | None = None
    version_column: str | None = None
    prediction_tolerance: float = DEFAULT_TOLERANCE
    prediction_thresholds: tuple[float, float] = PREDICTION_THRESHOLDS

    def feature_kinds(self, training: Source, serving: Source) -> dict[str, str]:
        if self.features is not None:
            return dict(self.features)
        skip = {self.key, *self.ignore, *self.serving_absent, *_partition_columns(training),
                *_partition_columns(serving)}
        kinds = {}
        for column in training.schema:
            if column.name in skip:
                continue
            try:
                kinds[column.name] = infer_kind(column.type)
            except SchemaError:
                continue  # timestamps, lists: not features
        if not kinds:
            raise SchemaError(f"{training.location}: no numeric or categorical columns to compare")
        return kinds

    def run(self, training: Source, serving: Source, adapters: Mapping[str | None, ModelAdapter] | None = None,
            start: datetime | None = None, end: datetime | None = None, timestamp: str | None = None,
            engine=None) -> SkewReport:
        """`engine`: None (embedded: pyarrow + DuckDB), or a SparkEngine when both sources are SparkSources."""
        spark = engine is not None and engine.name == "spark"
        kinds = self.feature_kinds(training, serving)
        if self.key is not None:
            check_key_types(training, serving, self.key)
        errors: list[str] = []
        join_settings = self.join
        absent = [c for c in self.join.segments if c not in serving.schema.names]
        if absent:  # a breakdown is lost, not the run
            errors += [f"segment column '{c}' is missing in the serving data" for c in absent]
            join_settings = replace(self.join, segments=tuple(c for c in self.join.segments if c not in absent))
        ignore = {*self.ignore, *([self.key] if self.key else []), *_partition_columns(serving)}
        schema = column_issues(training.schema, serving.schema, kinds, self.serving_absent, ignore)
        compared_kinds = {n: k for n, k in kinds.items() if n not in self.serving_absent}
        findings: dict[str, DistributionFinding] = {}
        try:
            pair = spark_profile_pair if spark else profile_pair
            training_profile, serving_profile = pair(training, serving, compared_kinds, self.distribution, start, end,
                                                     **({"engine": engine} if spark else {}))
            findings = distribution_skew(training_profile, serving_profile, compared_kinds, self.distribution)
            for name in compared_kinds:
                schema += domain_issues(name, training_profile.features.get(name),
                                        serving_profile.features.get(name), self.domain_thresholds)
            training_rows, serving_rows = training_profile.rows, serving_profile.rows
        except DriftlineError as exc:
            errors.append(f"distribution skew: {exc}")
            training_rows = serving_rows = 0
        join, counts, segments = None, {}, ()
        if self.key is not None:
            try:
                if spark:
                    from skew.spark_values import spark_value_skew

                    values = spark_value_skew(training, serving, self.key, compared_kinds, join_settings, start, end)
                else:
                    values = value_skew(training, serving, self.key, compared_kinds, join_settings, start, end,
                                        timestamp)
                join, counts, segments = _graded_join(values.join, self.join_thresholds,
                                                      self.distribution.min_samples), values.features, \
                    values.segments
                training_rows, serving_rows = join.training_rows, join.serving_rows
            except DriftlineError as exc:
                errors.append(f"feature-value skew: {exc}")
        prediction = None
        if adapters and self.score_column:
            try:
                prediction = self._prediction(serving, adapters, start, end, spark)
            except DriftlineError as exc:
                errors.append(f"prediction skew: {exc}")
        features = tuple(self._feature(name, kind, findings.get(name), counts.get(name), schema)
                         for name, kind in compared_kinds.items())
        bad = tuple(f"{path}: {why}" for path, why in training.report.bad_files + serving.report.bad_files)
        return SkewReport(
            status=SkewReport.overall(schema, join, features, prediction, errors), schema=tuple(schema), join=join,
            features=features, prediction=prediction, segments=segments, training_rows=training_rows,
            serving_rows=serving_rows, partial=bool(bad), bad_files=bad, errors=tuple(errors))

    def _prediction(self, serving: Source, adapters, start, end, spark: bool = False):
        needed = {c for adapter in adapters.values() for c in adapter.features}
        columns = [c for c in (*sorted(needed), self.score_column, self.version_column, self.key) if c]
        if spark:
            from skew.spark_prediction import spark_prediction_skew

            return spark_prediction_skew(serving, columns, adapters, self.score_column, self.version_column,
                                         self.key, self.prediction_tolerance, self.prediction_thresholds,
                                         self.join.max_examples, start, end, self.distribution.min_samples)
        return prediction_skew(_rebatch(serving.batches(columns, start, end)), adapters, self.score_column,
                               self.version_column, self.key, self.prediction_tolerance, self.prediction_thresholds,
                               self.join.max_examples, self.distribution.min_samples)

    def _feature(self, name: str, kind: str, finding: DistributionFinding | None, values: ValueCounts | None,
                 schema: list[SchemaIssue]) -> FeatureSkew:
        statuses, reasons, messages = [], [], []
        if finding is not None:
            statuses.append(finding.status)
            reasons += finding.reasons
            if finding.message:
                messages.append(finding.message)
        value_rate = null_rate = None
        if values is not None:
            if values.message:
                statuses.append("error")
                messages.append(values.message)
            elif values.compared:
                value_rate = rate(values.value_mismatches, values.compared)
                null_rate = rate(values.serving_null + values.training_null, values.compared)
                for share, what in ((value_rate, "of joined examples have a different value"),
                                    (null_rate, "of joined examples are missing on one side only")):
                    status = grade(share, self.value_thresholds)
                    statuses.append(status)
                    if status != "ok":
                        reasons.append(f"{share:.2%} {what}")
                if values.compared < self.distribution.min_samples and set(statuses[-2:]) == {"ok"}:
                    # No mismatch among a handful of examples is no evidence of agreement.
                    statuses[-2:] = ["insufficient_data"]
                    reasons.append(f"only {values.compared} joined examples compared (fewer than "
                                   f"{self.distribution.min_samples})")
        for issue in schema:
            if issue.column != name or issue.severity == "info":
                continue
            statuses.append("error" if issue.issue in _FEATURE_BREAKING else issue.severity)
            (messages if issue.issue in _FEATURE_BREAKING else reasons).append(f"{issue.issue}: {issue.detail}")
        return FeatureSkew(
            feature=name, kind=kind,
            method=finding.method if finding else None,
            distribution_score=finding.score if finding else None,
            thresholds=finding.thresholds if finding else None,
            training_count=finding.training_count if finding else 0,
            serving_count=finding.serving_count if finding else 0,
            null_rate_training=finding.null_rate_training if finding else None,
            null_rate_serving=finding.null_rate_serving if finding else None,
            unseen_share=finding.unseen_share if finding else None,
            compared=values.compared if values else 0,
            value_mismatches=values.value_mismatches if values else 0,
            serving_null=values.serving_null if values else 0,
            training_null=values.training_null if values else 0,
            value_mismatch_rate=value_rate, null_mismatch_rate=null_rate,
            examples=values.examples if values else (),
            status=feature_status(statuses), reasons=tuple(dict.fromkeys(reasons)),
            message="; ".join(dict.fromkeys(messages)) or None)


def _rebatch(batches, rows: int = 131_072):
    """Hourly files make small batches; the model scores fewer, larger ones faster."""
    pending, size = [], 0
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= rows:
            yield pa.Table.from_batches(pending)
            pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def feature_status(statuses: list[str]) -> str:
    """The worst definitive status; insufficient_data only when no part could judge."""
    definitive = [s for s in statuses if s in _RANK]
    if not definitive:
        return "insufficient_data" if statuses else "ok"
    return max(definitive, key=_RANK.__getitem__)


def _graded_join(join: JoinStats, thresholds: tuple[float, float], min_samples: int = 1) -> JoinStats:
    statuses, reasons = [], []
    if join.serving_rows and join.training_rows and not join.matched:
        statuses.append("alert")
        reasons.append(f"no serving row has a training example with the same '{join.key}'")
    for side, only, rows in (("serving", join.serving_only, join.serving_rows),
                             ("training", join.training_only, join.training_rows)):
        share = rate(only, rows)
        status = grade(share, thresholds)
        if status != "ok":
            statuses.append(status)
            other = "training example" if side == "serving" else "serving row"
            reasons.append(f"{share:.2%} of {side} rows have no {other}")
    if join.duplicate_keys:
        statuses.append("warn")
        reasons.append(f"{join.duplicate_keys} keys repeat (serving {join.serving_duplicate_keys}, "
                       f"training {join.training_duplicate_keys}); their rows are not compared")
    nulls = join.serving_null_keys + join.training_null_keys
    if nulls:
        statuses.append("warn")
        reasons.append(f"{nulls} rows have no key")
    if not statuses and min(join.serving_rows, join.training_rows) < min_samples:
        statuses.append("insufficient_data")
        reasons.append(f"fewer than {min_samples} rows to join (training {join.training_rows}, "
                       f"serving {join.serving_rows})")
    return replace(join, status=feature_status(statuses) if statuses else "ok", reasons=tuple(reasons))


def _partition_columns(source: Source) -> list[str]:
    """Hive partition keys (`dt=...`/`hour=...` directories): where rows live, not features."""
    files = source.files if hasattr(source, "files") else source.dataset.files  # SparkSource or Source
    parts = files[0].replace("\\", "/").split("/")[:-1] if files else []
    return [part.split("=", 1)[0] for part in parts if "=" in part]


def _key_family(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return None


def check_key_types(training: Source, serving: Source, key: str) -> None:
    """Fail before any work when the key cannot join: missing, unsupported, or string on one side only."""
    families = {}
    for role, source in (("training", training), ("serving", serving)):
        if key not in source.schema.names:
            raise SchemaError(f"{source.location}: key column '{key}' is missing in the {role} data")
        arrow_type = source.schema.field(key).type
        families[role] = (_key_family(arrow_type), arrow_type)
        if families[role][0] is None:
            raise SchemaError(f"key column '{key}' has type {arrow_type} in the {role} data ({source.location}); "
                              "use an integer or string id")
    (t_family, t_type), (s_family, s_type) = families["training"], families["serving"]
    if t_family != s_family:
        raise SchemaError(f"key column '{key}' is {t_type} ({t_family}) in the training data but {s_type} "
                          f"({s_family}) in the serving data; cast one side so the ids match")
