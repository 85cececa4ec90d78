"""A data source read by Spark: the same locations, formats and window as `core.sources`.

Files are listed first (local paths exactly as the embedded engine lists them; URIs
through Spark's own filesystems, so anything Spark is configured for works), then read as
one DataFrame with the window's timestamp predicate and `dt=`/`hour=` partition pruning. A file
Spark cannot read fails its job; the failing file is named in Spark's error, so it is
recorded in `report.bad_files`, dropped, and the job re-run on the rest: one corrupt hour
marks the window partial instead of failing it, as in the embedded engine.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, TypeVar

from core.errors import DataSourceError, DriftlineError, LimitExceededError, SchemaError
from core.sources import FORMATS, Limits, ScanReport, _format_of, _resolve

T = TypeVar("T")
_MAX_BAD_FILES = 100  # re-runs after a corrupt file; beyond this the source is hopeless


def quoted(name: str) -> str:
    """A column reference Spark takes literally (names with dots or spaces)."""
    return "`" + name.replace("`", "``") + "`"


def _is_local(location: str) -> bool:
    """A plain path is listed here, by the embedded engine's rules; any URI (file:// too) by Spark."""
    return "://" not in location


class SparkSource:
    """One logical table spread over files, read by Spark. Mirrors `core.sources.Source`."""

    def __init__(self, spark, location: str | os.PathLike, format: str | None = None,
                 timestamp_column: str | None = None, limits: Limits = Limits()) -> None:
        self.spark = spark
        self.location = str(location)
        self.timestamp_column = timestamp_column
        self.limits = limits
        self.report = ScanReport()
        files, sizes = self._list()
        self.sizes = dict(zip(files, sizes))
        self.format = _format_of(files[0], format)
        if self.format in ("csv", "json"):  # a 0-byte text file is an empty window, not a corrupt one
            files = [f for f, size in zip(files, sizes) if size > 0]
        if limits.max_bytes is not None and sum(sizes) > limits.max_bytes:
            raise LimitExceededError(f"{self.location}: {sum(sizes)} bytes exceeds the limit of {limits.max_bytes}")
        self.files = files
        self._schema = None

    # ------------------------------------------------------------------ files

    def _list(self) -> tuple[list[str], list[int]]:
        if _is_local(self.location):
            filesystem, files = _resolve(self.location)  # same rules as the embedded engine
            return files, [filesystem.get_file_info(f).size or 0 for f in files]
        try:
            rows = (self.spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                    .load(self.location).select("path", "length").collect())
        except Exception as exc:  # Py4J / analysis errors: the location cannot be listed
            raise DataSourceError(f"{self.location}: cannot list ({_short(exc)})") from exc
        rows = sorted((r.path, int(r.length)) for r in rows
                      if Path(r.path).suffix.lower() in FORMATS or not Path(r.path).suffix)
        if not rows:
            raise DataSourceError(f"{self.location}: no data files")
        return [p for p, _ in rows], [n for _, n in rows]

    def _base_path(self, files: list[str]) -> str:
        parents = [f.rsplit("/", 1)[0] for f in files]
        common = os.path.commonprefix(parents)
        if not all(p == common or p.startswith(common.rstrip("/") + "/") for p in parents):
            common = common.rsplit("/", 1)[0]
        return common or "/"

    def _read(self, files: list[str]):
        reader = self.spark.read.format(self.format).option("basePath", self._base_path(files))
        if self.format == "csv":
            delimiter = "\t" if Path(files[0]).suffix.lower() in {".tsv", ".txt"} else ","
            reader = reader.option("header", "true").option("inferSchema", "true").option("sep", delimiter)
        try:
            return reader.load(files)
        except Exception as exc:
            raise _ReadFailure(exc) from exc

    @property
    def schema(self):
        """The data's columns as Arrow types (what the kernel will see), partition columns included."""
        if self._schema is None:
            import pyarrow as pa

            from core.engines.spark.arrow import arrow_table

            self._schema = self.run(lambda frame: pa.schema([]) if frame is None else arrow_table(frame.limit(0)).schema)
        return self._schema

    # ------------------------------------------------------------------ frames

    def frame(self, columns: list[str] | None = None, start: datetime | None = None, end: datetime | None = None,
              files: list[str] | None = None):
        """The window's rows of `columns` (those present) as a DataFrame."""
        from pyspark.sql import functions as F

        df = self._read(files if files is not None else self.files)
        present = set(df.columns)
        condition = None
        if start is not None or end is not None:
            column = self.timestamp_column
            if column:
                if column not in present:
                    raise SchemaError(f"{self.location}: timestamp column '{column}' is missing")
                moment = _timestamp_expression(df, column)
                for bound, upper in ((start, False), (end, True)):
                    if bound is not None:
                        literal = F.to_timestamp(F.lit(_as_utc(bound).strftime("%Y-%m-%d %H:%M:%S.%f")))
                        part = moment < literal if upper else moment >= literal
                        condition = part if condition is None else condition & part
            if "dt" in present:  # prune hive partitions, as the embedded engine does
                hourly = bool(self.files) and "/hour=" in self.files[0]  # a folder key, not a data column
                pruning = _partition_pruning(start, end, hourly)
                if pruning is not None:
                    condition = pruning if condition is None else condition & pruning
        if condition is not None:
            df = df.where(condition)
        if columns is not None:
            df = df.select([F.col(quoted(c)) for c in dict.fromkeys(columns) if c in present])
        return df

    def run(self, job: Callable[..., T], columns: list[str] | None = None, start: datetime | None = None,
            end: datetime | None = None) -> T:
        """`job(frame)` on the window; a file Spark cannot read is recorded and the job re-run without it."""
        files = list(self.files)
        if not files:  # only empty text files: an empty window
            return job(None)
        for _ in range(_MAX_BAD_FILES + 1):
            try:
                result = job(self.frame(columns, start, end, files))
                self.report.files = len(files)
                return result
            except DriftlineError:  # ours, already clear (e.g. from a nested run over the other source)
                raise
            except Exception as exc:  # Py4J and Spark errors: find the file to blame
                cause = exc.__cause__ if isinstance(exc, _ReadFailure) else exc
                bad = _blamed_file(cause, files)
                if bad is None:
                    raise DataSourceError(f"{self.location}: Spark could not read it ({_short(cause)})") from exc
                self.report.bad_files.append((bad, _short(cause)))
                files.remove(bad)
                if bad in self.files:  # later jobs on this source skip it without failing again
                    self.files.remove(bad)
                if not files:
                    raise DataSourceError(f"{self.location}: no readable {self.format} files "
                                          f"({self.report.bad_files[0][1]})") from exc
        raise DataSourceError(f"{self.location}: more than {_MAX_BAD_FILES} unreadable files")

    def batches(self, columns: list[str] | None = None, start: datetime | None = None,
                end: datetime | None = None, **_options):
        """The window's rows of `columns` brought to the driver as Arrow batches, for the checks
        that need rows rather than profiles (labels, explain samples). Spark projects and filters
        first; the rows then cost the driver what the embedded engine's batches cost it."""
        from core.engines.spark.arrow import arrow_table

        table = self.run(lambda frame: None if frame is None else arrow_table(frame), columns, start, end)
        if table is None:
            return
        self.count_rows(table.num_rows)
        yield from table.to_batches(max_chunksize=131_072)

    def sample(self, rows: int, columns: list[str] | None = None, seed: int = 0, start: datetime | None = None,
               end: datetime | None = None):
        """About `rows` rows drawn in Spark (all of them when the data has no more), as an Arrow table."""
        table = self.run(lambda frame: None if frame is None else sampled_rows(frame, rows, seed)[0], columns,
                         start, end)
        if table is None:
            import pyarrow as pa

            return pa.schema([]).empty_table()
        return table

    def count_rows(self, rows: int) -> None:
        """Record the rows a job read and apply the max_rows limit (checked after the job: Spark cannot stop early)."""
        self.report.rows += rows
        if self.limits.max_rows is not None and self.report.rows > self.limits.max_rows:
            raise LimitExceededError(f"{self.location}: more than {self.limits.max_rows} rows in the window "
                                     "(limit max_rows)")


