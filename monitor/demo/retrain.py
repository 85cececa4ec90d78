"""The demo's retraining act (called by `driftline demo` after the monitoring backfill).

The registry starts from the world's own model (version 1, in production). A LightGBM
candidate retrained on the recent window passes the gates and is promoted; a candidate
deliberately trained on shuffled labels is registered, rejected, and the reasons are
reported. A registry that already holds versions of the model (an earlier demo run, or the
user's own retrains, promotions and rollbacks) is kept as it is: the act is not replayed, and
the demo says so (delete the registry directory to replay it).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
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
    "training_window": "21d",   # the 14 history days and the 7 serving days
    "holdout": "1d",            # the last serving day (repriced), scored by both models
    "max_rows": 400_000,        # bounds the demo's time on 2 cores
    # One thread: the same model as with two, and no OpenMP busy-waiting on a shared machine.
    "params": {"num_threads": 1, "num_boost_round": 200},
    # Tolerances sized for a one-day holdout of ~20k rows (~400 clicks): a segment's AUC
    # moves by ~0.02 between equally good models on that many clicks.
    "gates": {"protected_segments": ["os"], "max_auc_drop": 0.01, "max_log_loss_increase": 0.01,
              "segment_max_auc_drop": 0.04, "segment_max_log_loss_increase": 0.03},
}


# Incident kinds whose rows are bad training data: served values that were wrong (skew), labels
# drawn from a passing label model (concept drift) or a decayed click rate (calibration). A
# shift of the inputs (data_drift: a device mix, new prices) leaves valid examples, kept: the
# last day, repriced, is the holdout both models are scored on.
BAD_DATA_KINDS = ("skew", "concept_drift", "calibration")


def retrain_config(world: World) -> dict:
    """The demo's retraining policy; the days of bad data are left out of training."""
    days = [datetime.fromisoformat(i["day"]) for i in world.incidents() if i["kind"] in BAD_DATA_KINDS]
    return dict(RETRAIN_CONFIG, exclude=[f"{d:%Y-%m-%d}/{d + timedelta(days=1):%Y-%m-%d}" for d in days])


def shuffled_labels(data: Dataset) -> Dataset:
    """The damage: labels permuted, so the candidate learns nothing real."""
    frame = data.frame.copy()
    rng = np.random.default_rng(0)
    for label in data.labels:
        frame[label] = rng.permutation(frame[label].to_numpy())
    return Dataset(frame, data.features, data.labels)


def retrain_demo(world: World, config: Config, progress: Callable[[str], None],
                 previous: dict | None = None) -> dict:
    from retrain.lightgbm_trainer import LightGBMModel
    from retrain.pipeline import import_model, registry_for, run_retrain

    model = config.models[0]
    registry = registry_for(config, model)
    versions = registry.versions(model.name) if (registry.root / model.name).exists() else []
    if versions:
        kept = {"registry": _shown(registry.root, config.base_dir), "kept": True,
                "versions": versions, "production": registry.production(model.name)}
        if previous and not previous.get("kept"):
            kept["first_run"] = previous  # what the act did when it ran
        elif previous and previous.get("first_run"):
            kept["first_run"] = previous["first_run"]
        progress(f"retrain: registry {kept['registry']}/{model.name} kept as it is (versions "
                 f"{', '.join(map(str, versions))}; production v{kept['production']}); delete it to replay "
                 "the retraining act")
        return kept
    shutil.rmtree(registry.root / model.name, ignore_errors=True)  # a half-written one (no versions)
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


def _shown(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def summary_line(section: dict) -> str:
    """One line for the demo's printed summary."""
    from rich.markup import escape

    if section.get("kept"):
        return (f"retrain: registry {escape(section['registry'])} kept as it is (versions "
                f"{', '.join(map(str, section['versions']))}, production v{section['production']}); "
                "delete it to replay the retraining act")

    good, bad = section["candidate"], section["damaged"]
    verdict = ("[green]promoted[/]" if good["promoted"]
               else "[red]not promoted[/] (" + escape("; ".join(good["reasons"])) + ")")
    damaged = "[green]rejected[/]" if not bad["passed"] else "[red]passed (unexpected)[/]"
    why = f": {escape(bad['reasons'][0])}" if bad["reasons"] else ""
    return (f"retrain: v{good['version']} ({good['trainer']}, holdout AUC {good['auc']:.3f} vs production "
            f"{good['production_auc']:.3f}) {verdict}; damaged v{bad['version']} (shuffled labels) {damaged}{why}")
