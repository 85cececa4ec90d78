"""Feature-value skew on Spark: the key join of `skew.feature_values`, with the same counts.

Two jobs, and no row ever reaches the driver. The first groups both sides' keys (one
aggregate over their union) and reduces the groups on the executors to the join counts
and the few smallest example keys per category. The second joins the pairs whose key is
unique on both sides, turns each feature into a code (0 equal, 1 values differ, 2 missing
at serving, 3 missing in training; numerics within the tolerance, NaN as missing) in
Spark SQL, and reduces the codes per partition with numpy in `mapInArrow`: counts per
feature, per-segment mismatch counts, and the smallest mismatching keys. Those partials
(O(features × examples) each) are merged on the driver, exactly as the DuckDB path counts.
"""

from __future__ import annotations

import json
from datetime import datetime

from core.engines.spark.source import SparkSource, quoted
from core.errors import SchemaError
from skew.feature_values import JoinSettings, ValueCounts, ValueSkew, _plain, _plain_one, _segment_records
from skew.results import JoinStats

_KEY_CATEGORIES = ("serving_only", "training_only", "duplicate")


def spark_value_skew(training: SparkSource, serving: SparkSource, key: str, kinds: dict[str, str],
                     settings: JoinSettings = JoinSettings(), start: datetime | None = None,
                     end: datetime | None = None) -> ValueSkew:
    """As `skew.feature_values.value_skew`, computed by Spark."""
    def with_training(t):
        return serving.run(lambda s: _run(t, s, training, serving, key, kinds, settings), None, start, end)

    return training.run(with_training, None, start, end)


def _run(t, s, training, serving, key, kinds, settings) -> ValueSkew:
    from pyspark.sql import functions as F

    if t is None or s is None:
        raise SchemaError("feature-value skew: one side has no readable rows")
    for frame, side, role in ((t, training, "training"), (s, serving, "serving")):
        if key not in frame.columns:
            raise SchemaError(f"{side.location}: key column '{key}' is missing in the {role} data")
    keys = s.select(F.col(quoted(key)).alias("k"), F.lit(0).alias("side")).unionByName(
        t.select(F.col(quoted(key)).alias("k"), F.lit(1).alias("side")))
    key_counts = keys.groupBy("k").agg(F.sum(F.when(F.col("side") == 0, 1).otherwise(0)).alias("sn"),
                                       F.sum(F.when(F.col("side") == 1, 1).otherwise(0)).alias("tn"))
    join = _join_stats(key_counts, key, settings)

    counts: dict[str, ValueCounts] = {}
    compare: list[tuple[str, str]] = []
    for name, kind in kinds.items():
        if name == key:
            continue
        try:
            for frame, side, role in ((s, serving, "serving"), (t, training, "training")):
                _value_expression(frame, side, role, name, kind)
            compare.append((name, kind))
        except SchemaError as exc:
            counts[name] = ValueCounts(name, message=str(exc))
    segments = list(settings.segments)
    for column in segments:
        if column not in s.columns:
            raise SchemaError(f"{serving.location}: column '{column}' is missing in the serving data")
    segment_rows: dict = {}
    if compare:
        compared, segment_rows = _compare(s, t, serving, training, key, compare, segments, settings, key_counts,
                                          bool(join.duplicate_keys))
        counts.update(compared)
    _attach_examples(s, t, key, counts, settings)
    return ValueSkew(join, counts, _segment_records(segment_rows, counts, settings.max_segment_values),
                     passes=1 if compare else 0)


# ------------------------------------------------------------------ the key pass


def _key_kernel(n_examples: int):
    def run(batches):
        import numpy as np
        import pyarrow as pa

        totals = np.zeros(11, dtype=np.int64)
        examples = {name: [] for name in _KEY_CATEGORIES}
        for batch in batches:
            k, sn, tn = batch.column(0), batch.column(1).to_numpy(), batch.column(2).to_numpy()
            null = k.is_null().to_numpy(zero_copy_only=False)
            known = ~null
            totals += np.array([
                sn.sum(), tn.sum(), sn[null].sum(), tn[null].sum(),
                np.count_nonzero(known & (sn > 0) & (tn > 0)), np.count_nonzero(known & (sn == 1) & (tn == 1)),
                sn[known & (tn == 0)].sum(), tn[known & (sn == 0)].sum(),
                np.count_nonzero(known & (sn > 1)), np.count_nonzero(known & (tn > 1)),
                np.count_nonzero(known & ((sn > 1) | (tn > 1))),
            ], dtype=np.int64)
            masks = {"serving_only": known & (tn == 0), "training_only": known & (sn == 0),
                     "duplicate": known & ((sn > 1) | (tn > 1))}
            for name, mask in masks.items():  # the partition's n smallest so far
                examples[name] = sorted(examples[name] + smallest(k.filter(pa.array(mask)), n_examples))[:n_examples]
        yield pa.RecordBatch.from_pydict({"payload": [json.dumps(
            {"totals": totals.tolist(), "examples": examples}, default=str).encode()]})

    return run


