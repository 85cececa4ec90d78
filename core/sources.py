"""Data sources: Parquet, CSV and JSONL files, directories, globs and object-store URIs.

Everything is read as a stream of Arrow record batches with column projection and a
time-window predicate pushed down to the scanner (hive partitions `dt=`/`hour=` are
pruned too). A file that cannot be read is recorded and skipped, so one corrupt hour
marks the window partial instead of failing it. Limits on bytes and rows stop runaway
reads with a clear error.
"""

from __future__ import annotations

import glob as globlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv  # noqa: F401  (pa.csv.ParseOptions)
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import DataSourceError, LimitExceededError, SchemaError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
DEFAULT_BATCH_ROWS = 131_072  # at most this many rows a batch
# Parquet is read in batches of about this many decoded bytes (fewer rows for wide data), so
# memory depends neither on the data's size nor on its row-group layout: the reader streams
# each column chunk through a small buffer instead of holding whole row groups. Batches of
# ~16 MiB (~80k rows of 30 columns) rather than 8: the kernel's per-batch costs (a few dozen
# numpy calls per column, dictionary look-ups, merges) are half what they were, ~10% of the
# CPU time of profiling (#17); 24-32 MiB saves a little more but costs ~20-60 MiB more RSS.
DEFAULT_BATCH_BYTES = 16 << 20
MIN_BATCH_ROWS = 1024  # however wide the rows: per-batch overheads stay small
_READ_BUFFER_BYTES = 1 << 20  # per column being read (the buffered stream of a column chunk)
# While a wide file is read a column group at a time (core/wide.py), each file stays open for the
# next group: opening one of 10,000 columns took ~60 ms (its footer parsed, its column paths
# listed), 10 times a file. Kept for at most this many columns over all files (~2.5 KB of memory
# a column), then opened again.
OPEN_FILES_COLUMNS = 20_000
_STRING_BYTES_GUESS = 32  # decoded bytes per value of a string column read as plain strings
# Batches the CSV/JSON scanner decodes ahead of the consumer (Arrow's default, 16, holds ~16
# batches of every column at once).
DEFAULT_BATCH_READAHEAD = 2
_LAST_INSTANT = timedelta(microseconds=1)  # datetimes are whole microseconds: no hour starts inside the last one


@dataclass(frozen=True)
class Limits:
    max_bytes: int | None = None
    max_rows: int | None = None


@dataclass
class ScanReport:
    """What a scan read: rows, files, and the files it had to skip (with why)."""

    rows: int = 0
    files: int = 0
    bad_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.bad_files)


