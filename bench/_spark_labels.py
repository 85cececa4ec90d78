"""The label part of bench.spark: a scored, labelled window (score, click, os, offer_id, slot) and
its scored reference, and the three label checks (calibration, performance, concept_drift) run
on one engine, as the runner runs them: one label profile of the window serves all three.

Modes: `profile` (the label profile, computed by the engine: on Spark on the executors) and
`rows` (what the label checks did before: the window's label columns brought to the driver,
as `SparkSource.batches` did, then judged there). In both, the driver counts the serving rows
that reach it (DataFrame.collect/toArrow/toPandas on frames that read the window's file).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from bench._parquet import write_chunks
from bench.drift import DATA_DIR

SEGMENTS = ("os", "offer_id", "slot")
REFERENCE_ROWS = 1_000_000
CHUNK_ROWS = 1_000_000
_OSES = np.array(["android", "ios", "windows"])
_OFFERS = np.array([f"offer-{i:02d}" for i in range(40)])


def _chunk(rows: int, seed: int, index: int, decay: float) -> pa.Table:
    rng = np.random.default_rng([seed, index])
    effect = np.random.default_rng(99).normal(0.0, 0.3, len(_OFFERS))
    offer = rng.integers(0, len(_OFFERS), rows)
    os_ = rng.choice(3, rows, p=[0.45, 0.35, 0.20])
    slot = rng.integers(1, 5, rows)
    logit = -3.7 + effect[offer] + 0.3 * (os_ == 1) - 0.25 * (slot - 1) + rng.normal(0.0, 0.8, rows)
    score = 1.0 / (1.0 + np.exp(-logit))
    click = (rng.random(rows) < score * np.where(os_ == 2, decay, 1.0)).astype(np.int8)
    return pa.table({"score": score, "click": click, "os": _OSES[os_], "offer_id": _OFFERS[offer],
                     "slot": slot.astype(np.int32)})


def _write(name: str, rows: int, seed: int, decay: float):
    chunks = (_chunk(min(CHUNK_ROWS, rows - start), seed, i, decay) for i, start in enumerate(range(0, rows, CHUNK_ROWS)))
    return write_chunks(DATA_DIR / name, chunks, CHUNK_ROWS)


def label_datasets(rows: int):
    """(scored reference, window): the window's windows-OS users click 20% less (a calibration decay)."""
    return _write(f"labels_ref_v1_{REFERENCE_ROWS}.parquet", REFERENCE_ROWS, 7, 1.0), \
        _write(f"labels_cur_v1_{rows}.parquet", rows, 8, 0.8)


def _guard(watched: str) -> dict:
    """Count serving rows that reach the driver (partial profiles, a `profile` column, are not rows)."""
    try:
        from pyspark.sql.classic.dataframe import DataFrame
    except ImportError:
        from pyspark.sql import DataFrame
    state = {"rows": 0, "partials": 0}
    for name in ("collect", "toArrow", "toPandas"):
        original = getattr(DataFrame, name)

        def wrapped(self, *args, _original=original, **kwargs):
            out = _original(self, *args, **kwargs)
            try:
                watched_frame = any(watched in f for f in self.inputFiles())
            except Exception:
                watched_frame = False
            if watched_frame:
                key = "partials" if "profile" in self.columns else "rows"
                state[key] += out.num_rows if hasattr(out, "num_rows") else len(out)
            return out

        setattr(DataFrame, name, wrapped)
    return state


def run_label_checks(engine, engine_name: str, reference_path: str, current_path: str, mode: str) -> dict:
    """Fit the three checks on the scored reference, then judge the window; phases and results."""
    from checks.calibration import CalibrationCheck
    from checks.concept import ConceptCheck
    from checks.labelled import read_rows
    from checks.performance import PerformanceCheck
    from core.label_profile import LabelSpec, check_columns
    from core.sources import Source

    phases: dict[str, float] = {}
    started = time.perf_counter()
    ref_source = Source(reference_path)
    reference = read_rows(ref_source.batches(["score", "click", *SEGMENTS]), ref_source.schema, "score", "click",
                          SEGMENTS, where=reference_path)
    checks = {"calibration": CalibrationCheck(segments=SEGMENTS), "performance": PerformanceCheck(segments=SEGMENTS),
              "concept_drift": ConceptCheck(segments=SEGMENTS)}
    fitted = {name: check.fit(reference) for name, check in checks.items()}
    phases["label checks: fit on the scored reference (1M rows)"] = time.perf_counter() - started
    guard = _guard(current_path) if engine_name == "spark" else {"rows": None, "partials": None}
    source = engine.source(current_path) if engine_name == "spark" else Source(current_path)
    spec = LabelSpec("score", "click", SEGMENTS, checks["concept_drift"].pairs())
    started = time.perf_counter()
    if mode == "rows":  # before: the window's label columns on the driver, then judged there
        current = read_rows(source.batches(spec.columns), source.schema, "score", "click", SEGMENTS,
                            where=current_path)
        phases["label rows to the driver (read + collect)"] = time.perf_counter() - started
    else:
        check_columns(source.schema, spec, current_path)
        if engine_name == "spark":
            current = engine.label_profile(source, spec, where=current_path).validate(current_path)
        else:
            from core.engines import LocalEngine

            current = LocalEngine().label_profile(source, spec, where=current_path).validate(current_path)
        phases["label profile (read + kernel + merge)"] = time.perf_counter() - started
    started = time.perf_counter()
    results = {name: f.evaluate(current) for name, f in fitted.items()}
    phases["label checks: evaluate"] = time.perf_counter() - started
    summary = {name: {"status": r.status, "current_rows": r.current_rows} for name, r in results.items()}
    perf = results["performance"].details["overall"]
    summary["performance"].update(auc=perf["auc"], auc_bound=perf.get("auc_bound"))
    summary["calibration"]["ratio"] = results["calibration"].details["overall"]["calibration_ratio"]
    summary["calibration"]["segments_alert"] = results["calibration"].details["segments_alert"]
    return {"phases": phases, "results": summary, "serving_rows_to_driver": guard["rows"],
            "partial_profiles_to_driver": guard["partials"]}
