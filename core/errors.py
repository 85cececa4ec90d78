"""One exception root for driftline; only the CLI turns these into exit codes."""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class ConfigError(DriftlineError):
    """A configuration file or value is invalid; the message names the key path."""


class DataSourceError(DriftlineError):
    """A data file, directory or URI cannot be read; the message names it."""


class SchemaError(DriftlineError):
    """A column is missing, retyped or otherwise unusable; the message names it."""


class LimitExceededError(DriftlineError):
    """A configured limit on bytes, rows or distinct values was exceeded."""


class NotFittedError(DriftlineError):
    """A check or model was used before `fit`."""


class MissingDependencyError(DriftlineError):
    """An optional dependency is not installed; the message gives the install hint."""


def require(module: str, extra: str | None = None):
    """Import an optional dependency or raise with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'driftline[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{module} is not installed: {hint}") from exc
