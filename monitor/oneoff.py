"""One-off checks between two datasets, with no config file (`driftline check ...`)."""

from __future__ import annotations

from pathlib import Path

from checks.base import CheckResult
from checks.drift import DriftCheck
from monitor.errors import SchemaError
from monitor.profile import infer_kind, profile_batches
from monitor.reference import REPORT_SAMPLE_ROWS, build_reference
from monitor.sources import Source


def feature_kinds(source: Source, names: list[str] | None) -> dict[str, str]:
    """Kinds from the reference's Arrow types; without explicit names, unsupported columns are skipped."""
    schema = source.schema
    if names:
        missing = [n for n in names if n not in schema.names]
        if missing:
            raise SchemaError(f"{source.location}: column '{missing[0]}' is not in the reference data")
        return {n: infer_kind(schema.field(n).type) for n in names}
    kinds = {}
    for field in schema:
        try:
            kinds[field.name] = infer_kind(field.type)
        except SchemaError:
            continue  # timestamps, lists and the like are not drift features
    if not kinds:
        raise SchemaError(f"{source.location}: no numeric or categorical columns to compare")
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
    if engine is not None and engine.name == "spark":
        reference_source, current_source = engine.source(reference), engine.source(current)
        kinds = feature_kinds(reference_source, features)
    else:
        engine = None
        reference_source, current_source = Source(reference), Source(current)
        kinds = feature_kinds(reference_source, features)
    unknown = [f for f in (methods or {}) if f not in kinds]
    if unknown:
        raise SchemaError(f"--method: column '{unknown[0]}' is not a compared feature")
    check = DriftCheck(methods=methods or {}, min_samples=min_samples)
    if engine is None:
        # Row-order chunks only feed learned thresholds; with static ones a chunk per row block is
        # ten kernel passes and profiles per column for nothing (a 10,000-column file feels it).
        built = build_reference(reference_source, kinds, **({"n_chunks": 1} if check.threshold_mode == "static" else {}))
        if report is None:
            built.sample = None  # rows kept for the report only: free them before reading the current data
        current_profile = profile_batches(current_source.batches(list(kinds), dictionary_strings=True), built.spec)
    else:
        built = engine.reference(reference_source, kinds)
        current_profile = engine.profile(current_source, list(kinds), built.spec)
    fitted = check.fit(built.profile, built.chunks)
    bad = tuple(f"{path}: {why}" for path, why in reference_source.report.bad_files + current_source.report.bad_files)
    result = fitted.evaluate(current_profile, partial=bool(bad), bad_files=bad)
    if report is not None:
        from monitor.reports import render_drift_report

        current_sample = current_source.sample(REPORT_SAMPLE_ROWS, list(kinds), seed=1)
        present = set(current_sample.schema.names)
        columns = [c for c in kinds if c in present]
        render_drift_report(
            built.sample.slice(0, REPORT_SAMPLE_ROWS).select(columns).to_pandas(),
            current_sample.select(columns).to_pandas(),
            report,
            numeric=[c for c in columns if kinds[c] == "numeric"],
            categorical=[c for c in columns if kinds[c] == "categorical"],
        )
        result = result.with_updates(report_path=str(report))
    return result
