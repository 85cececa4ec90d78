"""Engines: where a window's rows are read and profiled.

Computing a profile is a pure function of Arrow record batches (`core.profile`). The
`local` engine streams batches from files through that kernel in this process; the
`spark` engine runs the very same kernel on every partition of a Spark DataFrame
(`mapInArrow`) and merges the partial profiles. Checks only ever see the merged profile,
so they cannot tell the engines apart: for the same data and spec the profiles are the
same (counts exactly, moments to floating-point rounding).

The Spark engine lives in `core.engines.spark` and imports pyspark only when used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.errors import ConfigError
from core.profile import DatasetProfile, ProfileSpec, profile_batches
from core.sources import Limits, Source

ENGINES = ("local", "spark")


class Engine(Protocol):
    """Everything callers need from an engine, so that none branches on its name."""

    name: str

    def source(self, location: str, format: str | None = None, timestamp_column: str | None = None,
               limits: Limits = Limits()):
        """The data at `location` as this engine reads it (a Source, or a SparkSource)."""

    def profile(self, source, columns: list[str], spec: ProfileSpec, start: datetime | None = None,
                end: datetime | None = None) -> DatasetProfile:
        """The merged profile of the window's rows of `columns` (absent columns become feature errors)."""

    def label_profile(self, source, spec, start: datetime | None = None, end: datetime | None = None,
                      where: str = "data"):
        """The merged label profile (core.label_profile.LabelProfile) of the window's rows."""

    def reference(self, source, features: dict[str, str], max_categories: int = 10_000):
        """The reference's spec (from a sample), profile and chunk profiles (core.reference.Reference)."""


class LocalEngine:
    """Today's embedded engine: stream Arrow batches from the files through the kernel."""

    name = "local"

    def source(self, location: str, format: str | None = None, timestamp_column: str | None = None,
               limits: Limits = Limits()) -> Source:
        return Source(location, format, timestamp_column, limits)

    def reference(self, source: Source, features: dict[str, str], max_categories: int = 10_000):
        from core.reference import build_reference

        return build_reference(source, features, max_categories=max_categories)

    def profile(self, source: Source, columns: list[str], spec: ProfileSpec, start: datetime | None = None,
                end: datetime | None = None) -> DatasetProfile:
        if set(columns) == set(spec.names):  # a wide Parquet file is read a group of columns at a time
            from core.wide import profile_source

            return profile_source(source, spec, start, end)
        return profile_batches(source.batches(columns, start, end, dictionary_strings=True), spec)

    def label_profile(self, source: Source, spec, start: datetime | None = None, end: datetime | None = None,
                      where: str = "data"):
        """The window's label profile (core.label_profile), streamed batch by batch."""
        from core.label_profile import profile_label_batches

        return profile_label_batches(source.batches(spec.columns, start, end), spec, where)


@dataclass(frozen=True)
class SparkSettings:
    """How to reach Spark: the master URL and any Spark conf (`spark.*` keys)."""

    master: str = "local[2]"
    app_name: str = "driftline"
    conf: dict[str, str] = field(default_factory=dict)


def get_engine(name: str = "local", spark: SparkSettings | None = None):
    if name == "local":
        return LocalEngine()
    if name == "spark":
        from core.engines.spark import SparkEngine

        return SparkEngine(spark or SparkSettings())
    raise ConfigError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")
