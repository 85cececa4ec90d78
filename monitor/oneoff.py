"""One-off checks between two datasets, with no config file (`driftline check ...`)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from checks.drift import DriftCheck
from core.errors import SchemaError
from core.reference import REPORT_SAMPLE_ROWS, build_reference, feature_kinds
from core.results import CheckResult
from core.sources import Source
from core.wide import profile_source, sample_source

# Columns that are not features: compared as features they alert on every window (ids, times)
# or measure the model and the outcome rather than its inputs (labels, scores). Names propose,
# values confirm: a label holds only 0/1, a score only probabilities, an id nearly only distinct values.
_TIMESTAMP_NAME = re.compile(r"^(ts|timestamp|time|date|datetime|event_time|dt)$|(_ts|_time|_at|_date|_timestamp)$")
_LABEL_NAME = re.compile(r"^(label|target|y|click|clicks|clicked|conversion|conversions|converted|purchase|"
                         r"purchased|outcome)$|(_label|_target)$")
_SCORE_NAME = re.compile(r"^(score|prediction|pred|predicted|prob|probability|pctr|pcvr)$|"
                         r"(_score|_pred|_prediction|_prob|_proba)$|^p_")
_ID_NAME = re.compile(r"^(id|uuid|guid|key)$|(_id|_uuid|_guid|_key|id)$")
SAMPLE_ROWS = 5000
ID_UNIQUE_SHARE = 0.95  # distinct share of a sample's non-null values above which a column is an identifier


def _role_by_name(name: str, arrow_type: pa.DataType) -> str | None:
    lowered = name.lower()
    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
    text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if _TIMESTAMP_NAME.search(lowered) and (pa.types.is_integer(arrow_type) or text or pa.types.is_date(arrow_type)):
        return "timestamp"
    if _LABEL_NAME.search(lowered) and numeric:
        return "label"
    if _SCORE_NAME.search(lowered) and pa.types.is_floating(arrow_type):
        return "prediction"
    if text or (pa.types.is_integer(arrow_type) and _ID_NAME.search(lowered)):
        return "identifier"
    return None


def _confirmed(role: str, column: pa.ChunkedArray) -> bool:
    values = column.drop_null()
    if role == "timestamp":
        return True
    if len(values) < 100:
        return False
    if role == "identifier":
        return len(pc.unique(values)) >= ID_UNIQUE_SHARE * len(values)
    bounds = pc.min_max(values.cast(pa.float64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if role == "label":
        return set(pc.unique(values.cast(pa.float64())).to_pylist()) <= {0.0, 1.0}
    return low is not None and 0.0 <= low and high <= 1.0  # a probability


def _not_features(source: Source, kinds: dict[str, str]) -> dict[str, str]:
    """Column -> why, for the columns among `kinds` that are identifiers, times, labels or scores."""
    schema = source.schema
    proposed = {n: role for n in kinds if (role := _role_by_name(n, schema.field(n).type)) is not None}
    if not proposed:
        return {}
    sample = source.sample(SAMPLE_ROWS, list(proposed), seed=0)
    why = {"identifier": "identifier: every sampled value distinct", "label": "label", "prediction": "prediction",
           "timestamp": "timestamp"}
    return {n: why[role] for n, role in proposed.items() if _confirmed(role, sample.column(n))}


def drift_features(source: Source, names: list[str] | None, skipped: dict[str, str]) -> dict[str, str]:
    """The columns `check drift` compares: the named ones, else every column that is a feature
    (unsupported types, identifiers, timestamps, labels and scores left out, with why, in `skipped`)."""
    kinds = feature_kinds(source, names)
    if names:
        return kinds
    for field in source.schema:
        if field.name not in kinds:
            skipped[field.name] = "timestamp" if pa.types.is_timestamp(field.type) else f"type {field.type}"
    for name, why in _not_features(source, kinds).items():
        skipped[name] = why
        del kinds[name]
    if not kinds:
        raise SchemaError(f"{source.location}: no numeric or categorical feature columns to compare (skipped: "
                          f"{', '.join(skipped)}; name columns with --features)")
    return kinds


def drift_between(
    reference: str,
    current: str,
    features: list[str] | None = None,
    methods: dict[str, str] | None = None,
    min_samples: int = 1000,
    report: Path | None = None,
    engine=None,
) -> CheckResult:
    """`engine`: None (embedded) or a SparkEngine, which reads and profiles both datasets on Spark."""
    skipped: dict[str, str] = {}
    if engine is not None and engine.name == "spark":
        reference_source, current_source = engine.source(reference), engine.source(current)
    else:
        engine = None
        reference_source, current_source = Source(reference), Source(current)
    kinds = drift_features(reference_source, features, skipped)
    unknown = [f for f in (methods or {}) if f not in kinds]
    if unknown:
        raise SchemaError(f"--method: column '{unknown[0]}' is not a compared feature")
    check = DriftCheck(methods=methods or {}, min_samples=min_samples)
    if engine is None:
        # Row-order chunks only feed learned thresholds; with static ones a chunk per row block is
        # ten kernel passes and profiles per column for nothing (a 10,000-column file feels it).
        built = build_reference(reference_source, kinds, keep_sample=report is not None,  # rows for the report only
                                **({"n_chunks": 1} if check.threshold_mode == "static" else {}))
        current_profile = profile_source(current_source, built.spec)  # wide files: a column group at a time
    else:
        built = engine.reference(reference_source, kinds)
        current_profile = engine.profile(current_source, list(kinds), built.spec)
    fitted = check.fit(built.profile, built.chunks)
    bad = tuple(f"{path}: {why}" for path, why in reference_source.report.bad_files + current_source.report.bad_files)
    result = fitted.evaluate(current_profile, partial=bool(bad), bad_files=bad)
    if skipped:
        result = result.with_updates(details={**result.details, "skipped_columns": skipped})
    if report is not None:
        from checks.drift_report import render_result_report

        current_sample = sample_source(current_source, REPORT_SAMPLE_ROWS, list(kinds), seed=1)
        reference_sample = built.sample if built.sample is not None else sample_source(
            reference_source, REPORT_SAMPLE_ROWS, list(kinds), seed=0)
        render_result_report(result, reference_sample, current_sample, report, kinds)
        result = result.with_updates(report_path=str(report))
    return result
