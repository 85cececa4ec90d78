"""Feature-value skew: join serving rows with the training examples of the same events.

TFDV's DetectFeatureSkew, on Parquet/CSV/JSONL through DuckDB. A keys-only pass (one
aggregate over both sides' keys) counts both sides, the matches, the rows on one side only
and the duplicated keys; value passes then join the pairs whose key is unique on both sides
and count, per feature, the pairs whose values differ beyond the tolerance (or after
rounding) and, separately, the pairs where one side is missing (null or NaN; NaN equals
NaN). The smallest few mismatching ids per feature are kept and their values fetched at
the end.

Memory is bounded by DuckDB's `memory_limit` (it spills beyond it). The hash join's build
side costs about `_ROW_BYTES` per row plus `_VALUE_BYTES` per compared value, so features
are compared in as many passes as it takes for one pass's table to fit the limit: each
pass reads only its own columns (Parquet is columnar), which measured cheaper than one
pass spilling to disk (10M x 10M rows x 30 features: 37 vs 49 CPU seconds).
Identifiers are checked against the data's columns and quoted; values (file lists,
window bounds, tolerances) are bound as parameters.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from core.errors import DataSourceError, SchemaError
from core.sources import Source
from skew.results import JoinStats, SegmentSkew

_ROW_BYTES = 56  # key, hash-table entry and row header per build-side row (measured, DuckDB 2.0)
_VALUE_BYTES = 12  # per compared value per row
_BUDGET_SHARE = 0.8  # of memory_limit given to one pass's hash table
_MAX_PER_PASS = 32  # 2-bit codes per feature packed into one UBIGINT
_INTEGER = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "UHUGEINT"}
_NUMBER = _INTEGER | {"FLOAT", "DOUBLE", "REAL"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}


@dataclass(frozen=True)
class Tolerance:
    """Values equal when |serving - training| <= absolute + relative * |training|, or, with
    `decimals`, when both round to the same number of that many decimals."""

    absolute: float = 1e-9
    relative: float = 1e-9
    decimals: int | None = None


@dataclass(frozen=True)
class JoinSettings:
    tolerance: Tolerance = Tolerance()
    tolerances: dict[str, Tolerance] = field(default_factory=dict)  # per feature
    segments: tuple[str, ...] = ()  # serving columns whose values get their own mismatch rates
    max_examples: int = 5  # mismatching ids kept per feature
    max_segment_values: int = 20  # per segment column, the values with the most mismatches
    memory_limit: str = "1.5GB"
    threads: int = 2

    def __post_init__(self) -> None:
        memory_bytes(self.memory_limit)
        if self.threads < 1:
            raise SchemaError("threads: must be at least 1")
        if self.max_examples < 0:
            raise SchemaError("max_examples: must be >= 0")


@dataclass(frozen=True)
class ValueCounts:
    feature: str
    compared: int = 0
    value_mismatches: int = 0
    serving_null: int = 0
    training_null: int = 0
    examples: tuple[dict, ...] = ()
    message: str | None = None  # why the feature could not be compared


@dataclass(frozen=True)
class ValueSkew:
    join: JoinStats
    features: dict[str, ValueCounts]
    segments: tuple[SegmentSkew, ...] = ()
    passes: int = 0


def memory_bytes(text: str) -> int:
    match = _SIZE.match(str(text))
    if not match:
        raise SchemaError(f"memory_limit {text!r}: expected a size such as 512MB or 1.5GB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def run_sql(con, sql: str, params: dict):
    """Execute with the named parameters the statement uses (DuckDB rejects unused ones)."""
    used = set(_PARAM.findall(sql))
    return con.execute(sql, {k: v for k, v in params.items() if k in used})


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Side:
    """One input as a DuckDB relation: native readers over the window's files, with the
    window's timestamp predicate; object-store sources go through their Arrow dataset."""

    def __init__(self, con, role: str, source: Source, start: datetime | None, end: datetime | None,
                 timestamp: str | None) -> None:
        self.role, self.source = role, source
        self.params: dict = {}
        local = isinstance(source.filesystem, pafs.LocalFileSystem)
        if local:
            files = _window_files(source, start, end)
            self.params[f"{role}_files"] = files or list(source.dataset.files)
            hive = "true" if any("=" in part for part in _parent_parts(self.params[f"{role}_files"][0])) else "false"
            reader = {
                "parquet": f"read_parquet(${role}_files, hive_partitioning = {hive}, union_by_name = true)",
                "csv": f"read_csv(${role}_files, hive_partitioning = {hive}, union_by_name = true"
                       + (", delim = '\\t')" if source.location.lower().endswith((".tsv", ".txt")) else ")"),
                "json": f"read_json(${role}_files, format = 'newline_delimited', hive_partitioning = {hive})",
            }[source.format]
            empty = not files  # nothing in the window: read the schema from all files, keep no rows
        else:
            reader, empty = f"{role}_arrow", False
            con.register(reader, source.dataset)
        try:
            described = run_sql(con, f"DESCRIBE SELECT * FROM {reader}", self.params).fetchall()
        except Exception as exc:  # duckdb.Error (imported lazily): a file DuckDB cannot read
            raise DataSourceError(f"{source.location}: cannot read ({_short(exc)})") from exc
        self.types = {row[0]: str(row[1]).upper() for row in described}
        conditions = ["false"] if empty else []
        if timestamp and timestamp in self.types and (start is not None or end is not None):
            column = quote(timestamp)
            kind = self.types[timestamp]
            if kind.startswith("TIMESTAMP WITH"):
                bounds = (start, end)
            else:  # naive timestamps (and text) are taken as UTC
                column = column if kind.startswith("TIMESTAMP") else f"TRY_CAST({column} AS TIMESTAMP)"
                bounds = tuple(None if b is None else b.astimezone(timezone.utc).replace(tzinfo=None)
                               for b in (start, end))
            for name, bound, op in ((f"{role}_start", bounds[0], ">="), (f"{role}_end", bounds[1], "<")):
                if bound is not None:
                    conditions.append(f"{column} {op} ${name}")
                    self.params[name] = bound
        self.relation = f"(SELECT * FROM {reader}" + (f" WHERE {' AND '.join(conditions)})" if conditions else ")")

    def column(self, name: str) -> str:
        if name not in self.types:
            raise SchemaError(f"{self.source.location}: column '{name}' is missing in the {self.role} data")
        return quote(name)


