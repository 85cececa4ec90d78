"""Data quality on Spark: the window's DataFrame validated by Great Expectations' Spark datasource.

The suite is the embedded engine's (derived on the driver from the reference sample, or
the user's file); only the validation moves: GX computes every metric as Spark aggregates
over the window's DataFrame, and nothing but the offending values GX reports comes back.
The result is judged by the same `judge`, so statuses compare across engines.

Two differences from pandas are ironed out so both engines give the same answers:
- NaN: GX on pandas counts NaN as null; Spark does not (and orders NaN above every number,
  so it would also fail a range). NaN in floating columns is turned into null first.
- type names: type-list expectations carry Spark's names next to pandas' (TYPE_FAMILIES);
  a pandas-only list (an older or hand-written suite) gets them added before validating.

Beyond `sample_rows` rows the window is validated on a seeded Bernoulli sample of that
expected size (`df.sample`); `validated_rows` says how many rows it held.
"""

from __future__ import annotations

from datetime import datetime

from core.results import CheckResult
from checks.expectations import suite_columns, validate_frame
from checks.quality import quality_result


def validate_on_spark(suite: dict, source, sample_rows: int, start: datetime | None = None,
                      end: datetime | None = None, where: str = "suite", **context) -> CheckResult:
    """Validate the window [start, end) of a SparkSource against the suite."""

    def cached(frame):
        if frame is None:  # only empty text files: an empty window
            from pyspark.sql.types import StructType

            frame = source.spark.createDataFrame([], StructType([]))
        window_rows = frame.count()
        if window_rows > sample_rows:
            frame = frame.sample(fraction=sample_rows / window_rows, seed=0)
        # Cached and counted here, inside SparkSource.run: every file is read now, so a corrupt one
        # is recorded and the window re-read without it (GX would turn the error into one per
        # expectation); GX's dozen jobs then read the cache instead of the files.
        frame = _nan_as_null(frame).persist()
        try:
            return frame, frame.count(), window_rows
        except Exception:
            frame.unpersist()
            raise

    suite = with_spark_type_names(suite)
    frame, validated_rows, window_rows = source.run(cached, suite_columns(suite), start, end)
    try:
        source.count_rows(window_rows)
        results = validate_frame(suite, frame, where=where, backend="spark")
    finally:
        frame.unpersist()
    bad = tuple(f"{path}: {why}" for path, why in source.report.bad_files)
    return quality_result(suite, results, validated_rows, window_rows, partial=bool(bad), bad_files=bad, **context)


def with_spark_type_names(suite: dict) -> dict:
    """Type lists written for pandas only (suites saved before Spark names were added, or by
    hand) get the Spark names of the same families, so they judge a Spark window the same way."""
    from checks.expectations import TYPE_FAMILIES

    items = []
    for item in suite["expectations"]:
        kwargs = item.get("kwargs", {})
        names = kwargs.get("type_list")
        if item.get("type") == "expect_column_values_to_be_in_type_list" and isinstance(names, list):
            # The family the list is (most of): 'object' alone is both string and boolean.
            family = max(TYPE_FAMILIES.values(), key=lambda members: len(set(names) & set(members)))
            extra = [name for name in family if name.endswith("Type") and name not in names]
            if set(names) & set(family) and not any(name.endswith("Type") for name in names) and extra:
                item = {**item, "kwargs": {**kwargs, "type_list": names + extra}}
        items.append(item)
    return {**suite, "expectations": items}


def _nan_as_null(frame):
    """NaN in float/double columns as null, as pandas sees it (null checks count it, ranges skip it)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    from core.engines.spark.source import quoted

    def column(field):
        value = F.col(quoted(field.name))
        if isinstance(field.dataType, (DoubleType, FloatType)):
            return F.when(F.isnan(value), F.lit(None)).otherwise(value).alias(field.name)
        return value

    return frame.select([column(f) for f in frame.schema.fields])
