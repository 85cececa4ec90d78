"""Prediction skew: replay the logged serving features through the model artifact offline
and compare with the logged score, per logged model version.

A wrong model version live, or a transform that differs between the serving stack and
the artifact, shows as replayed scores that differ from the logged ones even when every
feature looks fine. The model is anything that scores a batch (`ModelAdapter`): a
LightGBM text model (features = `booster.feature_name()`; text columns go in as pandas
categoricals, which LightGBM maps with the categories stored in the model file), the
same with a vocabulary that codes categoricals as positions (the demo world's model,
`world_adapter`), and any model saved through the trainer interface (`retrain/`: the
LightGBM trainer now, the deep rankers as they land). No pickle anywhere.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from core.errors import DriftlineError, SchemaError
from core.models import load_booster, load_vocabulary  # noqa: F401  (re-exported)
from skew.results import PredictionSkew, VersionSkew, grade, rate

DEFAULT_TOLERANCE = 1e-6
DEFAULT_THRESHOLDS = (0.001, 0.01)  # mismatch rate [warn, alert]


@runtime_checkable
class ModelAdapter(Protocol):
    """Scores a batch of logged rows (pandas DataFrame or Arrow batch/table) holding `features`."""

    features: tuple[str, ...]

    def __call__(self, batch) -> np.ndarray: ...


def to_frame(batch):
    import pandas as pd

    if isinstance(batch, pd.DataFrame):
        return batch
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    return batch.to_pandas()


class LightGBMAdapter:
    """A LightGBM booster; categoricals coded by `vocabulary` positions when given, else by the
    pandas categories stored in the model file (LightGBM's own mapping)."""

    def __init__(self, booster, vocabulary: Mapping[str, list[str]] | None = None, threads: int = 2,
                 name: str = "lightgbm") -> None:
        self.booster = booster
        self.vocabulary = dict(vocabulary or {})
        self.threads = threads
        self.name = name
        self.features = tuple(booster.feature_name())

    def __call__(self, batch) -> np.ndarray:
        import pandas as pd

        frame = to_frame(batch)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"column '{missing[0]}' (a model feature) is missing in the serving data")
        if self.vocabulary:
            return self.booster.predict(self._matrix(frame), num_threads=self.threads)
        columns = {}
        for name in self.features:
            series = frame[name]
            if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(series.dtype):
                columns[name] = series.astype(np.float64) if pd.api.types.is_bool_dtype(series.dtype) else series
            elif self.booster.pandas_categorical:
                columns[name] = series.astype("category")
            else:
                raise SchemaError(f"column '{name}' holds text but the model stores no categories; "
                                  "give a vocabulary {feature: [category, ...]}")
        try:
            return self.booster.predict(pd.DataFrame(columns), num_threads=self.threads)
        except ValueError as exc:  # LightGBM: categorical columns do not match the model's
            raise SchemaError(f"the serving columns do not match the model's categorical features ({exc})") from exc

    def _matrix(self, frame) -> np.ndarray:
        """Numerics as floats (null -> NaN), categoricals as vocabulary positions (unknown -> NaN)."""
        import pandas as pd

        columns = []
        for name in self.features:
            series = frame[name]
            if name in self.vocabulary:
                codes = pd.Categorical(series.astype("string"), categories=self.vocabulary[name]).codes
                columns.append(np.where(codes < 0, np.nan, codes.astype(np.float64)))
            else:
                try:
                    columns.append(pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan))
                except (TypeError, ValueError) as exc:
                    raise SchemaError(f"column '{name}' is not numeric and has no vocabulary") from exc
        return np.column_stack(columns)


class TrainedModelAdapter:
    """A model behind the trainer interface (`retrain.base.TrainedModel`: LightGBM, DCN-V2, ...):
    it encodes its own inputs, so replay is its `predict` on the logged rows."""

    def __init__(self, model) -> None:
        self.model = model
        self.features = tuple(model.features)
        self.name = getattr(model, "name", type(model).__name__)

    def __call__(self, batch) -> np.ndarray:
        frame = to_frame(batch)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"column '{missing[0]}' (a model feature) is missing in the serving data")
        return np.asarray(self.model.predict(frame), dtype=np.float64)


