"""The derived suite's expectation types evaluated without Great Expectations, with GX's results.

GX spends ~10 ms of CPU per expectation whatever the data (its metric graph and pydantic
configurations), which is 400 s for the 40,000 expectations derived from a 10,000-column file.
The types `derive_suite` writes are simple column maps; here they are computed with the same
pandas/numpy operations GX's pandas engine uses (`isnull`, `min <= column <= max`, `isin`,
`duplicated(keep=False)`, dtype or per-value type checks), one column at a time and only
counting, and the result dicts are GX 1.x's SUMMARY format field for field (the first
`partial_count` unexpected values and row indexes, their counts, missing and unexpected
shares, the same `mostly` rule, the configuration's kwargs as GX normalises them).

`evaluate` answers None for anything outside that (another type, another kwarg, a value GX
would coerce or reject, a dtype where GX takes a different code path, a named index): the
caller validates those with GX. tests/test_quality_native.py holds the two paths equal.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import pandas as pd

_NUMBER = (int, float)
_SEVERITIES = ("critical", "warning", "info")
_ITEM_KEYS = {"type", "kwargs", "meta", "severity"}
# Per type: the kwargs handled here, in GX's field order (its kwargs dicts keep that order).
_KWARGS = {
    "expect_column_to_exist": ("column",),
    "expect_column_values_to_not_be_null": ("column", "mostly"),
    "expect_column_values_to_be_unique": ("column", "mostly"),
    "expect_column_values_to_be_in_set": ("column", "mostly", "value_set"),
    "expect_column_values_to_be_in_type_list": ("column", "mostly", "type_list"),
    "expect_column_values_to_be_between": ("column", "mostly", "min_value", "max_value", "strict_min",
                                           "strict_max"),
}
_DEFAULTS = {"mostly": 1.0, "min_value": None, "max_value": None, "strict_min": False, "strict_max": False}


def supported(item: dict) -> dict | None:
    """GX's normalised kwargs of an expectation evaluated here, or None (GX evaluates it)."""
    names = _KWARGS.get(item.get("type"))
    kwargs = item.get("kwargs", {})
    if names is None or not set(item) <= _ITEM_KEYS or not set(kwargs) <= set(names):
        return None
    if item.get("severity", "critical") not in _SEVERITIES or not isinstance(item.get("meta", {}), dict):
        return None
    column = kwargs.get("column")
    if not isinstance(column, str) or not column:
        return None
    normal = {}
    for name in names:
        if name not in kwargs:
            continue
        value = kwargs[name]
        if name == "mostly" or name.endswith("_value"):
            if value is None and name != "mostly":
                continue
            if isinstance(value, bool) or not isinstance(value, _NUMBER) or not np.isfinite(value):
                return None
            value = float(value)  # pydantic coerces int to float
            if name == "mostly" and not 0.0 <= value <= 1.0:
                return None
        elif name.startswith("strict_"):
            if not isinstance(value, bool):
                return None
        elif name == "value_set":
            if not isinstance(value, list) or not all(v is None or isinstance(v, (str, int, float)) for v in value):
                return None
        elif name == "type_list":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                return None
        if name in _DEFAULTS and value == _DEFAULTS[name] and type(value) is type(_DEFAULTS[name]):
            continue  # GX's configuration leaves out kwargs at their default
        normal[name] = value
    if item["type"] == "expect_column_values_to_be_between":
        low, high = normal.get("min_value"), normal.get("max_value")
        if low is None and high is None or low is not None and high is not None and low > high:
            return None  # GX raises
    if item["type"] in ("expect_column_values_to_be_in_set", "expect_column_values_to_be_in_type_list") \
            and kwargs.get(names[-1]) is None:
        return None
    return normal


