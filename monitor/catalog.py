"""The checks this application knows: the built-in modules (each registers its checks with
`core.checks.register_check` on import) and every `driftline.checks` entry point.

Adding a built-in check is one module plus one line in BUILTIN_CHECK_MODULES; an outside
check needs only its entry point.
"""

from __future__ import annotations

import importlib
import threading

from core.checks import REGISTRY, CheckRegistry, CheckSpec

BUILTIN_CHECK_MODULES = (
    "checks.drift_check",   # data_drift, prediction_drift
    "checks.quality",       # data_quality
    "checks.calibration",   # calibration
    "checks.performance",   # performance
    "checks.concept",       # concept_drift
    "explain.check",        # attribution_drift
    "skew.scheduled",       # train_serve_skew
    "checks.rollout",       # rollout
    "checks.exploration",   # exploration
    "checks.slots",         # slot_calibration
    "checks.id_drift",      # id_drift
    "checks.label_maturity",  # label_maturity
    "explain.embedding_check",  # embedding_drift
)
_loaded = threading.Lock()
_done = False


def load_checks() -> CheckRegistry:
    global _done
    with _loaded:
        if not _done:
            for module in BUILTIN_CHECK_MODULES:
                importlib.import_module(module)
            _done = True
    REGISTRY.load_entry_points()
    return REGISTRY


def known_checks() -> list[str]:
    return load_checks().names()


def get_check(name: str) -> CheckSpec:
    """The registry entry for `name`; an unknown name fails listing the known ones."""
    return load_checks().get(name)
