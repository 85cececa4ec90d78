"""Data quality: a Great Expectations suite derived from the reference, validated per window.

`derive_suite` writes what the reference says is normal as GX 1.x expectations: every
column exists and keeps its type family; per numeric column a value range (reference
min/max widened by a share of the span, `mostly` so a stray outlier is not an incident)
and a null-rate bound; per categorical column its value set, or for many distinct values
the top-k set with the coverage seen in the reference; the example id unique and
non-null; predictions within [0, 1] and labels within {0, 1}. The suite is JSON the user
can edit (`--write-suite`, then `--suite` / `checks.data_quality.suite`).

Each window is validated in full up to `sample_rows` rows (default 1M), beyond that on a
uniform sample of that size; the result states which (`validated_rows`, `window_rows`,
`sampled`). Measured through GX (bench/RESULTS.md, `bench.detect --gx-cost`): a 24-expectation
suite takes ~2.5 s on a 1M-row window plus ~2 s to build the pandas frame, a 100k sample ~0.5 s;
the derived suite's expectation types now run natively with GX's results
(checks.native_expectations), GX only for the rest of an edited suite.
A sample finds a range fault as well, but sees a duplicated id only when both rows are
drawn, so windows are validated whole up to the bound, which only stops runaway windows.

Statuses: a failed expectation of severity `critical` alerts, `warning` warns, `info`
is reported only; an expectation that could not run (its column is missing) is `error`.

On the spark engine the same suite validates the window in Spark (`checks.quality_spark`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.checks import WindowCheck, register_check
from checks.settings import QualityCheckConfig
from core.results import CheckResult, FeatureDrift, worst_status
from checks.expectations import TYPE_FAMILIES, expectation, load_suite, suite_columns, validate_frame
from core.errors import SchemaError

TABLE = "(table)"
OFFENDING_VALUES = 10
_STATUS_OF_SEVERITY = {"critical": "alert", "warning": "warn", "info": "ok"}


def type_family(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_dictionary(arrow_type):
        return type_family(arrow_type.value_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return None


@dataclass(frozen=True)
class SuiteParams:
    range_tolerance: float = 0.1
    range_mostly: float = 0.999
    null_rate_tolerance: float = 0.02
    threshold_mode: str = "static"  # learned: null-rate bounds also cover the reference's chunk-to-chunk spread
    unseen_tolerance: float = 0.01
    top_k: int = 1000
    sample_rows: int = 1_000_000


def derive_suite(reference: pa.Table, kinds: dict[str, str], id_column: str | None = None,
                 predictions: list[str] = (), labels: list[str] = (), params: SuiteParams = SuiteParams(),
                 name: str = "driftline") -> dict:
    """The expectation suite (GX 1.x JSON) that the reference sample satisfies."""
    items: list[dict] = []
    rows = reference.num_rows
    position = {name: index for index, name in enumerate(reference.column_names)}  # by name: O(columns) each
    for column, kind in kinds.items():
        if column not in position:
            raise SchemaError(f"reference: column '{column}' is missing")
        values = reference.column(position[column])
        items.append(expectation("expect_column_to_exist", column=column))
        family = type_family(values.type)
        if family:
            items.append(expectation("expect_column_values_to_be_in_type_list", why="type",
                                     column=column, type_list=TYPE_FAMILIES[family]))
        bound = _null_bound(values, params)
        if bound < 1:
            items.append(expectation("expect_column_values_to_not_be_null", why="null rate",
                                     column=column, mostly=round(1 - bound, 6)))
        if kind == "numeric":
            items.extend(_range(column, values, params))
        elif kind != "timestamp":  # a timestamp keeps its type and null rate; its range moves with time
            items.extend(_value_set(column, values, params))
    if id_column:
        if id_column not in position:
            raise SchemaError(f"reference: id column '{id_column}' is missing")
        items.append(expectation("expect_column_values_to_be_unique", why="id", column=id_column))
        items.append(expectation("expect_column_values_to_not_be_null", why="id", column=id_column))
    for column in predictions:
        items.append(expectation("expect_column_values_to_be_between", why="probability", column=column,
                                 min_value=0.0, max_value=1.0))
    for column in labels:
        items.append(expectation("expect_column_values_to_be_in_set", why="binary label", column=column,
                                 value_set=[0, 1]))
    return {"name": name, "expectations": items,
            "meta": {"driftline": {"derived_from_rows": rows, **params.__dict__}}}


def _missing_rate(values) -> float:
    missing = values.null_count
    if pa.types.is_floating(values.type):
        missing += int(pc.sum(pc.is_nan(values)).as_py() or 0)  # pandas (and GX) count NaN as null
    return missing / len(values) if len(values) else 0.0


def _null_bound(values: pa.ChunkedArray, params: SuiteParams) -> float:
    """Reference null rate + tolerance; learned: at least mean + 5 std of the rate over 10 row-order chunks."""
    bound = _missing_rate(values) + params.null_rate_tolerance
    if params.threshold_mode == "learned" and len(values) >= 10:
        edges = np.linspace(0, len(values), 11).astype(int)
        rates = [_missing_rate(values.slice(a, b - a)) for a, b in zip(edges[:-1], edges[1:])]
        bound = max(bound, float(np.mean(rates) + 5 * np.std(rates, ddof=1)))
    return bound


def _range(column: str, values: pa.ChunkedArray, params: SuiteParams) -> list[dict]:
    numbers = pc.cast(values, pa.float64())
    finite = pc.filter(numbers, pc.is_finite(numbers))
    if len(finite) == 0:
        return []
    bounds = pc.min_max(finite)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    margin = params.range_tolerance * (high - low) if high > low else params.range_tolerance * max(abs(high), 1.0)
    return [expectation("expect_column_values_to_be_between", why="range", column=column,
                        min_value=low - margin, max_value=high + margin, mostly=params.range_mostly)]


def _value_set(column: str, values: pa.ChunkedArray, params: SuiteParams) -> list[dict]:
    counts = pc.value_counts(values.drop_null()) if len(values) else None
    if counts is None or len(counts) == 0:
        return []
    pairs = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()),
                   key=lambda item: (-item[1], str(item[0])))
    total = sum(c for _, c in pairs)
    kept = pairs[: params.top_k]
    coverage = sum(c for _, c in kept) / total
    mostly = max(0.0, min(1.0, coverage - params.unseen_tolerance))
    why = "value set" if len(kept) == len(pairs) else f"top-{params.top_k} coverage"
    return [expectation("expect_column_values_to_be_in_set", why=why, column=column,
                        value_set=sorted((v for v, _ in kept), key=str), mostly=round(mostly, 6))]


def judge(results: list[dict]) -> tuple[list[dict], tuple[FeatureDrift, ...]]:
    """Per-expectation records (bounded offending values) and one record per column."""
    records = []
    for item in results:
        result = item["result"]
        column = item["kwargs"].get("column") or TABLE
        if item["exception"]:
            status = "error"
        elif item["success"]:
            status = "ok"
        else:
            status = _STATUS_OF_SEVERITY.get(item["severity"], "alert")
        element_count = result.get("element_count")
        unexpected = result.get("unexpected_count")
        records.append({
            "expectation": item["type"],
            "column": column,
            "why": item["meta"].get("driftline"),
            "severity": item["severity"],
            "success": item["success"],
            "status": status,
            "element_count": element_count,
            "unexpected_count": unexpected,
            "unexpected_fraction": (unexpected / element_count) if element_count and unexpected is not None else None,
            "missing_count": result.get("missing_count"),
            "observed_value": _short(result.get("observed_value")),
            "offending_values": [{"value": _short(v["value"]), "count": v["count"]}
                                 for v in (result.get("partial_unexpected_counts") or [])[:OFFENDING_VALUES]],
            "kwargs": {k: _short(v) for k, v in item["kwargs"].items()},
            "message": item["exception"][:300] if item["exception"] else None,
        })
    by_column: dict[str, list[dict]] = {}
    for record in records:
        by_column.setdefault(record["column"], []).append(record)
    features = []
    for column, own in by_column.items():
        failed = [r for r in own if r["status"] != "ok"]
        fractions = [r["unexpected_fraction"] for r in own if r["unexpected_fraction"] is not None]
        statuses = [r["status"] for r in own]
        features.append(FeatureDrift(
            feature=column, kind="quality", method="expectations", score=max(fractions) if fractions else None,
            threshold=None, status="error" if all(s == "error" for s in statuses) else _worst(statuses),
            reference_count=0, current_count=max((r["element_count"] or 0 for r in own), default=0),
            reasons=tuple(f"{r['expectation']} failed" + (f" ({r['why']})" if r["why"] else "") for r in failed),
            message=next((r["message"] for r in own if r["message"]), None),
        ))
    return records, tuple(features)


def _worst(statuses: list[str]) -> str:
    order = {"ok": 0, "warn": 1, "error": 2, "alert": 3}
    return max(statuses, key=lambda s: order.get(s, 0)) if statuses else "ok"


def _short(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in list(value)[:20]]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in list(value.items())[:20]}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value[:200] if isinstance(value, str) else value
    return str(value)[:200]


def validate_table(suite: dict, table: pa.Table, window_rows: int | None = None, where: str = "suite",
                   **context) -> CheckResult:
    """Validate an Arrow table (a window, or a sample of one) and judge the outcome."""
    results = validate_frame(suite, _naive_utc_timestamps(table).to_pandas(), where=where)
    return quality_result(suite, results, table.num_rows, table.num_rows if window_rows is None else window_rows,
                          **context)


def _naive_utc_timestamps(table: pa.Table) -> pa.Table:
    """GX cannot name a timezone-aware pandas dtype in a type list: validate timestamps as naive UTC."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            table = table.set_column(index, field.name, pc.cast(table.column(index), pa.timestamp(field.type.unit)))
            table = table.replace_schema_metadata(None)  # pandas metadata would put the timezone back
    return table


