"""The metric points a check result declares, derived from the result's details in one place.

Built-in checks call `with_points(result)` before returning, so the stored result carries its
points (core.results.MetricPoint) and the exporter emits exactly those. For results stored
before points existed, the exporter reads the same shapes from `details` with the same
functions, so old and new rows export alike. The shapes read:

- a value `M` (`calibration_ratio`, `ece`, `auc`, `normalized_entropy` — also read as `ne` —,
  `prediction_skew_ratio`) at `details[M]` or `details["overall"][M]` (segment=""), in
  `details["segments"]` as a list of `{"segment": NAME, M: value}` or `{"segment": COLUMN,
  "value": VALUE, ...}` (segment=NAME or COLUMN=VALUE), and per prediction column under
  `details["predictions"][COLUMN]` (prediction=COLUMN); a dict `details["prediction"]` with
  `mismatch_rate` gives `prediction_skew_ratio` (skew/results.py);
- skew: `details["value_skew"]` as `{feature: {"value_mismatch_rate": r}}`,
  `details["skew_mismatch_ratio"]` / `details["value_mismatch_rate"]` as `{feature: ratio}`, or
  `details["features"]` as a list of `{"feature", "value_mismatch_rate"}`;
- importance: `details["importance"]` as a list of `{"feature", "method", "importance"}`, or
  `{feature: value}` / `{method: {feature: value}}` under `feature_importance` / `importances`.
"""

from __future__ import annotations

import math
from typing import Iterable

from core.results import CheckResult, MetricPoint

VALUE_METRICS = {
    "calibration_ratio": "Predicted over observed positives (sum p / sum y) of the latest window.",
    "ece": "Expected calibration error of the latest window.",
    "auc": "ROC AUC of the latest window.",
    "normalized_entropy": "Log loss over the entropy of the base rate, latest window.",
    "prediction_skew_ratio": "Share of replayed predictions that differ from the logged score.",
}
ALIASES = {"ne": "normalized_entropy"}  # the key checks/performance.py uses
SKEW_HELP = "Share of joined examples whose feature value differs."
IMPORTANCE_HELP = "Global feature importance in the latest window."


def number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def extract_values(details: dict) -> Iterable[tuple[str, str, str, float]]:
    """(metric, prediction, segment, value) from a result's details (see the module docstring)."""

    def values(source: dict):
        for key, value in source.items():
            metric = ALIASES.get(key, key)
            if metric in VALUE_METRICS and number(value) is not None:
                yield metric, float(value)

    def from_block(block: dict, prediction: str):
        for source in (block, block.get("overall") if isinstance(block.get("overall"), dict) else {}):
            for metric, value in values(source):
                yield metric, prediction, "", value
        segments = block.get("segments")
        if isinstance(segments, list):
            for item in segments:
                if isinstance(item, dict) and item.get("segment") is not None:
                    name = str(item["segment"])
                    if item.get("value") is not None:  # {"segment": "os", "value": "ios"}
                        name = f"{name}={item['value']}"
                    for metric, value in values(item):
                        yield metric, prediction, name, value

    if not isinstance(details, dict):
        return
    prediction = details.get("prediction")
    yield from from_block(details, prediction if isinstance(prediction, str) else "")
    if isinstance(prediction, dict) and number(prediction.get("mismatch_rate")) is not None:
        yield "prediction_skew_ratio", str(prediction.get("score_column") or ""), "", float(prediction["mismatch_rate"])
    per_column = details.get("predictions")
    if isinstance(per_column, dict):
        for column, block in per_column.items():
            if isinstance(block, dict):
                yield from from_block(block, str(column))


def extract_skew(details: dict) -> Iterable[tuple[str, float]]:
    for key in ("skew_mismatch_ratio", "value_mismatch_rate"):
        mapping = details.get(key)
        if isinstance(mapping, dict):
            for feature, value in mapping.items():
                if number(value) is not None:
                    yield str(feature), float(value)
    per_feature = details.get("value_skew")  # skew/results.py: {feature: {"value_mismatch_rate", ...}}
    if isinstance(per_feature, dict):
        for feature, block in per_feature.items():
            if isinstance(block, dict) and number(block.get("value_mismatch_rate")) is not None:
                yield str(feature), float(block["value_mismatch_rate"])
    items = details.get("features")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and "feature" in item:
                value = item.get("value_mismatch_rate", item.get("mismatch_ratio"))
                if number(value) is not None:
                    yield str(item["feature"]), float(value)


def extract_importance(details: dict) -> Iterable[tuple[str, str, float]]:
    default_method = str(details.get("importance_method") or details.get("method") or "importance")
    for key in ("feature_importance", "importances", "importance"):
        block = details.get(key)
        if isinstance(block, dict):
            for name, value in block.items():
                if isinstance(value, dict):  # {method: {feature: value}}
                    for feature, inner in value.items():
                        if number(inner) is not None:
                            yield str(feature), str(name), float(inner)
                elif number(value) is not None:
                    yield str(name), default_method, float(value)
        elif isinstance(block, list):
            for item in block:
                if isinstance(item, dict) and "feature" in item and number(item.get("importance")) is not None:
                    yield str(item["feature"]), str(item.get("method") or default_method), float(item["importance"])


def points_from_details(details: dict) -> tuple[MetricPoint, ...]:
    """Every metric point the shapes above hold, deduplicated by (name, labels)."""
    points: dict[tuple, MetricPoint] = {}

    def add(name: str, value: float, labels: dict[str, str], help: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        points.setdefault(key, MetricPoint(name, value, key[1], help))

    if not isinstance(details, dict):
        return ()
    for metric, prediction, segment, value in extract_values(details):
        add(metric, value, {"prediction": prediction, "segment": segment}, VALUE_METRICS[metric])
    for feature, value in extract_skew(details):
        add("skew_mismatch_ratio", value, {"feature": feature}, SKEW_HELP)
    for feature, method, value in extract_importance(details):
        add("feature_importance", value, {"feature": feature, "method": method}, IMPORTANCE_HELP)
    return tuple(points.values())


def with_points(result: CheckResult) -> CheckResult:
    """The result with the metric points its details hold declared on it."""
    points = points_from_details(result.details)
    return result.with_updates(metrics=tuple(result.metrics) + points) if points else result