def sampled_rows(frame, rows: int, seed: int):
    """(about `rows` rows of `frame` as an Arrow table, the frame's row count): every row when it has
    no more, else Spark's seeded Bernoulli sample cut to `rows`."""
    from core.engines.spark.arrow import arrow_table

    total = frame.count()
    if total > rows:
        frame = frame.sample(fraction=min(1.0, 1.1 * rows / total), seed=seed).limit(rows)
    return arrow_table(frame), total


class _ReadFailure(Exception):
    """Spark failed while planning the read (e.g. a corrupt footer met during schema inference)."""


def _partition_pruning(start: datetime | None, end: datetime | None, hourly: bool):
    """`dt=YYYY-MM-DD` (and `hour=HH` folder) bounds of [start, end), as core.sources prunes them."""
    from pyspark.sql import functions as F

    day, hour, condition = F.col("dt").cast("string"), F.col("hour").cast("int"), None
    bounds = []
    if start is not None:
        first = _as_utc(start)
        bounds.append(day >= first.strftime("%Y-%m-%d"))
        if hourly and first.hour:
            bounds.append((day > first.strftime("%Y-%m-%d")) | (hour >= first.hour))
    if end is not None:
        last = _as_utc(end) - timedelta(microseconds=1)  # the window's last instant: it is half-open
        bounds.append(day <= last.strftime("%Y-%m-%d"))
        if hourly and last.hour < 23:
            bounds.append((day < last.strftime("%Y-%m-%d")) | (hour <= last.hour))
    for bound in bounds:
        condition = bound if condition is None else condition & bound
    return condition


def _timestamp_expression(df, column: str):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, TimestampNTZType, TimestampType

    data_type = df.schema[column].dataType
    if isinstance(data_type, TimestampType):
        return F.col(quoted(column))
    if isinstance(data_type, TimestampNTZType):  # naive timestamps are taken as UTC (the session time zone)
        return F.col(quoted(column)).cast("timestamp")
    if isinstance(data_type, StringType):
        return F.to_timestamp(F.col(quoted(column)))
    raise SchemaError(f"timestamp column '{column}' has type {data_type.simpleString()}, not a timestamp")


def _blamed_file(exc: BaseException, files: list[str]) -> str | None:
    """The input file a Spark error names (the longest match, so 'a.parquet' never blames 'aa.parquet')."""
    text = _full_text(exc)
    named = [f for f in files if f.removeprefix("file://") in text]
    return max(named, key=len) if named else None


def _full_text(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _short(exc: BaseException) -> str:
    """The first meaningful line of a (possibly Java) error, without the stack."""
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "JVM stacktrace", "Traceback")):
            return line[:300]
    return type(exc).__name__