def world_adapter(root: str | Path) -> LightGBMAdapter:
    """The demo world's model: its LightGBM file coded with the vocabulary in world.json."""
    root = Path(root)
    return LightGBMAdapter(load_booster(root / "model" / "model.txt"), load_vocabulary(root / "world.json"),
                           name="demo-world")


def load_adapter(path: str | Path, vocabulary: str | Path | None = None) -> ModelAdapter:
    """A LightGBM text model file, a saved trainer model (a directory with model.json), or a
    demo world directory (holding world.json)."""
    path = Path(path)
    if path.is_dir() and (path / "model.json").is_file():
        from retrain.base import load_model

        return TrainedModelAdapter(load_model(path))
    if path.is_dir() and (path / "world.json").is_file() and vocabulary is None:
        return world_adapter(path)
    vocab = load_vocabulary(vocabulary) if vocabulary else None
    return LightGBMAdapter(load_booster(path), vocab, name=path.name)


@dataclass
class Tally:
    rows: int = 0
    compared: int = 0
    mismatches: int = 0
    abs_sum: float = 0.0
    abs_max: float = 0.0
    not_compared: int = 0  # scored rows whose logged or replayed score is null, NaN or infinite
    message: str | None = None
    top: list = field(default_factory=list)  # heap of (abs diff, counter, example)


def prediction_skew(batches: Iterable[pa.RecordBatch], adapters: Mapping[str | None, ModelAdapter],
                    score_column: str, version_column: str | None = None, key_column: str | None = None,
                    tolerance: float = DEFAULT_TOLERANCE, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
                    max_examples: int = 5, min_samples: int = 1) -> PredictionSkew:
    """Replay every batch through the adapter of its rows' logged version (key None: any version)."""
    tallies: dict[Any, Tally] = {}
    tally_batches(batches, adapters, score_column, version_column, key_column, tolerance, max_examples, tallies)
    return summarise(tallies, score_column, tolerance, thresholds, max_examples, min_samples)


def tally_batches(batches: Iterable[pa.RecordBatch], adapters: Mapping[str | None, ModelAdapter], score_column: str,
                  version_column: str | None, key_column: str | None, tolerance: float, max_examples: int,
                  tallies: dict[Any, Tally], counter: int = 0) -> None:
    """Add the batches' replay comparisons to `tallies` (per logged version); `counter` orders ties."""
    for batch in batches:
        if score_column not in batch.schema.names:
            raise SchemaError(f"score column '{score_column}' is missing in the serving data")
        frame = to_frame(batch)
        versions = frame[version_column].astype(object).where(frame[version_column].notna(), None) \
            if version_column and version_column in frame.columns else None
        groups = [(None, frame)] if versions is None else list(frame.groupby(versions.fillna("<null>"), sort=True))
        for version, rows in groups:
            version = None if version == "<null>" else version
            tally = tallies.setdefault(version, Tally())
            tally.rows += len(rows)
            adapter = adapters.get(version, adapters.get(None))
            if adapter is None:
                tally.message = "no model artifact given for this version"
                continue
            try:
                replayed = np.asarray(adapter(rows), dtype=np.float64)
            except DriftlineError as exc:
                tally.message = str(exc)
                continue
            logged = rows[score_column].to_numpy(dtype=np.float64, na_value=np.nan)
            known = np.isfinite(logged) & np.isfinite(replayed)
            diff = np.abs(logged[known] - replayed[known])
            tally.compared += int(known.sum())
            tally.not_compared += int(known.size - known.sum())
            tally.mismatches += int(np.count_nonzero(diff > tolerance))
            tally.abs_sum += float(diff.sum())
            tally.abs_max = max(tally.abs_max, float(diff.max(initial=0.0)))
            if max_examples and diff.size:
                keys = rows[key_column].to_numpy()[known] if key_column and key_column in rows.columns else None
                for index in np.argsort(-diff, kind="stable")[:max_examples]:
                    if diff[index] <= tolerance:
                        break
                    counter += 1
                    example = {"key": _plain(keys[index]) if keys is not None else None, "model_version": version,
                               "logged": float(logged[known][index]), "replayed": float(replayed[known][index])}
                    item = (float(diff[index]), -counter, example)
                    if len(tally.top) < max_examples:
                        heapq.heappush(tally.top, item)
                    else:
                        heapq.heappushpop(tally.top, item)