def quality_result(suite: dict, results: list[dict], validated_rows: int, window_rows: int,
                   **context) -> CheckResult:
    """The check result of GX's per-expectation results, whichever engine validated them."""
    records, features = judge(results)
    details = {
        "suite": suite.get("name"),
        "expectations_total": len(records),
        "expectations_failed": sum(not r["success"] for r in records),
        "validated_rows": validated_rows,
        "window_rows": window_rows,
        "sampled": validated_rows < window_rows,
        "expectations": records,
    }
    status = "insufficient_data" if validated_rows == 0 else worst_status(f.status for f in features)
    return CheckResult(check="data_quality", status=status, features=features, current_rows=window_rows,
                       details=details, **context)


def read_for_suite(batches, suite: dict, sample_rows: int, schema: pa.Schema | None = None) -> tuple[pa.Table, int]:
    """The suite's columns of a window: all rows up to `sample_rows`, else a uniform sample; and the row count."""
    from core.sources import sample_batches

    seen = 0

    def counted():
        nonlocal seen
        for batch in batches:
            seen += batch.num_rows
            yield batch

    columns = suite_columns(suite)
    table = sample_batches(counted(), sample_rows, seed=0, schema=schema, columns=columns)
    return table, seen


# ------------------------------------------------------------------ the window check