def evaluate(item: dict, frame: pd.DataFrame, partial_count: int = 10, cache: dict | None = None) -> dict | None:
    """GX's result record for one expectation on a pandas frame, or None: GX must evaluate it.

    `cache` (one dict per frame) keeps each column's values and null mask for its next expectations."""
    kwargs = supported(item)
    if kwargs is None or frame.index.names != [None] or not frame.columns.is_unique:
        return None
    kind, column = item["type"], kwargs["column"]
    record = {"type": kind, "kwargs": kwargs, "severity": item.get("severity", "critical"),
              "meta": dict(item.get("meta") or {}), "success": False, "result": {}, "exception": None}
    if column not in frame.columns:
        if kind != "expect_column_to_exist":
            record["exception"] = f"column '{column}' is missing"
        return record
    if kind == "expect_column_to_exist":
        return {**record, "success": True}
    series, missing = _column(frame, column, {} if cache is None else cache)
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        return None  # pandas extension dtypes (categorical, nullable, Arrow): GX's own paths
    mostly = kwargs.get("mostly", 1.0)
    if kind == "expect_column_values_to_not_be_null":
        return {**record, **_not_null(series, missing, mostly, partial_count)}
    if kind == "expect_column_values_to_be_in_type_list":
        outcome = _type_list(series, missing, tuple(kwargs["type_list"]), mostly, partial_count)
        return None if outcome is None else {**record, **outcome}
    if kind == "expect_column_values_to_be_between" and series.dtype not in (np.dtype("int64"),
                                                                              np.dtype("float64")):
        return None  # GX compares other dtypes value by value (and raises on text)
    present = ~missing
    if kind == "expect_column_values_to_be_between":
        values = series.to_numpy()
        expected = _between(values if not missing.any() else values[present], kwargs)
    elif kind == "expect_column_values_to_be_in_set":
        expected = series[present].isin(kwargs["value_set"]).to_numpy()
    else:  # expect_column_values_to_be_unique
        expected = (~series[present].duplicated(keep=False)).to_numpy()
    return {**record, **_map_outcome(series, present, expected, mostly, partial_count)}


def _column(frame: pd.DataFrame, name: str, cache: dict) -> tuple[pd.Series, np.ndarray]:
    """The column and its null mask (pandas' isnull: NaN, None and NaT), once per frame."""
    if name not in cache:
        series = frame[name]
        kind = getattr(series.dtype, "kind", "O") if not isinstance(series.dtype, pd.api.extensions.ExtensionDtype) \
            else "X"
        if kind == "f":
            missing = np.isnan(series.to_numpy())
        elif kind in "iub":
            missing = np.zeros(len(series), dtype=bool)
        else:
            missing = series.isnull().to_numpy()
        cache[name] = series, missing
    return cache[name]


def _between(values: np.ndarray, kwargs: dict) -> np.ndarray:
    """GX's vectorised pandas comparison (`_pandas_vectorized`), on the non-null values."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    strict_low, strict_high = kwargs.get("strict_min", False), kwargs.get("strict_max", False)
    ok = np.ones(len(values), dtype=bool)
    if low is not None:
        ok &= (low < values) if strict_low else (low <= values)
    if high is not None:
        ok &= (values < high) if strict_high else (values <= high)
    return ok


def _not_null(series: pd.Series, missing: np.ndarray, mostly: float, partial_count: int) -> dict:
    """expect_column_values_to_not_be_null: every row counts; no missing_* fields (GX passes no nonnull count)."""
    total, unexpected = len(series), int(np.count_nonzero(missing))
    success = True if total == 0 else (total - unexpected) / total >= mostly
    return _format(success, total, None, unexpected, series, missing, partial_count)


def _map_outcome(series: pd.Series, present: np.ndarray, expected: np.ndarray, mostly: float,
                 partial_count: int) -> dict:
    """A column map expectation over the non-null rows (ColumnMapExpectation._validate)."""
    total, nonnull = len(series), int(np.count_nonzero(present))
    if nonnull == total:
        unexpected_rows = ~expected
    else:
        unexpected_rows = np.zeros(total, dtype=bool)
        unexpected_rows[np.flatnonzero(present)[~expected]] = True
    unexpected = int(np.count_nonzero(unexpected_rows))
    success = True if total == 0 or nonnull == 0 else (nonnull - unexpected) / nonnull >= mostly
    return _format(success, total, nonnull, unexpected, series, unexpected_rows, partial_count)


def _format(success: bool, total: int, nonnull: int | None, unexpected: int, series: pd.Series,
            unexpected_rows: np.ndarray, partial_count: int) -> dict:
    """GX's `_format_map_output` for result_format SUMMARY."""
    missing = None if nonnull is None else total - nonnull
    missing_percent = percent_total = percent_nonmissing = None
    if total > 0:
        percent_total = unexpected / total * 100
        if missing is not None:
            missing_percent = missing / total * 100
            percent_nonmissing = unexpected / nonnull * 100 if nonnull > 0 else None
        else:
            percent_nonmissing = percent_total
    rows = np.flatnonzero(unexpected_rows)[:partial_count] if unexpected else np.empty(0, dtype=np.intp)
    values = list(series.iloc[rows]) if len(rows) else []
    result = {"element_count": total, "unexpected_count": unexpected, "unexpected_percent": percent_nonmissing,
              "partial_unexpected_list": values[:partial_count]}
    if missing is not None:
        result.update(missing_count=missing, missing_percent=missing_percent,
                      unexpected_percent_total=percent_total, unexpected_percent_nonmissing=percent_nonmissing)
    if partial_count > 0:
        try:
            result["partial_unexpected_counts"] = [
                {"value": key, "count": count}
                for key, count in sorted(Counter(values).most_common(partial_count), key=lambda x: (-x[1], x[0]))]
        except TypeError:  # values that do not order: GX leaves the counts out
            pass
        result["partial_unexpected_index_list"] = list(series.index[rows]) if len(rows) else []
    return {"success": bool(success), "result": result}


