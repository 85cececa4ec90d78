"""The `spark` engine: the profile kernel on a Spark cluster (or `local[N]`).

What runs where: Spark lists and reads the files, applies the window predicate and runs
the kernel on each partition (`mapInArrow`); only partial profiles (O(bins × features)
each) leave the executors, and they are merged on the driver or in a tree reduce. The
checks then run on the merged profile in this process, unchanged. Skew (the key join and
the prediction replay) and data quality (Great Expectations' Spark datasource) have Spark
paths of their own in skew/ and checks/.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from core.engines import SparkSettings
from core.engines.spark.profile import SparkTimings, profile_frame
from core.engines.spark.session import spark_session
from core.engines.spark.source import SparkSource, sampled_rows
from core.profile import DatasetProfile, FeatureSpec, ProfileSpec, build_spec, empty_profile
from core.sources import Limits

__all__ = ["SparkEngine", "SparkSource", "SparkTimings"]


class SparkEngine:
    name = "spark"

    def __init__(self, settings: SparkSettings = SparkSettings()) -> None:
        self.settings = settings
        self.timings = SparkTimings()  # of the last profile job

    @property
    def spark(self):
        return spark_session(self.settings.master, self.settings.app_name, self.settings.conf)

    def source(self, location: str, format: str | None = None, timestamp_column: str | None = None,
               limits: Limits = Limits()) -> SparkSource:
        return SparkSource(self.spark, location, format, timestamp_column, limits)

    def profile(self, source: SparkSource, columns: list[str], spec: ProfileSpec, start: datetime | None = None,
                end: datetime | None = None) -> DatasetProfile:
        self.timings = SparkTimings()
        profiles = source.run(lambda frame: profile_frame(frame, spec, timings=self.timings,
                                                          max_rows=source.limits.max_rows, location=source.location),
                              columns, start, end)
        source.count_rows(profiles[0].rows)
        return profiles[0]

    def label_profile(self, source: SparkSource, spec, start: datetime | None = None, end: datetime | None = None,
                      where: str = "data"):
        """The window's label profile (core.label_profile), computed on the executors: no rows leave them."""
        from core.engines.spark.label_profile import label_profile_frame

        profile = source.run(lambda frame: label_profile_frame(frame, spec, source.limits.max_rows, where,
                                                               source.location), spec.columns, start, end)
        source.count_rows(profile.rows)
        return profile

    def reference(self, source: SparkSource, features: dict[str, str], n_chunks: int = 10,
                  sample_rows: int = 200_000, max_categories: int = 10_000):
        """As `core.reference.build_reference`: the spec from a sample, then the profile in chunks.

        The sample is the whole reference when it has at most `sample_rows` rows (then the
        bin edges equal the embedded engine's exactly), else Spark's seeded Bernoulli sample.
        """
        from core.reference import Reference

        def job(frame):
            if frame is None:
                spec = ProfileSpec(tuple(FeatureSpec(n, k) for n, k in features.items()), max_categories)
                return spec, [empty_profile(spec)], None
            columns = set(frame.columns)
            present = [n for n in features if n in columns]
            frame = frame.select(*[frame[f"`{n}`"] for n in present])
            sample, total = sampled_rows(frame, sample_rows, seed=0)
            spec = build_spec(sample, {n: features[n] for n in present}, max_categories=max_categories)
            spec = ProfileSpec(tuple(spec[n] if n in columns else FeatureSpec(n, features[n]) for n in features),
                               spec.max_categories)
            chunks = profile_frame(frame, spec, n_chunks=n_chunks, chunk_rows=max(1, math.ceil(total / n_chunks)))
            return spec, chunks, sample

        spec, chunks, sample = source.run(job, None)
        profile = empty_profile(spec)
        for chunk in chunks:
            profile = profile.merge(chunk)
        source.count_rows(profile.rows)
        return Reference(spec, profile, [c for c in chunks if c.rows], sample)


def fingerprint(source: SparkSource) -> str:
    """What identifies the reference's content for caching: its files and their sizes."""
    import os

    parts = []
    for path in sorted(source.files):
        local = path.removeprefix("file://")
        stamp = f"{os.stat(local).st_mtime_ns}" if os.path.exists(local) else ""  # remote: the size only
        stamp = f"{source.sizes.get(path, '')}:{stamp}"
        parts.append(f"{path}:{stamp}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