def _format_of(path: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in {"parquet", "csv", "json", "jsonl"}:
            raise DataSourceError(f"{path}: unknown format {explicit!r} (parquet, csv, json)")
        return "json" if explicit == "jsonl" else explicit
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    raise DataSourceError(f"{path}: cannot tell the file format from its name; set format: parquet|csv|json")


def _file_format(fmt: str, path: str, filesystem: pafs.FileSystem | None = None):
    if fmt == "csv":
        # Empty cells are missing values, as in Parquet, not the category ''.
        delimiter = "\t" if Path(path).suffix.lower() in {".tsv", ".txt"} else ","
        return ds.CsvFileFormat(parse_options=pa.csv.ParseOptions(delimiter=delimiter),
                                convert_options=pa.csv.ConvertOptions(strings_can_be_null=True))
    if fmt == "parquet" and isinstance(filesystem, pafs.LocalFileSystem):
        return ds.ParquetFileFormat(default_fragment_scan_options=_parquet_scan_options(filesystem))
    return fmt


def _parquet_scan_options(filesystem: pafs.FileSystem) -> ds.ParquetFragmentScanOptions:
    # Pre-buffering coalesces reads for object stores; on local disk it only makes the
    # scanner hold whole row groups (several at once) in memory: slower and 3-4x the RSS.
    return ds.ParquetFragmentScanOptions(pre_buffer=not isinstance(filesystem, pafs.LocalFileSystem))


def _resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, list[str]]:
    """Expand a path, directory, glob or URI into a filesystem and a sorted file list."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        try:
            filesystem, root = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise DataSourceError(f"{text}: cannot open ({exc})") from exc
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(root, recursive=True)
            files = [i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File]
        elif info.type == pafs.FileType.File:
            files = [root]
        else:
            raise DataSourceError(f"{text}: no such file or directory")
        return filesystem, sorted(files)
    text = text.removeprefix("file://")
    if any(ch in text for ch in "*?["):
        files = sorted(p for p in globlib.glob(text, recursive=True) if os.path.isfile(p))
        if not files:
            raise DataSourceError(f"{text}: the glob matches no files")
    elif os.path.isdir(text):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(text)
            for name in names
            if not name.startswith((".", "_")) and Path(name).suffix.lower() in FORMATS
        )
        if not files:
            raise DataSourceError(f"{text}: the directory holds no data files")
    elif os.path.isfile(text):
        files = [text]
    else:
        raise DataSourceError(f"{text}: no such file or directory")
    return pafs.LocalFileSystem(), files


class Source:
    """One logical table spread over files; scanned as batches."""

    def __init__(
        self,
        location: str | os.PathLike,
        format: str | None = None,
        timestamp_column: str | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.location = str(location)
        self.timestamp_column = timestamp_column
        self.limits = limits
        self.filesystem, files = _resolve(location)
        self.format = _format_of(files[0], format)
        self.report = ScanReport()
        self.open_files: dict[tuple, tuple[pq.ParquetFile, frozenset]] | None = None  # see keep_files_open
        if limits.max_bytes is not None:
            size = sum(self.filesystem.get_file_info(f).size or 0 for f in files)
            if size > limits.max_bytes:
                raise LimitExceededError(f"{self.location}: {size} bytes exceeds the limit of {limits.max_bytes}")
        self.dataset = self._discover(files)

    def _discover(self, files: list[str]) -> ds.Dataset:
        partitioning = ds.HivePartitioning.discover(infer_dictionary=False)
        file_format = _file_format(self.format, files[0], self.filesystem)
        if self.format in ("csv", "json"):
            # A 0-byte text file is an empty window, not a corrupt one (Arrow cannot infer its schema).
            files = [f for f in files if (self.filesystem.get_file_info(f).size or 0) > 0]
            if not files:
                return ds.dataset(pa.schema([]).empty_table())
        try:
            return ds.dataset(files, format=file_format, filesystem=self.filesystem, partitioning=partitioning,
                              partition_base_dir=self._base_dir(files))
        except (pa.ArrowInvalid, OSError) as exc:
            if len(files) == 1:
                raise DataSourceError(f"{files[0]}: cannot read as {self.format} ({_short(exc)})") from exc
        # Some file is unreadable: find which, record it, and go on with the rest.
        good = []
        for path in files:
            try:
                ds.dataset(path, format=file_format, filesystem=self.filesystem).schema
                good.append(path)
            except (pa.ArrowInvalid, OSError) as exc:
                self.report.bad_files.append((path, _short(exc)))
        if not good:
            raise DataSourceError(f"{self.location}: no readable {self.format} files ({self.report.bad_files[0][1]})")
        return ds.dataset(good, format=file_format, filesystem=self.filesystem, partitioning=partitioning,
                          partition_base_dir=self._base_dir(good))

    def _base_dir(self, files: list[str]) -> str:
        if len(files) == 1:
            return str(Path(files[0]).parent)
        return os.path.commonpath(files) if not isinstance(self.filesystem, pafs.LocalFileSystem) else (
            os.path.commonpath([os.path.dirname(f) for f in files])
        )

    @property
    def schema(self) -> pa.Schema:
        return self.dataset.schema

    @cached_property
    def field_types(self) -> dict[str, pa.DataType]:
        """Column name -> type, built once: `schema.field(name)` makes a new Field per call (~1.5 us),
        and a wide file's column groups each looked up every column."""
        return {f.name: f.type for f in self.schema}

    @contextmanager
    def keep_files_open(self):
        """Within: each Parquet file is opened (its footer parsed) once for reads of the same files one
        after another (column groups of a wide file), up to OPEN_FILES_COLUMNS; closed at the end."""
        self.open_files = {}
        try:
            yield
        finally:
            kept, self.open_files = self.open_files, None
            for file, _ in kept.values():
                file.close()

    def _window_filters(self, start: datetime | None, end: datetime | None
                        ) -> tuple[ds.Expression | None, ds.Expression | None]:
        """The window as (a filter on rows and partition keys, its part on the file's own columns)."""
        if start is None and end is None:
            return None, None
        schema = self.schema
        expression = None
        column = self.timestamp_column
        if column:
            if column not in schema.names:
                raise SchemaError(f"{self.location}: timestamp column '{column}' is missing")
            if pa.types.is_timestamp(schema.field(column).type):
                field_type = schema.field(column).type
                if start is not None:
                    expression = _and(expression, ds.field(column) >= pa.scalar(_as_utc(start), field_type))
                if end is not None:
                    expression = _and(expression, ds.field(column) < pa.scalar(_as_utc(end), field_type))
        in_files = expression
        # Prune hive `dt=YYYY-MM-DD` (and integer `hour=HH`) partitions, the UTC date (and hour)
        # of their rows' timestamps, so a window opens only its own files: an hourly window of
        # hourly partitions reads one file, not the day's 24 (and a day ending at midnight does
        # not open the next day's). A data column named `hour` (say, a local hour) is no key.
        if "dt" in schema.names and pa.types.is_string(schema.field("dt").type):
            dt = ds.field("dt")
            partitioning = getattr(self.dataset, "partitioning", None)
            keys = partitioning.schema if partitioning is not None else pa.schema([])
            hour = ds.field("hour") if "hour" in keys.names and pa.types.is_integer(keys.field("hour").type) else None
            if start is not None:
                first = _as_utc(start)
                day = first.strftime("%Y-%m-%d")
                expression = _and(expression, dt >= day)
                if hour is not None and first.hour:
                    expression = _and(expression, (dt > day) | (hour >= first.hour))
            if end is not None:
                last = _as_utc(end) - _LAST_INSTANT  # the window's last instant: [start, end) is half-open
                day = last.strftime("%Y-%m-%d")
                expression = _and(expression, dt <= day)
                if hour is not None and last.hour < 23:
                    expression = _and(expression, (dt < day) | (hour <= last.hour))
        return expression, in_files

    def batches(
        self,
        columns: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_readahead: int = DEFAULT_BATCH_READAHEAD,
        dictionary_strings: bool = False,
        batch_width: list[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the window's rows; columns absent from the data are simply not returned.

        `batch_width`: Parquet batches hold as many rows as a read of these columns would (a wide
        file read a group of columns at a time, core/wide.py, cuts its rows where the whole read
        does, so profiles add up in the same order and give the same floats).

        `dictionary_strings` reads Parquet string columns dictionary-encoded, as they are
        stored: no per-row strings are built, and the profile kernel counts the indices.
        That takes about a third off profiling string-heavy data. Other formats, and the
        columns the window filter reads, come as they are.
        """
        names = self.field_types  # a dict: wide files list thousands of columns
        projected = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
        if projected is not None and self.timestamp_column in names and start is not None:
            needs_ts = not pa.types.is_timestamp(self.schema.field(self.timestamp_column).type)
            if needs_ts and self.timestamp_column not in projected:
                projected.append(self.timestamp_column)
        expression, in_files = self._window_filters(start, end)
        if self.format == "parquet":
            width = None if batch_width is None else list(dict.fromkeys([*batch_width, *(projected or ())]))
            reader = _ParquetReader(self, projected, expression, in_files, batch_rows, dictionary_strings, (start, end),
                                    width)
            fragments = ((f, reader.batches(f)) for f in self.dataset.get_fragments(filter=expression))
        else:
            fragments = ((f, f.to_batches(schema=self.schema, columns=projected, filter=expression,
                                          batch_size=batch_rows, batch_readahead=batch_readahead,
                                          fragment_readahead=1, use_threads=True))
                         for f in self.dataset.get_fragments(filter=expression))
        for fragment, batches in fragments:
            self.report.files += 1
            try:
                for batch in batches:
                    batch = self._filter_text_timestamps(batch, start, end)
                    if batch.num_rows == 0:
                        continue
                    self.report.rows += batch.num_rows
                    if self.limits.max_rows is not None and self.report.rows > self.limits.max_rows:
                        raise LimitExceededError(
                            f"{self.location}: more than {self.limits.max_rows} rows in the window (limit max_rows)"
                        )
                    yield batch
            except _READ_ERRORS as exc:
                self.report.bad_files.append((fragment.path, _short(exc)))

    def _filter_text_timestamps(self, batch: pa.RecordBatch, start, end) -> pa.RecordBatch:
        """CSV/JSON may carry timestamps as text; filter those after parsing."""
        column = self.timestamp_column
        if (start is None and end is None) or not column or column not in batch.schema.names:
            return batch
        values = batch.column(column)
        if pa.types.is_timestamp(values.type):
            return batch
        try:
            parsed = pc.cast(values, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"{self.location}: timestamp column '{column}' cannot be parsed ({_short(exc)})") from exc
        mask = None
        if start is not None:
            mask = pc.greater_equal(parsed, pa.scalar(_as_utc(start), pa.timestamp("us", tz="UTC")))
        if end is not None:
            upper = pc.less(parsed, pa.scalar(_as_utc(end), pa.timestamp("us", tz="UTC")))
            mask = upper if mask is None else pc.and_(mask, upper)
        return batch.filter(mask)

    def head(self, rows: int, columns: list[str] | None = None) -> pa.Table:
        names = set(self.schema.names)
        projected = None if columns is None else [c for c in columns if c in names]
        return self.dataset.head(rows, columns=projected)

    def sample(self, rows: int, columns: list[str] | None = None, seed: int = 0, start: datetime | None = None,
               end: datetime | None = None) -> pa.Table:
        """A uniform sample without replacement (bottom-k of random keys), in one bounded pass."""
        return sample_batches(self.batches(columns, start, end), rows, seed, self.schema, columns)


def sample_batches(batches, rows: int, seed: int, schema: pa.Schema | None = None,
                   columns: list[str] | None = None) -> pa.Table:
    """Keep the `rows` rows with the smallest random keys: uniform, mergeable, bounded memory."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kept: pa.Table | None = None
    kept_keys = np.empty(0)
    for batch in batches:
        keys = rng.random(batch.num_rows)
        if len(kept_keys) >= rows:
            # Once `rows` are kept, only rows with a smaller key than the largest kept can enter:
            # filter before concatenating, so the copies stay small (same rows, same order).
            entering = keys < kept_keys.max()
            if not entering.any():
                continue
            batch, keys = batch.filter(pa.array(entering)), keys[entering]
        table = pa.Table.from_batches([batch])
        if kept is not None:
            table = pa.concat_tables([kept, table], promote_options="permissive")
            keys = np.concatenate([kept_keys, keys])
            kept = None  # the concatenation holds the rows now; each column is freed once taken from
        if len(keys) > rows:
            chosen = np.sort(np.argpartition(keys, rows - 1)[:rows])
            # A column at a time, each source column freed once taken from: a compaction holds
            # about one sample, not two.
            schema, columns, table = table.schema, table.columns, None
            for i in range(len(columns)):
                columns[i] = columns[i].take(pa.array(chosen))
            table = pa.Table.from_arrays(columns, schema=schema)
            keys = keys[chosen]
        kept, kept_keys = table, keys
    if kept is None:
        if schema is None:
            return pa.table({})
        present = set(schema.names)
        names = [c for c in (columns or schema.names) if c in present]
        return pa.schema([schema.field(n) for n in names]).empty_table()
    return kept


_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError)


class _ParquetReader:
    """Reads one window's Parquet files as bounded batches, with what the dataset scanner gave:
    the source's schema (columns a file lacks are null, others cast), hive partition columns,
    row groups pruned by their statistics and rows filtered by the window.

    The scanner decodes whole row groups (and reads ahead by row groups), so its memory grew
    with the row-group size: a 1M-row group of 30 columns is ~250 MB decoded. Here each column
    chunk streams through a 1 MiB buffer and a batch holds DEFAULT_BATCH_BYTES of decoded rows.
    On object stores each row group's byte ranges are fetched together (pre-buffered, one row
    group at a time), which bounds memory by one compressed row group.
    """

    def __init__(self, source: "Source", projected: list[str] | None, expression: ds.Expression | None,
                 in_files: ds.Expression | None, batch_rows: int, dictionary_strings: bool,
                 window: tuple[datetime | None, datetime | None] = (None, None),
                 batch_width: list[str] | None = None) -> None:
        self.source = source
        self.window = window
        self.expression = expression
        self.in_files = in_files  # the part of the expression row-group statistics can answer
        schema = source.schema
        self.names = list(schema.names) if projected is None else list(projected)
        # (The dataset's `partitioning.schema` lists every column for a file outside key=value
        # folders, so partition keys are taken from each file's partition expression instead.)
        self.skip = {source.timestamp_column, "dt", "hour"}
        self.dictionary_strings = dictionary_strings
        types_of = source.field_types
        read_type = self._read_type
        self.types = {n: read_type(n) for n in self.names}
        # (Compared with the very type read_type started from: `schema.field(n).type` is a new object
        # every time, so this listed every column, and Arrow looked each one up on every file open.)
        self.dictionary_names = [n for n, kind in self.types.items() if kind is not types_of[n]]
        # The expression may read columns that are not returned (the timestamp, partition keys).
        self.filter_names = [] if expression is None else [
            n for n in (source.timestamp_column, "dt", "hour") if n and n in schema.names and n not in self.types
        ]
        for name in self.filter_names:
            self.types[name] = schema.field(name).type
        self.batch_rows = batch_rows
        self.local = isinstance(source.filesystem, pafs.LocalFileSystem)
        self.sizing = self.types  # the columns (and read types) whose width sizes a batch
        self.companion: str | None = None  # a column read only to cut batches as the whole read does
        if batch_width is not None:
            self.sizing = {n: read_type(n) for n in batch_width if n in types_of}
            self.sizing.update({n: self.types[n] for n in self.filter_names})
            # Arrow ends a batch at each row group's end when it reads a dictionary column (then reads
            # the rest of the batch): a group without one would cut rows elsewhere than the whole read,
            # so it reads one of the whole read's dictionary columns too (dropped by _conform).
            if not any(pa.types.is_dictionary(kind) for kind in self.types.values()):
                self.companion = next((n for n, kind in self.sizing.items() if pa.types.is_dictionary(kind)), None)
                if self.companion is not None and pa.types.is_string(schema.field(self.companion).type):
                    self.dictionary_names.append(self.companion)

    def _read_type(self, name: str) -> pa.DataType:
        kind = self.source.field_types[name]
        as_dictionary = self.dictionary_strings and name not in self.skip and pa.types.is_string(kind)
        return pa.dictionary(pa.int32(), kind) if as_dictionary else kind

    def _open(self, path: str) -> tuple[pq.ParquetFile, frozenset, bool]:
        """(the file, its column names, whether it stays open): kept open by Source.keep_files_open,
        where it is opened reading as dictionaries every string column a read converts (any group's)."""
        kept = self.source.open_files
        key = (path, self.dictionary_strings)
        if kept is not None and key in kept:
            return (*kept[key], True)
        types_of = self.source.field_types
        dictionary_names = self.dictionary_names if kept is None else [
            n for n, kind in types_of.items() if self._read_type(n) is not kind] + self.dictionary_names
        file = pq.ParquetFile(path, filesystem=self.source.filesystem, buffer_size=_READ_BUFFER_BYTES,
                              pre_buffer=not self.local, read_dictionary=list(dict.fromkeys(dictionary_names)) or None)
        names = frozenset(file.schema_arrow.names)
        columns = 0 if kept is None else sum(f.metadata.num_columns for f, _ in kept.values())
        if kept is None or columns + file.metadata.num_columns > OPEN_FILES_COLUMNS:
            return file, names, False
        kept[key] = (file, names)
        return file, names, True

    def batches(self, fragment) -> Iterator[pa.RecordBatch]:
        row_groups = None
        if self.in_files is not None:  # statistics prune row groups the window cannot hold
            row_groups = [rg.id for piece in fragment.split_by_row_group(self.in_files) for rg in piece.row_groups]
            if not row_groups:
                return
        keys = ds.get_partition_keys(fragment.partition_expression)
        file, in_file, stays_open = self._open(fragment.path)
        try:
            columns = [n for n in self.types if n in in_file and n not in keys]
            if self.companion in in_file and self.companion not in keys:
                columns.append(self.companion)
            batch_size = self._batch_size([n for n in self.sizing if n in in_file and n not in keys])
            groups = list(range(file.num_row_groups)) if row_groups is None else row_groups
            # Runs of consecutive row groups that need the row filter or not (all their rows in the window).
            runs: list[tuple[bool, list[int]]] = []
            for group in groups:
                filtered = self.expression is not None and not self._inside_window(file, group, keys)
                if runs and runs[-1][0] == filtered and self.local:
                    runs[-1][1].append(group)
                else:  # on object stores, one row group pre-buffered at a time
                    runs.append((filtered, [group]))
            for filtered, run in runs:
                for batch in file.iter_batches(batch_size, run, columns, use_threads=True):
                    yield self._conform(batch, keys, filtered)
        finally:
            if not stays_open:
                file.close()

    def _batch_size(self, columns: list[str]) -> int:
        """Rows per batch: about DEFAULT_BATCH_BYTES decoded, within [MIN_BATCH_ROWS, batch_rows]."""
        row_bytes = 1.0
        for name in columns:
            kind = self.sizing[name]
            if pa.types.is_dictionary(kind):
                row_bytes += 4
            else:
                try:
                    row_bytes += kind.bit_width / 8
                except ValueError:  # variable width
                    row_bytes += 4 + _STRING_BYTES_GUESS
        return int(min(self.batch_rows, max(MIN_BATCH_ROWS, DEFAULT_BATCH_BYTES // row_bytes)))

    def _inside_window(self, file: pq.ParquetFile, group: int, keys: dict) -> bool:
        """Whether every row of a row group is in the window: its partition keys are this file's
        own (the fragment passed the window's partition test) and its timestamp statistics lie
        within [start, end). Then the row filter, a copy of every batch, is skipped."""
        schema = self.source.schema
        if any(name in schema.names and name not in keys for name in ("dt", "hour")):
            return False
        column = self.source.timestamp_column
        if not column or column not in schema.names or not pa.types.is_timestamp(schema.field(column).type):
            return True  # the filter tests partition keys only
        metadata = file.metadata.row_group(group)
        for index in range(metadata.num_columns):
            chunk = metadata.column(index)
            if chunk.path_in_schema != column:
                continue
            stats = chunk.statistics
            if stats is None or not stats.has_min_max:
                return False
            low, high = stats.min, stats.max
            if not (isinstance(low, datetime) and isinstance(high, datetime)):
                return False
            start, end = (None if t is None else _as_utc(t) for t in self.window)
            if low.tzinfo is None:  # a naive column holds UTC wall-clock times (as the filter reads them)
                start, end = (None if t is None else t.replace(tzinfo=None) for t in (start, end))
            return (start is None or low >= start) and (end is None or high < end)
        return False

    def _conform(self, batch: pa.RecordBatch, keys: dict, filtered: bool = True) -> pa.RecordBatch:
        """The batch as the source's schema has it: missing columns null, partition keys filled in."""
        rows = batch.num_rows
        present = set(batch.schema.names)
        arrays, fields = [], []
        for name, kind in self.types.items():
            if name in keys:
                value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
                array = pa.repeat(pa.scalar(keys[name], value_type), rows)
                if value_type != kind:
                    array = array.dictionary_encode()
            elif name in present:
                array = batch.column(name)
                if array.type != kind:
                    array = array.cast(kind)
            else:
                array = pa.nulls(rows, kind)
            arrays.append(array)
            fields.append(pa.field(name, kind))
        conformed = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
        if filtered and self.expression is not None:
            conformed = conformed.filter(self.expression)
        return conformed.select(self.names) if self.filter_names else conformed


def _and(left: ds.Expression | None, right: ds.Expression) -> ds.Expression:
    return right if left is None else left & right


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def parse_window(text: str) -> tuple[datetime, datetime]:
    """Parse 'START/END' (ISO 8601, UTC when no offset is given); END is exclusive."""
    parts = text.split("/")
    if len(parts) != 2:
        raise DataSourceError(f"window {text!r}: expected START/END, e.g. 2026-01-01/2026-01-02")
    try:
        start, end = (_as_utc(datetime.fromisoformat(p.strip())) for p in parts)
    except ValueError as exc:
        raise DataSourceError(f"window {text!r}: {exc}") from exc
    if end <= start:
        raise DataSourceError(f"window {text!r}: END must be after START")
    return start, end
