"""`embedding_drift`: a deep ranker's embeddings between two versions, and its x0 on serving windows.

Per categorical field of the ranker (`fields`, default all): with `baseline_model_path`, the
most-served IDs of the window (heavy hitters, bounded memory) are compared between the baseline
version and the current one (explain/embedding_drift.py: aligned cosine shift, norm change, the
IDs that moved most); on every window, each field block of x0 (the cross network's input) of a
uniform window sample is compared with a reference sample against the shift between reference
halves of the same size. One feature row per field (worst of the two); the movers are named in
`details`, never as metric labels.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from core.checks import CheckParams, WindowCheck, register_check
from core.errors import ConfigError
from core.idsketch import HeavyHitters
from core.results import CheckResult, FeatureDrift, MetricPoint, worst_status
from core.settings import Pair


class EmbeddingDriftParams(CheckParams):
    enabled: bool = False
    model_path: str | None = Field(default=None, description="the serving deep ranker (a retrain/ model directory)")
    baseline_model_path: str | None = Field(default=None, description="the version before it; none: x0 only")
    fields: list[str] | None = Field(default=None, description="categorical fields; default: all the model's")
    top_n: int = Field(default=1000, ge=3, description="most-served IDs compared per field")
    mad_k: float = Field(default=6.0, gt=0, description="an ID moved beyond median + k * MAD of the shifts")
    min_shift: float = Field(default=0.05, ge=0, description="... and beyond this cosine shift")
    mover_share: Pair = Field(default=(0.01, 0.03), description="[warn, alert] on the traffic share of movers")
    sample_rows: int = Field(default=20_000, ge=100, description="rows of window and reference turned into x0")
    x0_k: float = Field(default=1.5, gt=0, description="x0 block alerts beyond k x the reference halves' q99")

    def resolve(self, path: str | None, base: Path) -> str | None:
        if path is None or "://" in path or os.path.isabs(path):
            return path
        return str((Path(base) / path).resolve())


class EmbeddingDriftCheck(WindowCheck):
    name = "embedding_drift"

    def __init__(self, model_config, params: EmbeddingDriftParams) -> None:
        if params.enabled and not params.model_path:
            raise ConfigError(f"models.{model_config.name}.checks.embedding_drift.model_path: required")
        self.params = params

    def _load(self, window, path: str):
        from retrain.base import load_model

        resolved = self.params.resolve(path, window.runner.config.base_dir)
        return window.state.get_or_create(("embedding_drift.model", resolved), lambda: load_model(Path(resolved)))

    def run(self, window) -> CheckResult:
        from explain.embedding_drift import ShiftParams, embedding_shift, field_embeddings, x0_of, x0_window_shift

        p = self.params
        model = self._load(window, p.model_path)
        if not hasattr(model, "feature_slices"):
            raise ConfigError(f"embedding_drift.model_path: {p.model_path} is not a deep ranker with embeddings")
        baseline = self._load(window, p.baseline_model_path) if p.baseline_model_path else None
        fields = list(p.fields or model.features.categorical)
        unknown = [f for f in fields if f not in model.features.categorical]
        if unknown:
            raise ConfigError(f"embedding_drift.fields: '{unknown[0]}' is not a categorical feature of the model")
        columns = list(model.features.names)
        window_rows = window.sample(columns, p.sample_rows)
        reference_rows = window.reference_sample(columns, p.sample_rows)
        details, features, metrics = {"fields": {}}, [], []
        traffic = self._traffic(window, fields) if baseline is not None else {}
        x0 = {}
        if window_rows.num_rows and reference_rows.num_rows:
            x0 = x0_window_shift(x0_of(model, reference_rows.to_pandas()), x0_of(model, window_rows.to_pandas()),
                                 {f: model.feature_slices[f] for f in fields}, k=p.x0_k)
        shift_params = ShiftParams(p.top_n, 10, p.mad_k, p.min_shift, tuple(p.mover_share))
        for field in fields:
            entry, statuses = {}, []
            if baseline is not None:
                shift = embedding_shift(*field_embeddings(baseline, field), *field_embeddings(model, field),
                                        traffic[field], shift_params)
                entry["versions"] = shift
                statuses.append(shift["status"])
                if shift["status"] != "insufficient_data":
                    labels = (("feature", field),)
                    metrics += [MetricPoint("embedding_moved_traffic_share", shift["moved_traffic_share"], labels,
                                            "Traffic share of the most-served IDs whose embedding moved (vs baseline)."),
                                MetricPoint("embedding_weighted_cosine_shift", shift["weighted_cosine_shift"], labels,
                                            "Traffic-weighted cosine shift of aligned embeddings (vs baseline).")]
            if field in x0:
                entry["x0"] = x0[field]
                statuses.append(x0[field]["status"])
                metrics.append(MetricPoint("embedding_x0_centroid_shift", x0[field]["centroid_shift"],
                                           (("feature", field),),
                                           "Shift of x0's field block mean, in reference-spread units."))
            details["fields"][field] = entry
            versions = entry.get("versions", {})
            features.append(FeatureDrift(
                field, "embedding", "moved_traffic_share" if versions else "x0_centroid_shift",
                versions.get("moved_traffic_share", entry.get("x0", {}).get("centroid_shift")),
                p.mover_share[1] if versions else None, worst_status(statuses),
                reference_rows.num_rows, window_rows.num_rows,
                reasons=tuple(m["id"] for m in versions.get("top_movers", [])[:5]
                              if versions.get("status") in ("warn", "alert"))))
        details.update(model_path=p.model_path, baseline_model_path=p.baseline_model_path)
        return CheckResult(check=self.name, status=worst_status(f.status for f in features), features=tuple(features),
                           reference_rows=reference_rows.num_rows, current_rows=window_rows.num_rows,
                           details=details, metrics=tuple(metrics), **window.result_context)

    def _traffic(self, window, fields: list[str]) -> dict[str, dict[str, float]]:
        """Per field, the window's most-served IDs and their rows (heavy hitters: bounded memory)."""
        capacity = 10 * self.params.top_n
        heavy = {f: HeavyHitters(capacity) for f in fields}
        source = window.serving_source()
        present = [f for f in fields if f in source.schema.names]
        for batch in source.batches(present, window.start, window.end):
            for f in present:
                heavy[f] = heavy[f].update(batch.column(f))
        return {f: {k: float(c) for k, c in heavy[f].top(capacity)} for f in fields}


DECLARED_METRICS = ("embedding_moved_traffic_share", "embedding_weighted_cosine_shift", "embedding_x0_centroid_shift")


@register_check("embedding_drift", params=EmbeddingDriftParams, needs=("rows", "model"), preload=("torch",),
                exports=DECLARED_METRICS,
                summary="a deep ranker's ID embeddings vs the previous version, and its x0 on serving windows")
def embedding_drift_check(model_config, params: EmbeddingDriftParams) -> EmbeddingDriftCheck:
    return EmbeddingDriftCheck(model_config, params)