def smallest(values, n: int) -> list:
    """The n smallest non-null values of an Arrow array (ints numerically, strings lexically)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.drop_null(values)
    if not len(values) or n <= 0:
        return []
    order = pc.select_k_unstable(pa.table({"v": values}), min(n, len(values)), [("v", "ascending")])
    return sorted(values.take(order).to_pylist())


def _join_stats(key_counts, key: str, settings: JoinSettings) -> JoinStats:
    n = max(settings.max_examples, 1)
    rows = key_counts.mapInArrow(_key_kernel(n), "payload binary").collect()
    totals = [0] * 11
    examples: dict[str, list] = {name: [] for name in _KEY_CATEGORIES}
    for row in rows:
        part = json.loads(bytes(row.payload))
        totals = [a + b for a, b in zip(totals, part["totals"])]
        for name in _KEY_CATEGORIES:
            examples[name] += part["examples"][name]
    (serving_rows, training_rows, serving_null_keys, training_null_keys, matched, compared, serving_only,
     training_only, serving_dups, training_dups, duplicate_keys) = totals
    return JoinStats(
        key=key, serving_rows=serving_rows, training_rows=training_rows, matched=matched,
        serving_only=serving_only, training_only=training_only, duplicate_keys=duplicate_keys,
        serving_duplicate_keys=serving_dups, training_duplicate_keys=training_dups,
        serving_null_keys=serving_null_keys, training_null_keys=training_null_keys, compared=compared,
        examples={name: _plain(sorted(values)[:n]) for name, values in examples.items()},
    )


# ------------------------------------------------------------------ the value pass

_NUMERIC_TYPES = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType",
                  "BooleanType")


def _value_expression(frame, side: SparkSource, role: str, name: str, kind: str):
    """Numerics as double with NaN as null; categoricals as their text (as the DuckDB path compares)."""
    from pyspark.sql import functions as F

    if name not in frame.columns:
        raise SchemaError(f"{side.location}: column '{name}' is missing in the {role} data")
    column, data_type = F.col(quoted(name)), frame.schema[name].dataType
    if kind == "numeric":
        type_name = type(data_type).__name__
        if type_name in _NUMERIC_TYPES:
            value = column.cast("double")
        elif type_name == "StringType":
            value = F.expr(f"try_cast({quoted(name)} AS DOUBLE)")
        else:
            raise SchemaError(f"column '{name}' has type {data_type.simpleString().upper()} in the {role} data, "
                              "not a number")
        return F.when(F.isnan(value), F.lit(None)).otherwise(value)
    return column.cast("string")


def _code(kind: str, a, b, tolerance):
    """0 equal, 1 values differ, 2 missing at serving only, 3 missing in training only."""
    from pyspark.sql import functions as F

    if kind == "numeric" and tolerance.decimals is not None:
        equal = F.round(a, tolerance.decimals) == F.round(b, tolerance.decimals)
    elif kind == "numeric":
        equal = (a == b) | (F.abs(a - b) <= F.lit(float(tolerance.absolute)) + F.lit(float(tolerance.relative)) * F.abs(b))
    else:
        equal = a == b
    return (F.when(a.isNull(), F.when(b.isNull(), 0).otherwise(2)).when(b.isNull(), 3)
            .when(equal, 0).otherwise(1)).cast("tinyint")


def _codes_kernel(n_features: int, n_segments: int, n_examples: int):
    def run(batches):
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        counts = np.zeros((n_features, 3), dtype=np.int64)
        compared = 0
        examples: list[list] = [[] for _ in range(n_features)]
        segments: dict[tuple[int, object], list] = {}
        for batch in batches:
            keys = batch.column(0)
            codes = np.column_stack([batch.column(1 + i).to_numpy(zero_copy_only=False)
                                     for i in range(n_features)]).astype(np.int8)
            compared += batch.num_rows
            for c in (1, 2, 3):
                counts[:, c - 1] += np.count_nonzero(codes == c, axis=0)
            differs = codes != 0
            for i in range(n_features):
                if differs[:, i].any():
                    examples[i] = sorted(examples[i] + smallest(keys.filter(pa.array(differs[:, i])),
                                                                n_examples))[:n_examples]
            for j in range(n_segments):
                values = batch.column(1 + n_features + j).to_pandas()
                frame = pd.DataFrame(differs).groupby(values.fillna("\0null"), sort=False)
                for value, (size, sums) in zip(frame.size().index, zip(frame.size().values, frame.sum().values)):
                    entry = segments.setdefault((j, None if value == "\0null" else value),
                                                [0, [0] * n_features])
                    entry[0] += int(size)
                    entry[1] = [a + int(b) for a, b in zip(entry[1], sums)]
        payload = {"compared": compared, "counts": counts.tolist(), "examples": examples,
                   "segments": [[j, value, entry[0], entry[1]] for (j, value), entry in segments.items()]}
        yield pa.RecordBatch.from_pydict({"payload": [json.dumps(payload, default=str).encode()]})

    return run


def _compare(s, t, serving, training, key, compare, segments, settings, key_counts,
             exclude_duplicates) -> tuple[dict[str, ValueCounts], dict]:
    """Per-feature counts (examples as bare keys) and per-segment mismatch counts."""
    from pyspark.sql import functions as F

    s_cols = [F.col(quoted(key)).alias("__k")]
    s_cols += [_value_expression(s, serving, "serving", n, k).alias(f"__s{i}") for i, (n, k) in enumerate(compare)]
    s_cols += [F.col(quoted(c)).cast("string").alias(f"__g{j}") for j, c in enumerate(segments)]
    t_cols = [F.col(quoted(key)).alias("__k")]
    t_cols += [_value_expression(t, training, "training", n, k).alias(f"__t{i}") for i, (n, k) in enumerate(compare)]
    pairs = s.select(*s_cols).join(t.select(*t_cols), "__k")
    if exclude_duplicates:  # which pair would be the right one is unknown: leave those keys out
        duplicated = key_counts.where((F.col("sn") > 1) | (F.col("tn") > 1)).select(F.col("k").alias("__k"))
        pairs = pairs.join(duplicated, "__k", "left_anti")
    codes = [_code(kind, F.col(f"__s{i}"), F.col(f"__t{i}"), settings.tolerances.get(name, settings.tolerance))
             .alias(f"__c{i}") for i, (name, kind) in enumerate(compare)]
    coded = pairs.select(F.col("__k"), *codes, *[F.col(f"__g{j}") for j in range(len(segments))])
    n = max(settings.max_examples, 1)
    rows = coded.mapInArrow(_codes_kernel(len(compare), len(segments), n), "payload binary").collect()
    compared, totals = 0, [[0, 0, 0] for _ in compare]
    examples: list[list] = [[] for _ in compare]
    segment_rows: dict = {}
    for row in rows:
        part = json.loads(bytes(row.payload))
        compared += part["compared"]
        totals = [[a + b for a, b in zip(mine, theirs)] for mine, theirs in zip(totals, part["counts"])]
        examples = [mine + theirs for mine, theirs in zip(examples, part["examples"])]
        for j, value, size, sums in part["segments"]:
            entry = segment_rows.setdefault((segments[j], value), {"compared": 0, "features": {}})
            entry["compared"] += size
            for (name, _), mismatched in zip(compare, sums):
                if mismatched:
                    entry["features"][name] = entry["features"].get(name, 0) + mismatched
    result: dict[str, ValueCounts] = {}
    for i, (name, _) in enumerate(compare):
        value, serving_null, training_null = totals[i]
        keys = sorted(examples[i], key=_sort_key)[:settings.max_examples]
        result[name] = ValueCounts(name, compared, value, serving_null, training_null,
                                   tuple({"key": k} for k in keys))
    return result, segment_rows


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _attach_examples(s, t, key, counts, settings) -> None:
    """Both sides' values for the example ids (at most max_examples per feature), in two small queries."""
    from pyspark.sql import functions as F

    names = [n for n, c in counts.items() if c.examples]
    if not names:
        return
    wanted = sorted({e["key"] for n in names for e in counts[n].examples}, key=_sort_key)
    fetched = {}
    for role, frame in (("serving", s), ("training", t)):
        columns = [F.col(quoted(key))] + [F.col(quoted(n)) for n in names]
        rows = frame.where(F.col(quoted(key)).isin(wanted)).select(*columns).collect()
        fetched[role] = {row[0]: dict(zip(names, row[1:])) for row in rows}
    for name in names:
        old = counts[name]
        examples = tuple(
            {"key": _plain_one(e["key"]), "serving": _plain_one(fetched["serving"].get(e["key"], {}).get(name)),
             "training": _plain_one(fetched["training"].get(e["key"], {}).get(name))}
            for e in old.examples)
        counts[name] = ValueCounts(name, old.compared, old.value_mismatches, old.serving_null, old.training_null,
                                   examples, old.message)