def _parent_parts(path: str) -> list[str]:
    return path.replace("\\", "/").split("/")[:-1]


def _window_files(source: Source, start: datetime | None, end: datetime | None) -> list[str]:
    """The files of the window: hive `dt=` partitions pruned as core.sources does."""
    schema = source.schema
    expression = None
    if (start is not None or end is not None) and "dt" in schema.names and pa.types.is_string(schema.field("dt").type):
        if start is not None:
            expression = ds.field("dt") >= start.astimezone(timezone.utc).strftime("%Y-%m-%d")
        if end is not None:
            upper = ds.field("dt") <= end.astimezone(timezone.utc).strftime("%Y-%m-%d")
            expression = upper if expression is None else expression & upper
    return [fragment.path for fragment in source.dataset.get_fragments(filter=expression)]


def _key_family(duck_type: str) -> str | None:
    if duck_type in _INTEGER:
        return "integer"
    if duck_type.startswith("VARCHAR") or duck_type == "UUID":
        return "string"
    return None


def check_key(training: _Side, serving: _Side, key: str) -> None:
    """The key must exist on both sides with the same family of type: never join '12' with 12."""
    families = {}
    for side in (training, serving):
        if key not in side.types:
            raise SchemaError(f"{side.source.location}: key column '{key}' is missing in the {side.role} data")
        family = _key_family(side.types[key])
        if family is None:
            raise SchemaError(f"key column '{key}' has type {side.types[key]} in the {side.role} data "
                              f"({side.source.location}); use an integer or string id")
        families[side.role] = family
    if families["training"] != families["serving"]:
        raise SchemaError(
            f"key column '{key}' is {training.types[key]} ({families['training']}) in the training data but "
            f"{serving.types[key]} ({families['serving']}) in the serving data; cast one side so the ids match")


def _value_expression(side: _Side, name: str, kind: str) -> str:
    """Numerics as DOUBLE with NaN as NULL; categoricals as a hash of their text (8 bytes, not the string)."""
    column, duck_type = side.column(name), side.types[name]
    if kind == "numeric":
        if duck_type in _NUMBER or duck_type.startswith("DECIMAL") or duck_type == "BOOLEAN":
            value = f"CAST({column} AS DOUBLE)"
        elif duck_type.startswith("VARCHAR"):
            value = f"TRY_CAST({column} AS DOUBLE)"
        else:
            raise SchemaError(f"column '{name}' has type {duck_type} in the {side.role} data, not a number")
        return f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"
    text = column if duck_type.startswith("VARCHAR") else f"CAST({column} AS VARCHAR)"
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE hash({text}) END"


