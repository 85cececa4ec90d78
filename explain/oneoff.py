"""`driftline explain`: explain one model on one dataset, no config file."""

from __future__ import annotations

from pathlib import Path

from explain.results import ExplainResult
from monitor.errors import SchemaError

DEFAULT_SAMPLE = 5000


def explain_file(model_path: str | Path, data: str, method: str = "shap", label: str | None = None,
                 sample: int = DEFAULT_SAMPLE, vocabulary: str | Path | None = None, seed: int = 0,
                 n_repeats: int = 5, groups: dict[str, list[str]] | None = None,
                 report: Path | None = None) -> ExplainResult:
    """Global importances of the model on a uniform sample of `sample` rows of `data`."""
    from explain.models import DeepModel, load_model
    from monitor.sources import Source

    if method not in ("shap", "permutation"):
        raise SchemaError(f"--method {method!r}: expected shap or permutation")
    if sample < 1:
        raise SchemaError("--sample must be at least 1")
    model = load_model(model_path, vocabulary)
    source = Source(data)
    names = source.schema.names
    missing = [f for f in tuple(model.features) if f not in names]
    if missing:
        raise SchemaError(f"{data}: lacks model feature column '{missing[0]}'"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if method == "permutation" and not label:
        raise SchemaError("--label is required with --method permutation")
    if label and label not in names:
        raise SchemaError(f"{data}: label column '{label}' is missing")
    columns = list(tuple(model.features)) + ([label] if label else [])
    frame = source.sample(sample, columns, seed=seed).to_pandas()
    if frame.empty:
        raise SchemaError(f"{data}: no rows")
    if method == "shap" and isinstance(model, DeepModel):
        from explain.deep import deep_shap, to_result
        from explain.tree import sample_frame

        background = sample_frame(frame, 100, seed + 1)
        attribution = deep_shap(model, frame, background, seed=seed)
        result, values = to_result(model, attribution), None
    elif method == "shap":
        from explain.tree import shap_importance

        result, values = shap_importance(model, frame, sample=None, seed=seed)
    else:
        from explain.permutation import permutation_importance

        labelled = frame[frame[label].notna()]
        result = permutation_importance(model, labelled, labelled[label], n_repeats=n_repeats, seed=seed,
                                        groups=groups)
        result = ExplainResult(result.method, result.model, result.rows, result.features,
                               details={**result.details, "unlabelled_rows_dropped": len(frame) - len(labelled)})
        values = None
    if report is not None:
        _report(report, result, model, frame, values, seed)
    return result


def _report(path: Path, result: ExplainResult, model, frame, values, seed: int) -> None:
    from checks.base import CheckResult
    from explain.models import TreeModel
    from explain.report import render_explain_report
    from explain.tree import sample_frame, shap_values

    if values is None and isinstance(model, TreeModel):  # the beeswarm's SHAP values, on a bounded sample
        values = shap_values(model, sample_frame(frame, 2000, seed))
    method = "mean_abs_shap" if result.method == "shap" else "permutation_logloss"
    rows = [{"feature": f.feature, "method": method, "importance": f.importance, "std": f.std}
            for f in result.features]
    summary = CheckResult(check="explain", status="ok", model=result.model, details={"importance": rows})
    render_explain_report(path, f"{result.model}: {result.method} importance on {result.rows} rows",
                          summary, values, [])
