"""`driftline explain`: explain one model on one dataset, no config file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from explain.results import ExplainResult
from core.errors import SchemaError

DEFAULT_SAMPLE = 5000
BACKGROUND_ROWS = 200


def _source(path: str, features: tuple[str, ...]):
    """The data source, checked to hold every model feature (the error names the file and column)."""
    from core.sources import Source

    source = Source(path)
    missing = [f for f in features if f not in source.schema.names]
    if missing:
        raise SchemaError(f"{path}: lacks model feature column '{missing[0]}'"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return source


def explain_file(model_path: str | Path, data: str, method: str = "shap", label: str | None = None,
                 sample: int = DEFAULT_SAMPLE, vocabulary: str | Path | None = None, seed: int = 0,
                 n_repeats: int = 5, groups: dict[str, list[str]] | None = None,
                 report: Path | None = None, background: str | None = None,
                 background_rows: int = BACKGROUND_ROWS) -> ExplainResult:
    """Global importances of the model on a uniform sample of `sample` rows of `data`. Deep
    models are explained against `background_rows` rows of `background` (default: `data`),
    a uniform sample drawn with `seed`, so the same command gives the same background."""
    from explain.models import DeepModel, load_model

    if method not in ("shap", "permutation"):
        raise SchemaError(f"--method {method!r}: expected shap or permutation")
    if sample < 1:
        raise SchemaError("--sample must be at least 1")
    if background_rows < 1:
        raise SchemaError("--background-rows must be at least 1")
    model = load_model(model_path, vocabulary)
    features = tuple(model.features)
    source = _source(data, features)
    names = source.schema.names
    if method == "permutation" and not label:
        raise SchemaError("--label is required with --method permutation")
    if label and label not in names:
        raise SchemaError(f"{data}: label column '{label}' is missing")
    columns = list(features) + ([label] if label else [])
    frame = source.sample(sample, columns, seed=seed).to_pandas()
    if frame.empty:
        raise SchemaError(f"{data}: no rows")
    deep = method == "shap" and isinstance(model, DeepModel)
    if background and not deep:
        raise SchemaError("--background applies only to deep models (a retrain/ model directory) with --method shap")
    if deep:
        result, values = _explain_deep(model, frame, _source(background, features) if background else source,
                                       background or data, background_rows, seed)
    elif method == "shap":
        from explain.tree import shap_importance

        result, values = shap_importance(model, frame, sample=None, seed=seed)
    else:
        from explain.permutation import permutation_importance

        labelled = frame[frame[label].notna()]
        result = permutation_importance(model, labelled, labelled[label], n_repeats=n_repeats, seed=seed,
                                        groups=groups)
        result = replace(result, details={**result.details, "unlabelled_rows_dropped": len(frame) - len(labelled)})
        values = None
    bad = tuple(dict.fromkeys(f"{path}: {why}" for path, why in source.report.bad_files))
    if bad:  # the sample is of the readable files only: say so
        result = replace(result, partial=True, bad_files=bad)
    if report is not None:
        _report(report, result, model, frame, values, seed, str(model_path), str(data))
    return result


def _explain_deep(model, frame, background_source, origin: str, rows: int, seed: int):
    """Deep SHAP at x0 against a uniform sample of `rows` background rows drawn with `seed`."""
    from explain.deep import deep_shap, shap_values_of, to_result

    background = background_source.sample(rows, list(model.features), seed=seed).to_pandas()
    if background.empty:
        raise SchemaError(f"{origin}: no rows for the background sample")
    attribution = deep_shap(model, frame, background, seed=seed)
    result = to_result(model, attribution)
    summary = {"rows": len(background), "source": str(origin), "seed": seed}
    result = replace(result, details={**result.details, "background": summary})
    return result, shap_values_of(attribution, frame, getattr(model, "categorical", ()))


def _report(path: Path, result: ExplainResult, model, frame, values, seed: int, model_path: str, data: str) -> None:
    from core.results import CheckResult
    from explain.models import TreeModel
    from explain.report import render_explain_report
    from explain.tree import sample_frame, shap_values

    if values is None and isinstance(model, TreeModel):  # the beeswarm's SHAP values, on a bounded sample
        values = shap_values(model, sample_frame(frame, 2000, seed))
    method = "mean_abs_shap" if result.method == "shap" else "permutation_logloss"
    rows = [{"feature": f.feature, "method": method, "importance": f.importance, "std": f.std}
            for f in result.features]
    details = {"importance": rows, "base_value": result.base_value, "additivity_error": result.additivity_error,
               "explainer": result.details.get("explainer"), "background": result.details.get("background")}
    summary = CheckResult(check="explain", status="ok", model=result.model, details=details)
    render_explain_report(path, f"{model_path}: {result.method} importance on {result.rows} rows of {data}",
                          summary, values, [])
