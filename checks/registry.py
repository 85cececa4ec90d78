"""Explicit check registry: built-ins register with a decorator, outside checks through
the `driftline.checks` entry-point group. An unknown name lists the known ones."""

from __future__ import annotations

from typing import Callable

from core.errors import ConfigError

_CHECKS: dict[str, Callable] = {}
_ENTRY_POINT_GROUP = "driftline.checks"


def register_check(name: str):
    def decorator(factory: Callable) -> Callable:
        if name in _CHECKS and _CHECKS[name] is not factory:
            raise ValueError(f"check {name!r} is registered twice")
        _CHECKS[name] = factory
        return factory

    return decorator


def _load_builtins() -> None:
    import checks.drift  # noqa: F401  (registers data_drift, prediction_drift)
    import checks.calibration  # noqa: F401  (calibration)
    import checks.concept  # noqa: F401  (concept_drift)
    import checks.performance  # noqa: F401  (performance)
    import checks.quality  # noqa: F401  (data_quality)
    import explain.check  # noqa: F401  (registers attribution_drift)
    import skew.scheduled  # noqa: F401  (train_serve_skew)


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=_ENTRY_POINT_GROUP):
        if entry.name not in _CHECKS:
            _CHECKS[entry.name] = entry.load()


def known_checks() -> list[str]:
    _load_builtins()
    _load_entry_points()
    return sorted(_CHECKS)


def get_check(name: str) -> Callable:
    names = known_checks()
    if name not in _CHECKS:
        raise ConfigError(f"unknown check {name!r} (known: {', '.join(names)})")
    return _CHECKS[name]
