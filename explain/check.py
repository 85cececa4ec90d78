"""The `attribution_drift` check: a scheduled explain job per model and window.

Each run explains a bounded uniform sample of the window (`sample_size` rows): exact
TreeSHAP of a LightGBM model, or deep SHAP at x0 of a retrain/ torch ranker (explain/deep.py,
against a background sample stored once: explain/background.py), and, where the window's
rows carry labels, permutation importance on them. The baseline (a held-out labelled
dataset, a baseline window of the serving logs, or else the training reference) is explained
once and cached in the store under a fingerprint of the model, the settings and the data.
`explain.drift.compare` turns the two into a CheckResult; the importances travel in
`details["importance"]` for the exporter.
See explain/drift.py for why concept drift needs the labelled permutation part.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np

from core.checks import WindowCheck, register_check
from core.metric_points import with_points
from core.results import CheckResult, worst_status
from explain.config import AttributionDriftConfig
from explain.drift import Attribution, AttributionThresholds, compare, profile_values
from core.errors import ConfigError, DriftlineError, SchemaError
from core.results import report_wanted, window_text

log = logging.getLogger("driftline.explain")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ROLE = "attribution_ref"


def attribute(model, frame, label: str | None = None, spec: dict | None = None, n_repeats: int = 3,
              seed: int = 0, permutation: bool = True, note: str | None = None, shap_rows: int | None = None,
              background=None):
    """Explain one dataset: (Attribution, ShapValues, SHAP profile spec as a dict).

    SHAP runs on at most `shap_rows` of the rows (it is the costly part and mean |SHAP|
    converges fast); permutation importance uses every labelled row, since label-sparse CTR
    data needs them all. Deep models are explained against `background` (a frame).
    """
    from explain.models import DeepModel
    from explain.permutation import binary_labels, permutation_scores
    from explain.tree import importance_from_values, sample_frame, shap_values

    rows, explainer = sample_frame(frame, shap_rows, seed), None
    if isinstance(model, DeepModel):
        from explain.deep import deep_shap, shap_values_of

        if background is None:
            raise SchemaError(f"model {model.name!r}: deep SHAP needs a background sample")
        deep = deep_shap(model, rows, background, seed=seed)
        values, explainer = shap_values_of(deep, rows, getattr(model, "categorical", ())), deep.method
    else:
        values = shap_values(model, rows)
    profile_spec, profile = profile_values(values.values, model.features, spec)
    shap = {i.feature: (i.importance, i.std) for i in importance_from_values(values.values, model.features)}
    perm, labelled, positives = None, 0, 0
    if permutation and label is not None and label in frame.columns:
        known = frame[label].notna().to_numpy()
        labelled = int(known.sum())
        if labelled:
            y = binary_labels(frame[label][known], label)
            positives = int(y.sum())
            if 0 < positives < labelled:
                scores = permutation_scores(model, frame[known], y, n_repeats=n_repeats, seed=seed)
                loss = scores.importances["log_loss"]
                perm = {u: (float(loss[i].mean()), float(loss[i].std()), float(scores.row_se[i]))
                        for i, u in enumerate(scores.units)}
    attribution = Attribution(
        rows=len(values.raw), shap=shap, shap_profile=profile.to_dict(), base_value=values.base_value,
        additivity_error=values.additivity_error, permutation=perm, labelled_rows=labelled,
        positives=positives, note=note, explainer=explainer,
    )
    return attribution, values, profile_spec.to_dict()


class AttributionDriftCheck(WindowCheck):
    name = "attribution_drift"

    def __init__(self, model_config, config: AttributionDriftConfig | None) -> None:
        self.model_config = model_config
        self.config = config or AttributionDriftConfig()
        if not self.config.model_path:
            raise ConfigError(f"models.{model_config.name}.checks.attribution_drift.model_path: required")

    def _label(self) -> str | None:
        if self.config.label:
            return self.config.label
        labels = self.model_config.model_schema.labels
        return labels[0].name if labels else None

    def _thresholds(self) -> AttributionThresholds:
        c = self.config
        return AttributionThresholds(tuple(c.shap_thresholds), tuple(c.permutation_z), c.permutation_min_change,
                                     c.ndcg_threshold, c.top_k, c.min_rows, c.min_positives)

    def _model(self, base):
        from explain.models import load_model

        c = self.config
        return load_model(c.resolve(c.model_path, base), c.resolve(c.vocabulary_path, base),
                          name=self.model_config.name)

    def _sample(self, batches, columns, schema=None):
        from core.sources import sample_batches

        table = sample_batches(batches, self.config.sample_size, self.config.seed, schema, columns)
        return table.to_pandas()

    def _frame(self, model, frame):
        """Model columns the data lacks are explained as missing values and marked on the feature."""
        missing = [f for f in model.features if f not in frame.columns]
        if len(missing) == len(model.features):
            raise SchemaError(f"the data has none of the model's features (first: '{model.features[0]}')")
        for name in missing:
            frame[name] = np.nan
        return frame, missing

    def _baseline(self, context, model, columns: list[str]):
        """(Attribution, spec dict, Background or None) of the baseline, from the store when the
        inputs are unchanged. Deep models also get their background sample: drawn from the
        baseline rows the first time, stored under the same key, loaded on every later run."""
        from explain import background as backgrounds
        from explain.models import DeepModel
        from core.sources import parse_window

        c = self.config
        base = context.runner.config.base_dir
        deep = isinstance(model, DeepModel)
        key_parts = {"model": model.fingerprint(), "holdout": c.holdout_path, "window": c.baseline_window,
                     "sample": c.sample_size, "seed": c.seed, "repeats": c.n_repeats, "label": self._label()}
        if deep:
            key_parts.update(background_rows=c.background_rows, shap_rows=c.shap_rows)
        if c.holdout_path:
            from core.reference import source_fingerprint

            holdout, engine = str(c.resolve(c.holdout_path, base)), context.runner.engine
            source = engine.source(holdout)
            key_parts["files"] = source_fingerprint(source)
            batches, schema, note = source.batches(columns), source.schema, None
        elif c.baseline_window:
            start, end = parse_window(c.baseline_window)
            source = context.serving_source()
            batches, schema, note = source.batches(columns, start, end), source.schema, None
        else:
            from core.reference import source_fingerprint

            source = context.reference_source()
            key_parts["files"] = source_fingerprint(source)
            batches, schema = source.batches(columns), source.schema
            note = ("baseline is the training reference: permutation importances are not compared "
                    "(configure holdout_path or baseline_window)")
        key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:32]
        name = self.model_config.name
        cached = context.store.load_profile(name, _ROLE, _EPOCH, _EPOCH, key)
        background = backgrounds.load(context.store, name, key) if deep else None
        if cached is not None and (background is not None or not deep):
            return Attribution.from_dict(cached["attribution"]), cached["spec"], background
        frame, missing = self._frame(model, self._sample(batches, columns, schema))
        if missing:
            raise SchemaError(f"baseline data lacks model feature column '{missing[0]}'")
        if deep and background is None:  # stored before use: a run killed after this reuses it
            background = backgrounds.save(context.store, name, key,
                                          backgrounds.draw(frame[list(model.features)], c.background_rows, c.seed))
        attribution, _, spec = attribute(model, frame, self._label(), None, c.n_repeats, c.seed,
                                         permutation=note is None, note=note, shap_rows=c.shap_rows,
                                         background=background.frame if deep else None)
        context.store.save_profile(name, _ROLE, _EPOCH, _EPOCH, key,
                                   {"rows": attribution.rows, "attribution": attribution.to_dict(), "spec": spec})
        return attribution, spec, background

    def _baseline_source(self) -> str:
        c = self.config
        return "holdout_path" if c.holdout_path else "baseline_window" if c.baseline_window else "reference"

    def run(self, context) -> CheckResult:
        """Every failure is this check's `error` result naming the model path: the runner turns only
        DriftlineErrors into results, and a model that fails to load or explain (a LightGBMError,
        a torch error, a bug) must not abort the other checks of the run."""
        try:
            return with_points(self._run(context))
        except Exception as exc:
            path = self.config.model_path
            try:
                path = str(self.config.resolve(path, context.runner.config.base_dir))
            except Exception:  # keep the configured path in the message
                pass
            why = (str(exc).strip().splitlines() or [""])[0][:300]
            if not isinstance(exc, DriftlineError):  # unexpected: keep the traceback in the log
                log.exception("attribution_drift for %s (model %s) failed", self.model_config.name, path)
                why = f"{type(exc).__name__}: {why}" if why else type(exc).__name__
            message = why if path in why else f"model {path}: {why}"
            return CheckResult(check=self.name, status="error", details={"error": message, "model_path": path},
                               **context.result_context)

    def _run(self, context) -> CheckResult:
        c = self.config
        model = self._model(context.runner.config.base_dir)
        label = self._label()
        columns = list(model.features) + ([label] if label else [])
        reference, spec, background = self._baseline(context, model, columns)
        source = context.serving_source()
        frame = self._sample(source.batches(columns, context.start, context.end), columns, source.schema)
        bad = tuple(f"{path}: {why}" for path, why in source.report.bad_files)
        if frame.empty:
            return CheckResult(check=self.name, status="insufficient_data",
                               details={"error": "no rows in the window"}, **context.result_context)
        frame, missing = self._frame(model, frame)
        current, values, _ = attribute(model, frame, label, spec, c.n_repeats, c.seed, shap_rows=c.shap_rows,
                                       background=None if background is None else background.frame)
        kinds = {f: self.model_config.feature_kinds.get(f, "categorical" if f in model.categorical else "numeric")
                 for f in model.features}
        result = compare(reference, current, kinds, self._thresholds(), **context.result_context)
        if missing:
            features = tuple(replace(f, status="error", message=f"column '{f.feature}' is missing (explained as null)")
                             if f.feature in missing else f for f in result.features)
            status = "alert" if result.status == "alert" else worst_status(f.status for f in features)
            result = result.with_updates(features=features, status=status)
        details = {**result.details, "sample_size": c.sample_size, "label": label}
        if background is not None:  # which background: equal digests across windows, comparable runs
            details["background"] = background.summary(self._baseline_source())
        result = result.with_updates(details=details, partial=bool(bad), bad_files=bad)
        if c.report and report_wanted(result.status, c.report_on):
            result = self._with_report(context, model, result, values)
        return result

    def _with_report(self, context, model, result: CheckResult, values) -> CheckResult:
        from explain.report import history_from_results, render_explain_report

        path = context.report_path(self.name)
        try:
            history = history_from_results(context.store.results(self.model_config.name, self.name), result)
            title = f"{self.model_config.name} attribution_drift {window_text(result.window_start, result.window_end)}"
            render_explain_report(path, title, result, values, history)
            return result.with_updates(report_path=str(path))
        except Exception as exc:  # a report is a convenience: never lose the result over it
            log.warning("explain report for %s failed: %s", self.model_config.name, exc)
            return result.with_updates(details={**result.details, "report_error": str(exc)[:300]})


@register_check("attribution_drift", params=AttributionDriftConfig, needs=("rows", "model"), preload=("lightgbm", "numba", "matplotlib"),
                exports=("feature_importance",),
                summary="what drives the model (SHAP, permutation importance) vs a baseline")
def attribution_drift_check(model_config, check_config) -> AttributionDriftCheck:
    return AttributionDriftCheck(model_config, check_config)