def _type_list(series: pd.Series, missing: np.ndarray, type_list: tuple[str, ...], mostly: float,
               partial_count: int) -> dict | None:
    """GX's pandas paths: an object column is checked value by value (isinstance), any other by its dtype."""
    dtype = series.dtype
    if dtype.type.__name__ != "object_":
        accepted = _dtype_types(type_list)
        if accepted is None:
            return None
        try:
            success = dtype in accepted
        except Exception:  # noqa: BLE001 - GX would raise: let it
            return None
        return {"success": bool(success), "result": {"observed_value": dtype.type.__name__}}
    classes = _value_types(type_list)
    if not classes:
        return None  # GX raises "No recognized numpy/python type"
    present = ~missing
    values = series.to_numpy()[present]
    kinds = {t: issubclass(t, classes) for t in set(map(type, values))}
    expected = np.fromiter((kinds[type(v)] for v in values), dtype=bool, count=len(values))
    return _map_outcome(series, present, expected, mostly, partial_count)


def _pandas_class(name: str, with_instance: bool) -> list:
    found = []
    candidate = getattr(pd, name, None)
    if isinstance(candidate, type):
        found.append(candidate)
        if with_instance:
            try:
                if isinstance(candidate(), pd.api.extensions.ExtensionDtype):
                    found.append(candidate())
            except TypeError:
                pass
    candidate = getattr(pd.core.dtypes.dtypes, name, None)
    if isinstance(candidate, type):
        found.append(candidate)
    return found


@lru_cache(maxsize=64)
def _dtype_types(type_list: tuple[str, ...]) -> tuple | None:
    """What GX's `_validate_pandas` compares a column dtype with (numpy types and dtypes, pandas classes)."""
    accepted = []
    for name in type_list:
        try:
            accepted += [np.dtype(name).type, np.dtype(name)]
        except TypeError:
            accepted += _pandas_class(name, with_instance=True)
        except Exception:  # noqa: BLE001 - GX would raise: let it
            return None
        accepted += list(_native_types(name))
    return tuple(accepted)


@lru_cache(maxsize=64)
def _value_types(type_list: tuple[str, ...]) -> tuple | None:
    """What GX's `ColumnValuesInTypeList._pandas` checks each value's class against."""
    accepted = []
    for name in type_list:
        try:
            accepted.append(np.dtype(name).type)
        except TypeError:
            accepted += _pandas_class(name, with_instance=False)
        except Exception:  # noqa: BLE001
            return None
        accepted += list(_native_types(name))
    return tuple(accepted)


def _native_types(name: str) -> tuple:
    """GX's `native_type_type_map`."""
    return {"none": (type(None),), "bool": (bool,), "int": (int,), "long": (int,), "float": (float,),
            "bytes": (bytes,), "complex": (complex,), "str": (str,), "string_types": (str,), "list": (list,),
            "dict": (dict,)}.get(name.lower(), ())
