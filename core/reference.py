"""The reference side: fix the profile spec from a sample, then profile the reference in chunks.

The reference is read twice: a bounded uniform sample fixes each numeric feature's bin
edges, then a full streaming pass profiles it in row-order chunks. The chunks merge into
the reference profile, and their spread is what learned thresholds call noise. Kept apart
from the runner so one-off checks load no store or config code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from core.profile import (
    DatasetProfile,
    FeatureSpec,
    ProfileSpec,
    build_spec,
    empty_profile,
    infer_kind,
    profile_batch,
)
from core.errors import SchemaError
from core.pipeline import map_bounded
from core.sources import Source
from core.wide import column_groups, join_profiles, read_in_groups, sample_source, sub_spec

REFERENCE_SAMPLE_ROWS = 200_000
REFERENCE_CHUNKS = 10
REPORT_SAMPLE_ROWS = 20_000


@dataclass
class Reference:
    spec: ProfileSpec
    profile: DatasetProfile
    chunks: list[DatasetProfile]
    sample: pa.Table | None = None  # only when built in this process: REPORT_SAMPLE_ROWS rows for reports


def spec_key(spec: ProfileSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:32]


def build_reference(
    source: Source,
    features: dict[str, str],
    n_chunks: int = REFERENCE_CHUNKS,
    sample_rows: int = REFERENCE_SAMPLE_ROWS,
    max_categories: int = 10_000,
    n_bins: int | None = None,
    keep_sample: bool = True,
) -> Reference:
    """Fix the spec from a sample, then profile the reference in `n_chunks` row-order chunks.

    `keep_sample`: keep REPORT_SAMPLE_ROWS of the sample in the reference, for reports."""
    columns = set(source.schema.names)
    present = [name for name in features if name in columns]
    counted = source.report.rows  # the source may have been read before (a sniffing sample, say)
    sample = sample_source(source, sample_rows, present, seed=0)
    spec = build_spec(sample, {n: features[n] for n in present}, max_categories=max_categories,
                      **({"n_bins": n_bins} if n_bins else {}))
    # Columns the reference lacks still get a spec, so they are reported per feature, not fatal.
    spec = ProfileSpec(
        tuple(spec[n] if n in columns else FeatureSpec(n, features[n]) for n in features), spec.max_categories
    )
    total = source.report.rows - counted
    chunk_rows = max(1, -(-total // n_chunks))
    # A reference no larger than the sample is all in the sample, in row order: profile that
    # instead of reading every file again (on a wide file the second read is most of the time).
    whole = sample.num_rows == total
    groups = [present] if whole else column_groups(source, list(features))  # absent ones: reported missing

    def group_chunks(names: list[str]) -> list[DatasetProfile]:
        group_spec = spec if len(groups) == 1 else sub_spec(spec, names)
        # A chunk starts as its first part, not as an empty profile merged with it: the same values
        # without copying every feature (10,000 of them in a wide file), twice per chunk.
        chunks: list[DatasetProfile | None] = [None] * n_chunks
        width = present if len(groups) > 1 else None  # rows cut where a read of all columns cuts them
        batches = sample.to_batches() if whole else source.batches(names, dictionary_strings=True, batch_width=width)
        for index, part in map_bounded(_slices(batches, chunk_rows, n_chunks),
                                       lambda item: (item[0], profile_batch(item[1], group_spec)),
                                       lambda item: item[1].nbytes):
            chunks[index] = part if chunks[index] is None else chunks[index].merge(part)
        return [empty_profile(group_spec) if chunk is None else chunk for chunk in chunks]

    by_group = read_in_groups(source, groups, group_chunks)
    chunks = by_group[0] if len(by_group) == 1 else [join_profiles(spec, list(parts)) for parts in zip(*by_group)]
    profile = chunks[0]
    for chunk in chunks[1:]:
        profile = profile.merge(chunk)
    return Reference(spec, profile, [c for c in chunks if c.rows], _report_sample(sample) if keep_sample else None)


def _slices(batches, chunk_rows: int, n_chunks: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(chunk index, rows) for each run of a batch in one row-order chunk of `chunk_rows` rows."""
    seen = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            index = min((seen + offset) // chunk_rows, n_chunks - 1)
            take = min(batch.num_rows - offset, chunk_rows * (index + 1) - (seen + offset))
            take = batch.num_rows - offset if index == n_chunks - 1 else max(take, 1)
            yield index, batch.slice(offset, take)
            offset += take
        seen += batch.num_rows


def _report_sample(sample: pa.Table, rows: int = REPORT_SAMPLE_ROWS, seed: int = 0) -> pa.Table:
    """A uniform subsample of the edge sample, as many rows as a report draws from the window: the
    reference is kept for the runner's lifetime, and 200k rows of 30 columns are ~50 MiB."""
    if sample.num_rows <= rows:
        return sample
    import numpy as np

    chosen = np.sort(np.random.default_rng(seed).choice(sample.num_rows, rows, replace=False))
    return sample.take(pa.array(chosen))


def combine_references(features: Reference, scores: Reference) -> Reference:
    """Side by side: features profiled from one source, prediction columns from another."""
    spec = ProfileSpec(features.spec.features + scores.spec.features, features.spec.max_categories)

    def joined(a: DatasetProfile, b: DatasetProfile) -> DatasetProfile:
        return DatasetProfile(spec, a.rows, {**a.features, **b.features})

    chunks = [joined(a, b) for a, b in zip(features.chunks, scores.chunks)]
    return Reference(spec, joined(features.profile, scores.profile), chunks, features.sample)


def source_fingerprint(source) -> str:
    """What identifies a source's content for caching: its files, sizes and modification times."""
    if not hasattr(source, "dataset"):  # a SparkSource
        from core.engines.spark import fingerprint

        return fingerprint(source)
    files = sorted(getattr(source.dataset, "files", []))  # an in-memory (empty) dataset has none
    parts = []
    for path in files:
        info = source.filesystem.get_file_info(path)
        parts.append(f"{path}:{info.size}:{info.mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def feature_kinds(source: Source, names: list[str] | None) -> dict[str, str]:
    """Kinds from the reference's Arrow types; without explicit names, unsupported columns are skipped."""
    schema = source.schema
    if names:
        missing = [n for n in names if n not in schema.names]
        if missing:
            raise SchemaError(f"{source.location}: column '{missing[0]}' is not in the reference data")
        return {n: infer_kind(schema.field(n).type) for n in names}
    kinds = {}
    for field in schema:
        try:
            kinds[field.name] = infer_kind(field.type)
        except SchemaError:
            continue  # timestamps, lists and the like are not drift features
    if not kinds:
        raise SchemaError(f"{source.location}: no numeric or categorical columns to compare")
    return kinds