class QualityWindowCheck(WindowCheck):
    name = "data_quality"

    def __init__(self, model_config, check_config=None) -> None:
        from checks.settings import QualityCheckConfig

        self.model = model_config
        self.config = check_config or QualityCheckConfig()
        self.params = SuiteParams(**self.config.check_params())

    def suite(self, context) -> dict:
        if self.config.suite:
            path = context.runner.config.base_dir / self.config.suite
            return load_suite(path)
        from core.profile import infer_kind
        from core.reference import source_fingerprint

        schema = self.model.model_schema
        source = context.reference_source()
        kinds = dict(self.model.feature_kinds)
        if self.config.columns is not None:
            names = set(source.schema.names)
            missing = [c for c in self.config.columns if c not in kinds and c not in names]
            if missing:
                raise SchemaError(f"{source.location}: column '{missing[0]}' is not in the reference data")
            kinds = {c: kinds.get(c) or infer_kind(source.schema.field(c).type) for c in self.config.columns}
        key = ("data_quality.suite", source_fingerprint(source), tuple(kinds.items()), self.params,
               schema.example_id)

        def derive() -> dict:
            names = set(source.schema.names)
            present = [c for c in kinds if c in names]
            missing = [c for c in kinds if c not in names]
            if missing:
                raise SchemaError(f"{source.location}: column '{missing[0]}' is not in the reference data")
            id_column = schema.example_id if schema.example_id in names else None
            sample = source.sample(200_000, present + ([id_column] if id_column else []), seed=0)
            return derive_suite(sample, kinds, id_column, list(schema.predictions),
                                [label.name for label in schema.labels], self.params,
                                name=f"{self.model.name}-quality")

        return context.state.get_or_create(key, derive)

    def run(self, context) -> CheckResult:
        suite = self.suite(context)
        # On Spark only the window's validation moves there; the suite is the one the embedded engine uses.
        on_spark = context.runner.engine.name == "spark"
        source = context.serving_source()  # a SparkSource on the spark engine
        # Predictions and labels may live elsewhere than the serving logs: judge them only when present.
        schema = self.model.model_schema
        names = set(source.schema.names)
        absent = {c for c in [*schema.predictions, *(label.name for label in schema.labels)] if c not in names}
        if absent:
            suite = {**suite, "expectations": [e for e in suite["expectations"]
                                               if e.get("kwargs", {}).get("column") not in absent]}
        where = self.config.suite or "derived suite"
        if on_spark:
            from checks.quality_spark import validate_on_spark

            return validate_on_spark(suite, source, self.params.sample_rows, context.start, context.end, where,
                                     **context.result_context)
        columns = [c for c in suite_columns(suite) if c in names]
        table, rows = read_for_suite(source.batches(columns, context.start, context.end), suite,
                                     self.params.sample_rows, source.schema)
        bad = tuple(f"{path}: {why}" for path, why in source.report.bad_files)
        return validate_table(suite, table, rows, where=where, partial=bool(bad), bad_files=bad,
                              **context.result_context)


