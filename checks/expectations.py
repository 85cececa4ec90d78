"""Great Expectations glue: suites as editable JSON, validation of a DataFrame.

Suites are built here as plain GX 1.x suite JSON (`{"name", "expectations": [{"type",
"kwargs", "meta", "severity"}]}`), so deriving one needs no GX import; users edit the file.
On pandas the derived suite's expectation types, with kwargs and dtypes as derived, are
evaluated natively (checks.native_expectations: GX's results without GX's ~10 ms per
expectation); the rest goes through `great_expectations.ExpectationSuite`, which validates
each expectation (a bad one is a ConfigError naming it). GX itself (seconds to import) is
imported only then, once per process, with one ephemeral context and one batch definition
per backend (pandas, and Spark for the spark engine) reused for every window.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from core.errors import ConfigError, require

SUITE_FORMAT = "great_expectations/1"
_GX_STATE: dict = {}

# Type names per family; a column must keep its family (a retyped column fails). GX matches
# the names of the backend it runs on (pandas dtypes, or pyspark.sql.types classes) and skips
# the others, so one derived suite holds on both engines.
TYPE_FAMILIES = {
    "numeric": ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                "float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32",
                "Float64", "ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType",
                "DecimalType"],
    "string": ["object", "string", "str", "category", "StringType", "VarcharType", "CharType"],
    "boolean": ["bool", "boolean", "object", "BooleanType"],
    # Validated frames carry timestamps as naive UTC (checks.quality.validate_table), which GX matches.
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]", "TimestampType",
                  "TimestampNTZType"],
}


def expectation(kind: str, severity: str = "critical", why: str | None = None, **kwargs) -> dict:
    meta = {"driftline": why} if why else {}
    return {"type": kind, "kwargs": kwargs, "meta": meta, "severity": severity}


def save_suite(suite: dict, path: str | Path) -> Path:
    path = Path(path)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(suite, indent=2, default=_plain) + "\n")
    temporary.replace(path)
    return path


def load_suite(path: str | Path) -> dict:
    """Read a suite file; its expectations are checked against GX when it is validated."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the expectation suite ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ConfigError(f"{path}: an expectation suite needs an 'expectations' list")
    for index, item in enumerate(data["expectations"]):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(
                item.get("kwargs", {}), dict):
            raise ConfigError(f"{path}: expectations[{index}] needs a 'type' and a 'kwargs' mapping")
    data.setdefault("name", path.stem)
    return data


def suite_columns(suite: dict) -> list[str]:
    columns: list[str] = []
    for item in suite["expectations"]:
        kwargs = item.get("kwargs", {})
        for key in ("column", "column_A", "column_B"):
            if isinstance(kwargs.get(key), str):
                columns.append(kwargs[key])
        for key in ("column_list", "column_set"):
            if isinstance(kwargs.get(key), list):
                columns.extend(c for c in kwargs[key] if isinstance(c, str))
    return list(dict.fromkeys(columns))


@contextmanager
def _quiet():
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _gx():
    """The process's GX module, ephemeral context and pandas batch definition."""
    if not _GX_STATE:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        gx = require("great_expectations")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        with _quiet():
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas("driftline").add_dataframe_asset("window")
            _GX_STATE.update(gx=gx, context=context, batch=asset.add_batch_definition_whole_dataframe("whole"))
    return _GX_STATE


def _batch_definition(backend: str):
    """The whole-dataframe batch definition for `pandas` or `spark` (GX's Spark datasource, added on first use)."""
    state = _gx()
    if backend == "spark" and "spark_batch" not in state:
        with _quiet():
            # persist=False: the caller caches the window and releases it afterwards; GX would keep it cached.
            source = state["context"].data_sources.add_spark("driftline-spark", persist=False)
            state["spark_batch"] = source.add_dataframe_asset("window").add_batch_definition_whole_dataframe("whole")
    return state["spark_batch" if backend == "spark" else "batch"]


def build_gx_suite(suite: dict, where: str = "suite"):
    """A GX ExpectationSuite from the JSON; a bad expectation raises ConfigError naming it."""
    state = _gx()
    gx = state["gx"]
    expectations = []
    for index, item in enumerate(suite["expectations"]):
        try:
            with _quiet():
                probe = gx.ExpectationSuite(name="probe", expectations=[item])
        except Exception as exc:  # GX raises several unrelated types for a bad configuration
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{where}: expectations[{index}] ({item.get('type')}): {message[:200]}") from exc
        if len(probe.expectations) != 1:  # an unknown type is logged and dropped, not raised
            raise ConfigError(f"{where}: expectations[{index}] ({item.get('type')}): unknown expectation type")
        expectations.append(item)
    with _quiet():
        return gx.ExpectationSuite(name=str(suite.get("name", "driftline")), expectations=expectations)