def _graded(compared: int, mismatches: int, not_compared: int, thresholds, min_samples: int) -> str:
    """Mismatches and unscorable rows each graded on their share; a clean handful is no evidence."""
    worst = max((grade(rate(mismatches, compared), thresholds),
                 grade(rate(not_compared, compared + not_compared), thresholds)), key=_SEVERITY.index)
    if worst == "ok" and compared < min_samples:
        return "insufficient_data"
    return worst


_SEVERITY = ["ok", "warn", "alert"]


def summarise(tallies, score_column, tolerance, thresholds, max_examples, min_samples: int = 1) -> PredictionSkew:
    by_version = []
    for version in sorted(tallies, key=lambda v: (v is None, str(v))):
        t = tallies[version]
        mismatch_rate = rate(t.mismatches, t.compared)
        if t.compared or t.not_compared:
            status = _graded(t.compared, t.mismatches, t.not_compared, thresholds, min_samples)
        else:
            status = "error" if t.message and "artifact" not in t.message else "insufficient_data"
        by_version.append(VersionSkew(
            model_version=version, rows=t.rows, compared=t.compared, mismatches=t.mismatches,
            mismatch_rate=mismatch_rate, mean_abs_diff=t.abs_sum / t.compared if t.compared else None,
            max_abs_diff=t.abs_max if t.compared else None, status=status, message=t.message,
            not_compared=t.not_compared))
    compared = sum(t.compared for t in tallies.values())
    not_compared = sum(t.not_compared for t in tallies.values())
    mismatches = sum(t.mismatches for t in tallies.values())
    mismatch_rate = rate(mismatches, compared)
    statuses = [v.status for v in by_version]
    status = "insufficient_data" if not (compared or not_compared) else \
        _graded(compared, mismatches, not_compared, thresholds, min_samples)
    if "error" in statuses:
        status = "error" if status in ("ok", "insufficient_data") else status
    for v in by_version:  # one bad version is enough to flag, however many rows the others have
        if v.status == "alert" or (v.status == "warn" and status == "ok"):
            status = v.status
    examples = sorted((item for t in tallies.values() for item in t.top), reverse=True)[:max_examples]
    reasons = tuple(f"model version {v.model_version}: {v.mismatch_rate:.2%} of scores differ by more than "
                    f"{tolerance:g}" for v in by_version if v.status in ("warn", "alert"))
    reasons += tuple(f"model version {v.model_version}: {v.message}" for v in by_version if v.message)
    reasons += tuple(f"model version {v.model_version}: {v.not_compared:,} of {v.compared + v.not_compared:,} "
                     "scores are null, NaN or infinite (logged or replayed) and were not compared"
                     for v in by_version if v.not_compared)
    if status == "insufficient_data" and compared:
        reasons += (f"only {compared} scores compared (fewer than {min_samples})",)
    return PredictionSkew(
        score_column=score_column, rows=sum(t.rows for t in tallies.values()), compared=compared,
        mismatches=mismatches, mismatch_rate=mismatch_rate,
        mean_abs_diff=sum(t.abs_sum for t in tallies.values()) / compared if compared else None,
        max_abs_diff=max((t.abs_max for t in tallies.values() if t.compared), default=None),
        tolerance=tolerance, by_version=tuple(by_version), examples=tuple(e for _, _, e in examples),
        status=status, reasons=reasons, not_compared=not_compared)


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
