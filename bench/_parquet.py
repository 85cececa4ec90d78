"""Shared by the benchmarks: write generated data as Parquet one chunk at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq


def write_chunks(path: Path, tables: Iterable[pa.Table], row_group_size: int) -> Path:
    """Write tables as row groups of one file; reuse it if present; memory stays at one chunk.

    The file appears under its name only once complete, so an interrupted run regenerates it.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=row_group_size)
    finally:
        if writer is not None:
            writer.close()
    partial.rename(path)
    return path
