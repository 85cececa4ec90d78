"""The demo's retraining act (called by `driftline demo` after the monitoring backfill).

The registry starts from the world's own model (version 1, in production). A LightGBM
candidate retrained on the recent window passes the gates and is promoted; a candidate
deliberately trained on shuffled labels is registered, rejected, and the reasons are
reported. The demo registry is rebuilt on every run so the story is the same each time.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np

from monitor.config import Config
from monitor.demo.world import World
from retrain.base import Dataset, FeatureSet

# The demo world's retraining policy (goes into the generated driftline.yaml).
RETRAIN_CONFIG = {
    "trainer": "lightgbm",
    "registry": "registry",
    "sources": ["reference", "serving"],
    "training_window": "14d",   # the last 7 history days and the 7 serving days
    "holdout": "1d",            # the last serving day, scored by both models
    "max_rows": 150_000,        # a uniform sample keeps the demo quick on 2 cores
    "params": {"num_threads": 2, "num_boost_round": 200},
    "gates": {"protected_segments": ["os"]},
}


def shuffled_labels(data: Dataset) -> Dataset:
    """The damage: labels permuted, so the candidate learns nothing real."""
    frame = data.frame.copy()
    rng = np.random.default_rng(0)
    for label in data.labels:
        frame[label] = rng.permutation(frame[label].to_numpy())
    return Dataset(frame, data.features, data.labels)


def retrain_demo(world: World, config: Config, progress: Callable[[str], None]) -> dict:
    from retrain.lightgbm_trainer import LightGBMModel
    from retrain.pipeline import import_model, registry_for, run_retrain

    model = config.models[0]
    registry = registry_for(config, model)
    shutil.rmtree(registry.root / model.name, ignore_errors=True)
    manifest = world.manifest()
    features = FeatureSet(tuple(manifest["numeric_features"]), tuple(manifest["categorical_features"]))
    current = LightGBMModel.from_file(world.model_path, features, manifest["vocabulary"], ("click",))
    first = import_model(registry, model.name, current, {"data_window": {"source": "the demo world's history"},
                                                         "model_version": manifest["model_version"]})
    registry.promote(model.name, first, reason="the model serving in the demo world")
    end = world.serving_start + timedelta(days=world.serving_days)
    window = (end - model.retrain.training_window, end)
    log = lambda message: progress(f"retrain: {message}")  # noqa: E731
    good = run_retrain(config, model.name, window=window, log=log, trigger="demo")
    bad = run_retrain(config, model.name, window=window, log=log, trigger="demo (shuffled labels)",
                      prepare=shuffled_labels)

    def brief(result) -> dict:
        return {"version": result.version, "trainer": result.trainer, "passed": result.passed,
                "promoted": result.promoted, "reasons": list(result.reasons),
                "auc": result.metrics["auc"], "log_loss": result.metrics["log_loss"],
                "calibration_ratio": result.metrics["calibration_ratio"],
                "production_auc": (result.production_metrics or {}).get("auc"),
                "report": str(Path(result.report_html).relative_to(config.base_dir))}

    return {"registry": str(registry.root.relative_to(config.base_dir)), "imported_version": first,
            "window": good.window, "candidate": brief(good), "damaged": brief(bad),
            "production": registry.production(model.name)}


def summary_line(section: dict) -> str:
    """One line for the demo's printed summary."""
    good, bad = section["candidate"], section["damaged"]
    verdict = "[green]promoted[/]" if good["promoted"] else "[red]not promoted[/] (" + "; ".join(good["reasons"]) + ")"
    damaged = "[green]rejected[/]" if not bad["passed"] else "[red]passed (unexpected)[/]"
    why = f": {bad['reasons'][0]}" if bad["reasons"] else ""
    return (f"retrain: v{good['version']} ({good['trainer']}, holdout AUC {good['auc']:.3f} vs production "
            f"{good['production_auc']:.3f}) {verdict}; damaged v{bad['version']} (shuffled labels) {damaged}{why}")