def _connect(settings: JoinSettings, temp_dir: str):
    import duckdb

    config = {"memory_limit": settings.memory_limit, "threads": settings.threads, "temp_directory": temp_dir,
              "preserve_insertion_order": False}
    con = duckdb.connect(config=config)
    # Arrow writes Parquet min/max without NaN; DuckDB would then fold isnan() to false from the
    # statistics and miss NaNs (duckdb/duckdb#25521). Tell the scan NaN can be present; a DuckDB
    # without that setting loses the statistics optimizer instead.
    try:
        con.execute("LOAD parquet")
        con.execute("SET parquet_can_have_nan = true")
    except duckdb.Error:
        con.execute("SET disabled_optimizers = 'statistics_propagation'")
    return con


def value_skew(training: Source, serving: Source, key: str, kinds: dict[str, str],
               settings: JoinSettings = JoinSettings(), start: datetime | None = None,
               end: datetime | None = None, timestamp: str | None = None) -> ValueSkew:
    """Join on `key` and compare every feature in `kinds` present on both sides."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="driftline-skew-") as temp_dir:
        con = _connect(settings, temp_dir)
        try:
            return _run(con, training, serving, key, kinds, settings, start, end, timestamp)
        except duckdb.Error as exc:  # e.g. a file that turns out unreadable mid-scan
            raise DataSourceError(f"feature-value skew join failed: {_short(exc)}") from exc
        finally:
            con.close()


def _run(con, training, serving, key, kinds, settings, start, end, timestamp) -> ValueSkew:
    t = _Side(con, "training", training, start, end, timestamp)
    s = _Side(con, "serving", serving, start, end, timestamp)
    check_key(t, s, key)
    params = {**t.params, **s.params, "n_examples": max(settings.max_examples, 1)}
    k_t, k_s = t.column(key), s.column(key)
    # One aggregate over both sides' keys (cheaper than grouping each side and joining the groups).
    run_sql(con, f"""CREATE TEMP TABLE key_counts AS
        SELECT k, count(*) FILTER (WHERE side = 0) AS sn, count(*) FILTER (WHERE side = 1) AS tn
        FROM (SELECT {k_s} AS k, 0 AS side FROM {s.relation} UNION ALL SELECT {k_t} AS k, 1 AS side FROM {t.relation})
        GROUP BY k""", params)
    row = run_sql(con, """
        SELECT coalesce(sum(sn), 0), coalesce(sum(tn), 0),
               coalesce(sum(sn) FILTER (WHERE k IS NULL), 0), coalesce(sum(tn) FILTER (WHERE k IS NULL), 0),
               count(*) FILTER (WHERE k IS NOT NULL AND sn > 0 AND tn > 0),
               count(*) FILTER (WHERE k IS NOT NULL AND sn = 1 AND tn = 1),
               coalesce(sum(sn) FILTER (WHERE k IS NOT NULL AND tn = 0), 0),
               coalesce(sum(tn) FILTER (WHERE k IS NOT NULL AND sn = 0), 0),
               count(*) FILTER (WHERE k IS NOT NULL AND sn > 1),
               count(*) FILTER (WHERE k IS NOT NULL AND tn > 1),
               count(*) FILTER (WHERE k IS NOT NULL AND (sn > 1 OR tn > 1)),
               min(k, $n_examples) FILTER (WHERE k IS NOT NULL AND tn = 0),
               min(k, $n_examples) FILTER (WHERE k IS NOT NULL AND sn = 0),
               min(k, $n_examples) FILTER (WHERE k IS NOT NULL AND (sn > 1 OR tn > 1))
        FROM key_counts""", params).fetchone()
    (serving_rows, training_rows, serving_null_keys, training_null_keys, matched, compared, serving_only,
     training_only, serving_dups, training_dups, duplicate_keys, ex_s, ex_t, ex_d) = row
    join = JoinStats(
        key=key, serving_rows=int(serving_rows), training_rows=int(training_rows), matched=int(matched),
        serving_only=int(serving_only), training_only=int(training_only), duplicate_keys=int(duplicate_keys),
        serving_duplicate_keys=int(serving_dups), training_duplicate_keys=int(training_dups),
        serving_null_keys=int(serving_null_keys), training_null_keys=int(training_null_keys),
        compared=int(compared),
        examples={"serving_only": _plain(ex_s or []), "training_only": _plain(ex_t or []),
                  "duplicate": _plain(ex_d or [])},
    )
    if duplicate_keys:  # left out of the value comparison: which pair would be the right one is unknown
        run_sql(con, "CREATE TEMP TABLE dup_keys AS "
                     "SELECT k FROM key_counts WHERE k IS NOT NULL AND (sn > 1 OR tn > 1)", params)
    run_sql(con, "DROP TABLE key_counts", params)

    counts: dict[str, ValueCounts] = {}
    compare: list[tuple[str, str, str, str]] = []  # feature, kind, serving expr, training expr
    for name, kind in kinds.items():
        if name == key:
            continue
        try:
            compare.append((name, kind, _value_expression(s, name, kind), _value_expression(t, name, kind)))
        except SchemaError as exc:
            counts[name] = ValueCounts(name, message=str(exc))
    segments = [(name, s.column(name)) for name in settings.segments]
    per_pass = _features_per_pass(max(join.serving_rows, join.training_rows), len(segments),
                                  memory_bytes(settings.memory_limit))
    segment_rows: dict[tuple[str, str | None], dict] = {}
    example_keys: dict[str, list] = {}
    passes = 0
    for offset in range(0, len(compare), per_pass):
        chunk = compare[offset:offset + per_pass]
        passes += 1
        _compare_pass(con, s, t, k_s, k_t, chunk, segments, settings, params, bool(duplicate_keys),
                      counts, segment_rows, example_keys)
    if not compare:
        passes = 0
    if any(example_keys.values()):
        _attach_examples(con, s, t, k_s, k_t, counts, example_keys, kinds, params)
    return ValueSkew(join, counts, _segment_records(segment_rows, counts, settings.max_segment_values), passes)


def _features_per_pass(build_rows: int, n_segments: int, limit: int) -> int:
    per_row = _BUDGET_SHARE * limit / max(build_rows, 1)
    fitting = int((per_row - _ROW_BYTES - _VALUE_BYTES * n_segments) // _VALUE_BYTES)
    return min(_MAX_PER_PASS, max(1, fitting))


def _compare_pass(con, s, t, k_s, k_t, chunk, segments, settings, params, exclude_duplicates,
                  counts, segment_rows, example_keys) -> None:
    """One join over `chunk`'s features. Each pair gets a 2-bit code per feature (0 equal,
    1 values differ, 2 missing at serving, 3 missing in training), packed into one integer;
    grouping on that integer counts every feature at once (measured: about the cost of the
    bare join, where one filtered count per feature and code costs a third more)."""
    params = dict(params)
    s_cols = [f"{k_s} AS __k"] + [f"{expr} AS __v{i}" for i, (_, _, expr, _) in enumerate(chunk)]
    s_cols += [f"{column} AS __g{j}" for j, (_, column) in enumerate(segments)]
    t_cols = [f"{k_t} AS __k"] + [f"{expr} AS __v{i}" for i, (_, _, _, expr) in enumerate(chunk)]
    codes = []
    for i, (name, kind, _, _) in enumerate(chunk):
        a, b = f"s.__v{i}", f"t.__v{i}"
        equal = f"{a} = {b}"
        if kind == "numeric":
            tol = settings.tolerances.get(name, settings.tolerance)
            if tol.decimals is not None:
                params[f"dec{i}"] = int(tol.decimals)
                equal = f"round({a}, $dec{i}) = round({b}, $dec{i})"
            else:
                params[f"atol{i}"], params[f"rtol{i}"] = float(tol.absolute), float(tol.relative)
                equal = f"({a} = {b} OR abs({a} - {b}) <= $atol{i} + $rtol{i} * abs({b}))"
        codes.append(f"(CAST(CASE WHEN {a} IS NULL THEN (CASE WHEN {b} IS NULL THEN 0 ELSE 2 END) "
                     f"WHEN {b} IS NULL THEN 3 WHEN {equal} THEN 0 ELSE 1 END AS UBIGINT) << {2 * i})")
    n_seg = len(segments)
    seg_cols = "".join(f", s.__g{j} AS __g{j}" for j in range(n_seg))
    sets = "GROUP BY GROUPING SETS ((__m), " + ", ".join(f"(__m, __g{j})" for j in range(n_seg)) + ")" \
        if n_seg else "GROUP BY __m"
    flags = "".join(f", GROUPING(__g{j}) AS __gr{j}, CAST(__g{j} AS VARCHAR) AS __s{j}" for j in range(n_seg))
    outer_keys = [f"__gr{j}" for j in range(n_seg)] + [f"__s{j}" for j in range(n_seg)]
    sums = []
    for i in range(len(chunk)):
        code = f"((__m >> {2 * i}) & 3)"
        sums += [f"coalesce(sum(__n) FILTER (WHERE {code} = {c}), 0)" for c in (1, 2, 3)]
        sums.append(f"list_sort(flatten(list(__ex) FILTER (WHERE {code} <> 0)))")
    where = "WHERE s.__k NOT IN (SELECT k FROM dup_keys)" if exclude_duplicates else ""
    rows = run_sql(con, f"""
        WITH pairs AS (
            SELECT s.__k AS __k, ({' | '.join(codes)}) AS __m{seg_cols}
            FROM (SELECT {', '.join(s_cols)} FROM {s.relation}) s
            JOIN (SELECT {', '.join(t_cols)} FROM {t.relation}) t ON s.__k = t.__k
            {where}),
        grouped AS (
            SELECT __m, count(*) AS __n, min(__k, $n_examples) FILTER (WHERE __m <> 0) AS __ex{flags} FROM pairs {sets})
        SELECT {', '.join(outer_keys + ['sum(__n)'] + sums)} FROM grouped
        {'GROUP BY ' + ', '.join(outer_keys) if n_seg else ''}""", params).fetchall()
    for row in rows:
        grouping, values, rest = row[:n_seg], row[n_seg:2 * n_seg], row[2 * n_seg:]
        total = int(rest[0] or 0)
        if not n_seg or all(grouping):  # the overall row
            for i, (name, _, _, _) in enumerate(chunk):
                value, serving_null, training_null, examples = rest[1 + 4 * i:5 + 4 * i]
                counts[name] = ValueCounts(name, total, int(value), int(serving_null), int(training_null))
                example_keys[name] = list(examples or [])[:settings.max_examples]
            continue
        j = next(index for index, flag in enumerate(grouping) if not flag)
        entry = segment_rows.setdefault((segments[j][0], values[j]), {"compared": total, "features": {}})
        for i, (name, _, _, _) in enumerate(chunk):
            mismatched = sum(int(v) for v in rest[1 + 4 * i:4 + 4 * i])
            if mismatched:
                entry["features"][name] = mismatched


def _attach_examples(con, s, t, k_s, k_t, counts, example_keys, kinds, params) -> None:
    """Fetch both sides' values for the example ids (at most max_examples per feature)."""
    names = [n for n, keys in example_keys.items() if keys]
    wanted = sorted({k for n in names for k in example_keys[n]}, key=str)
    fetched = {}
    for side, key_column in ((s, k_s), (t, k_t)):
        columns = ", ".join(side.column(n) for n in names)
        rows = run_sql(
            con, f"SELECT {key_column}, {columns} FROM {side.relation} WHERE {key_column} IN (SELECT unnest($wanted))",
            {**params, "wanted": wanted}).fetchall()
        fetched[side.role] = {row[0]: dict(zip(names, row[1:])) for row in rows}
    for name in names:
        examples = tuple(
            {"key": _plain_one(k), "serving": _plain_one(fetched["serving"].get(k, {}).get(name)),
             "training": _plain_one(fetched["training"].get(k, {}).get(name))}
            for k in example_keys[name])
        old = counts[name]
        counts[name] = ValueCounts(name, old.compared, old.value_mismatches, old.serving_null, old.training_null,
                                   examples, old.message)


def _segment_records(segment_rows: dict, counts: dict[str, ValueCounts], limit: int) -> tuple[SegmentSkew, ...]:
    by_column: dict[str, list[SegmentSkew]] = {}
    for (column, value), entry in segment_rows.items():
        compared = entry["compared"]
        rates = {f: m / compared for f, m in sorted(entry["features"].items())} if compared else {}
        by_column.setdefault(column, []).append(
            SegmentSkew(column, value, compared, max(rates.values(), default=0.0), rates))
    records: list[SegmentSkew] = []
    for column, items in sorted(by_column.items()):  # by column name: the join's row order is arbitrary
        items.sort(key=lambda r: (-r.mismatch_rate, -r.compared, str(r.value)))
        records += items[:limit]
    return tuple(records)


def _plain_one(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _plain(values) -> list:
    return [_plain_one(v) for v in values]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
