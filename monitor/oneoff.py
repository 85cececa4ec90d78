"""One-off checks between two datasets, with no config file (`driftline check ...`)."""

from __future__ import annotations

from pathlib import Path

from core.results import CheckResult
from checks.drift import DriftCheck
from core.errors import SchemaError
from core.profile import profile_batches
from core.reference import REPORT_SAMPLE_ROWS, build_reference, feature_kinds
from core.sources import Source


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
        built = build_reference(reference_source, kinds)
        current_profile = profile_batches(current_source.batches(list(kinds), dictionary_strings=True), built.spec)
    else:
        built = engine.reference(reference_source, kinds)
        current_profile = engine.profile(current_source, list(kinds), built.spec)
    fitted = check.fit(built.profile, built.chunks)
    bad = tuple(f"{path}: {why}" for path, why in reference_source.report.bad_files + current_source.report.bad_files)
    result = fitted.evaluate(current_profile, partial=bool(bad), bad_files=bad)
    if report is not None:
        from checks.drift_report import render_result_report

        current_sample = current_source.sample(REPORT_SAMPLE_ROWS, list(kinds), seed=1)
        reference_sample = built.sample if built.sample is not None else reference_source.sample(
            REPORT_SAMPLE_ROWS, list(kinds), seed=0)
        render_result_report(result, reference_sample, current_sample, report, kinds)
        result = result.with_updates(report_path=str(report))
    return result