GROUP_COLUMNS = 200  # a wide pandas frame is validated this many columns at a time


def validate_frame(suite: dict, frame, partial_count: int = 10, where: str = "suite",
                   backend: str = "pandas", native: bool = True) -> list[dict]:
    """Validate a pandas (or, backend="spark", a Spark) DataFrame; one plain dict per expectation, in suite order.

    On pandas the derived suite's expectation types are evaluated natively with GX's results
    (checks.native_expectations; native=False: all by GX, the tests' oracle); the others go to
    GX, which is imported only then. GX resolves each column name against every column of the
    frame, so a suite over a wide frame costs columns x expectations; its single-column
    expectations are validated on frames of GROUP_COLUMNS columns at a time (the same results).
    """
    results: dict[int, dict] = {}
    if backend == "pandas" and native:
        from checks.native_expectations import evaluate

        columns: dict = {}
        for index, item in enumerate(suite["expectations"]):
            result = evaluate(item, frame, partial_count, columns)
            if result is not None:
                results[index] = result
    rest = [(index, item) for index, item in enumerate(suite["expectations"]) if index not in results]
    from_gx: dict[int, dict] = {}
    if rest:
        if backend != "pandas" or len(frame.columns) <= GROUP_COLUMNS:
            from_gx = _validate(suite, rest, frame, partial_count, where, backend)
        else:
            for group, columns in _column_groups(rest, frame):
                from_gx |= _validate(suite, group, frame if columns is None else frame[columns], partial_count,
                                     where, backend)
    present = set(frame.columns)
    for item in from_gx.values():
        column = item["kwargs"].get("column")
        if item["type"] != "expect_column_to_exist" and isinstance(column, str) and column not in present:
            # GX reports these unevenly (a plain failure, or an IndexError): say what it is, on every backend.
            item.update(success=False, result={}, exception=f"column '{column}' is missing")
    results |= from_gx
    return [results[index] for index in sorted(results)]


def _column_groups(items: list[tuple[int, dict]], frame):
    """(indexed items, their frame's columns) per GROUP_COLUMNS columns; None: the whole frame
    (table-level, multi-column and positional expectations)."""
    present = set(frame.columns)
    whole, by_column = [], {}
    for index, item in items:
        kwargs = item.get("kwargs", {})
        column = kwargs.get("column")
        if isinstance(column, str) and "column_index" not in kwargs:
            by_column.setdefault(column, []).append((index, item))
        else:
            whole.append((index, item))
    names = list(by_column)
    for start in range(0, len(names), GROUP_COLUMNS):
        group = names[start:start + GROUP_COLUMNS]
        yield [e for c in group for e in by_column[c]], [c for c in group if c in present]
    if whole:
        yield whole, None


def _validate(suite: dict, items: list[tuple[int, dict]], frame, partial_count: int, where: str,
              backend: str) -> dict[int, dict]:
    """GX's result per suite index. GX orders its results by column and normalises kwargs (int
    bounds to float, defaults left out): they are matched to the items by GX's own configurations."""
    gx_suite = build_gx_suite({**suite, "expectations": [item for _, item in items]}, where)
    batch = _batch_definition(backend).get_batch(batch_parameters={"dataframe": frame})
    with _quiet():
        outcome = batch.validate(gx_suite, result_format={"result_format": "SUMMARY",
                                                          "partial_unexpected_count": partial_count})
    pending: dict[str, list[dict]] = {}
    for item in outcome.results:
        config = item.expectation_config
        info = item.exception_info or {}
        record = {
            "type": config.type,
            "kwargs": {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"},
            "severity": str(getattr(config.severity, "value", config.severity) or "critical"),
            "meta": dict(config.meta or {}),
            "success": bool(item.success),
            "result": dict(item.result or {}),
            "exception": info.get("exception_message") if info.get("raised_exception") else None,
        }
        pending.setdefault(_key(record["type"], record["kwargs"]), []).append(record)
    by_index = {}
    for (index, _), expectation_ in zip(items, gx_suite.expectations):
        config = expectation_.configuration
        bucket = pending.get(_key(config.type, dict(config.kwargs))) or []
        if bucket:
            by_index[index] = bucket.pop(0)
    # Not expected (a configuration GX did not give back as it was given): kept, after the suite's.
    leftovers = [r for bucket in pending.values() for r in bucket]
    size, last = len(suite["expectations"]), items[-1][0]
    return by_index | {size * (k + 1) + last: record for k, record in enumerate(leftovers)}


def _key(kind: str, kwargs: dict) -> str:
    return kind + json.dumps({k: v for k, v in kwargs.items() if k != "batch_id"}, sort_keys=True, default=_plain)


def _plain(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
