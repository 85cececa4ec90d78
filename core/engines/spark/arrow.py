"""Spark DataFrames as Arrow tables with the types the embedded engine reads."""

from __future__ import annotations


def arrow_table(frame):
    """A DataFrame as an Arrow table with the embedded engine's types (string, not large_string)."""
    import pyarrow as pa

    table = frame.toArrow()
    fields = []
    for field in table.schema:
        if pa.types.is_large_string(field.type):
            field = field.with_type(pa.string())
        elif pa.types.is_large_binary(field.type):
            field = field.with_type(pa.binary())
        fields.append(field)
    return table.cast(pa.schema(fields))
