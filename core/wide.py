"""Wide Parquet read a group of columns at a time, for profiles and samples.

Arrow's Parquet reader keeps state for every column it reads in step (the column chunk, its
decoded dictionary page, the decoder): ~50 KB a column whatever the batch size, so a
10,000-column file held ~500 MB of reader buffers and ~150 MB of column metadata while it
was read. Profiles are per column, so a wide file is read in groups of WIDE_GROUP_COLUMNS
columns, each its own pass over the file (Parquet is columnar: every column chunk is still
read once), and the group profiles are joined side by side. Samples are drawn per group
with the same seed: the random keys depend only on row order, so every group keeps the
same rows, and the groups' columns are joined into the sample the whole read would give.

The source's ScanReport counts rows and files once, as one read of all columns would.
CSV and JSON are parsed whole whatever the columns, so they are read in one pass.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, TypeVar

import pyarrow as pa

from core.profile import DatasetProfile, ProfileSpec, profile_batches
from core.sources import Source, sample_batches

WIDE_GROUP_COLUMNS = 1000
Part = TypeVar("Part")


def column_groups(source: Source, names: list[str]) -> list[list[str]]:
    """`names` in groups of WIDE_GROUP_COLUMNS for a Parquet source (else one group); names the source
    lacks (reported missing, never read) join the first group."""
    group = WIDE_GROUP_COLUMNS
    known = set(source.schema.names)
    present = [n for n in names if n in known]
    if source.format != "parquet" or len(present) <= group:
        return [names]
    groups = [present[i:i + group] for i in range(0, len(present), group)]
    groups[0] += [n for n in names if n not in known]
    return groups


def read_in_groups(source: Source, groups: list[list[str]], read: Callable[[list[str]], Part]) -> list[Part]:
    """`read(group)` for each group. Each group reads the same rows, so each counts from where the
    first began (a row limit trips as in one read) and the report ends as after one read, with
    each skipped file once."""
    parts = []
    report = source.report
    rows, files, bad = report.rows, report.files, list(report.bad_files)
    counted = (rows, files)
    with source.keep_files_open() if len(groups) > 1 else nullcontext():  # each file opened once
        for index, names in enumerate(groups):
            report.rows, report.files = rows, files
            parts.append(read(names))
            if index == 0:
                counted = (report.rows, report.files)
            bad += [b for b in report.bad_files[len(bad):] if b not in bad]
            report.bad_files[:] = bad
    report.rows, report.files = counted
    return parts


def sub_spec(spec: ProfileSpec, names: list[str]) -> ProfileSpec:
    return ProfileSpec(tuple(spec[n] for n in names), spec.max_categories)


def profile_source(source: Source, spec: ProfileSpec, start=None, end=None) -> DatasetProfile:
    """The profile of the source's rows (in [start, end)) for every feature of `spec` (columns the
    source lacks are reported missing, as profile_batch does)."""
    groups = column_groups(source, spec.names)

    def profiled(names: list[str]) -> DatasetProfile:
        part_spec = spec if len(groups) == 1 else sub_spec(spec, names)
        width = None if len(groups) == 1 else spec.names
        return profile_batches(source.batches(names, start, end, dictionary_strings=True, batch_width=width), part_spec)

    parts = read_in_groups(source, groups, profiled)
    return parts[0] if len(parts) == 1 else join_profiles(spec, parts)


def join_profiles(spec: ProfileSpec, parts: list[DatasetProfile]) -> DatasetProfile:
    """Profiles of the same rows over disjoint features, side by side (in the spec's order)."""
    features = {}
    for part in parts:
        features.update(part.features)
    return DatasetProfile(spec, parts[0].rows, {n: features[n] for n in spec.names})


def sample_source(source: Source, rows: int, columns: list[str], seed: int = 0) -> pa.Table:
    """`source.sample(rows, columns, seed)`, read a group of columns at a time on a wide Parquet source."""
    groups = column_groups(source, columns)
    if len(groups) == 1:
        return source.sample(rows, columns, seed=seed)
    tables = read_in_groups(source, groups, lambda names: sample_batches(source.batches(names, batch_width=columns),
                                                                         rows, seed, source.schema, names))
    arrays, fields = [], []
    for table in tables:
        arrays.extend(table.columns)
        fields.extend(table.schema)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