@register_check("data_quality", params=QualityCheckConfig, needs=("rows",), preload=("great_expectations",),
                summary="the window against a Great Expectations suite derived from the reference")
def quality_check(model_config, check_config=None) -> QualityWindowCheck:
    return QualityWindowCheck(model_config, check_config)


def quality_between(current: str, reference: str | None = None, suite_path: str | None = None,
                    write_suite: str | None = None, id_column: str | None = None,
                    sample_rows: int = SuiteParams.sample_rows, engine=None) -> CheckResult:
    """One-off (`driftline check quality`): derive a suite from the reference (or load one), validate current.

    `engine`: a SparkEngine validates `current` on Spark; the suite is derived here either way.
    """
    from core.errors import DataSourceError
    from core.reference import feature_kinds
    from core.sources import Source

    if suite_path is None and reference is None:
        raise DataSourceError("give --reference to derive a suite, or --suite to load one")
    params = SuiteParams(sample_rows=sample_rows)
    if suite_path is not None:
        suite = load_suite(suite_path)
    else:
        reference_source = Source(reference)
        kinds = feature_kinds(reference_source, None)
        # Timestamps are no drift features, but a garbage value in one (read as text) is a quality fault.
        timestamps = {f.name for f in reference_source.schema if pa.types.is_timestamp(f.type)}
        kinds = {f.name: kinds.get(f.name, "timestamp") for f in reference_source.schema
                 if f.name in kinds or f.name in timestamps}
        if id_column is not None and id_column not in reference_source.schema.names:
            raise SchemaError(f"{reference}: id column '{id_column}' is missing")
        kinds.pop(id_column, None)
        sample = reference_source.sample(200_000, list(kinds) + ([id_column] if id_column else []), seed=0)
        suite = derive_suite(sample, kinds, id_column, params=params)
    if write_suite is not None:
        from checks.expectations import save_suite

        save_suite(suite, write_suite)
    where = suite_path or "derived suite"
    if engine is not None:
        from checks.quality_spark import validate_on_spark

        return validate_on_spark(suite, engine.source(current), params.sample_rows, where=where)
    current_source = Source(current)
    names = set(current_source.schema.names)
    columns = [c for c in suite_columns(suite) if c in names]
    table, rows = read_for_suite(current_source.batches(columns), suite, params.sample_rows, current_source.schema)
    bad = tuple(f"{path}: {why}" for path, why in current_source.report.bad_files)
    return validate_table(suite, table, rows, where=where, partial=bool(bad), bad_files=bad)
