"""Drill-down HTML reports rendered by Evidently.

Drift *values* come from our own kernel over profiles; this module only draws a
human-readable Evidently report on a bounded row sample of the same window. Evidently
is imported inside the function so that `import monitor` stays light.
"""

from __future__ import annotations

import html
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from monitor.errors import SchemaError, require

if TYPE_CHECKING:
    import pandas as pd

# Rows per side handed to Evidently: its stattests and plots work on rows in memory.
REPORT_SAMPLE_SIZE = 20_000

# Which windows get a drill-down report (`report_on` of data_drift and attribution_drift):
# "warn" (the default) renders one for windows that warn or alert, "alert" for alerts only,
# "always" for every window. A report of a clean window says little and costs seconds each.
ReportOn = Literal["always", "warn", "alert"]
_REPORTED = {"always": None, "warn": {"warn", "alert"}, "alert": {"alert"}}


def report_wanted(status: str, report_on: ReportOn = "warn") -> bool:
    """Whether a window with this check status gets an HTML report under the `report_on` policy."""
    wanted = _REPORTED[report_on]
    return wanted is None or status in wanted


# Our method names that Evidently also implements, with the same definition.
_EVIDENTLY_METHODS = {"psi": "psi", "jensenshannon": "jensenshannon", "wasserstein": "wasserstein"}


def sample_for_report(frame: pd.DataFrame, n: int = REPORT_SAMPLE_SIZE, seed: int = 0) -> pd.DataFrame:
    """A reproducible uniform sample of at most `n` rows."""
    if len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed)


def render_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: Path,
    numeric: list[str],
    categorical: list[str],
    title: str | None = None,
    *,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Path:
    """Render Evidently's data-drift report for the given columns and write it to `path` as HTML.

    The frames should already be bounded samples (see `sample_for_report`). Columns
    without a single finite value on either side cannot be tested for drift; they are
    shown with their missing-value counts instead. `methods` / `thresholds` map a
    feature to our method name and threshold so the report uses the same test; a method
    Evidently lacks (e.g. "linf") falls back to Evidently's default choice.
    """
    # No report path sends telemetry in 0.7, but Evidently's logger honours this switch.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    require("evidently")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount
    from evidently.presets import DataDriftPreset

    path = Path(path)
    numeric, categorical = list(numeric), list(categorical)
    _check_columns(reference, current, numeric, categorical)
    columns = numeric + categorical
    ref = _prepare(reference, numeric, categorical)
    cur = _prepare(current, numeric, categorical)

    testable = [c for c in columns if _has_values(ref[c]) and _has_values(cur[c])]
    untestable = [c for c in columns if c not in testable]

    per_column_method = {}
    per_column_threshold = {}
    for column, method in (methods or {}).items():
        # Evidently's wasserstein is numeric-only, as ours is.
        usable = method in _EVIDENTLY_METHODS and not (method == "wasserstein" and column not in numeric)
        if column in testable and usable:
            per_column_method[column] = _EVIDENTLY_METHODS[method]
            if thresholds and column in thresholds:
                per_column_threshold[column] = float(thresholds[column])

    items = []
    if testable:
        items.append(
            DataDriftPreset(
                columns=testable,
                per_column_method=per_column_method or None,
                per_column_threshold=per_column_threshold or None,
            )
        )
    items.extend(MissingValueCount(column=c) for c in untestable)

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    with warnings.catch_warnings():
        # Evidently's internals warn on empty bins (numpy/scipy) and on pandas deprecations;
        # none of it is actionable by our callers.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", FutureWarning)
        snapshot = Report(items).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        page = snapshot.get_html_str(as_iframe=False)

    write_report(path, _with_title(page, title))
    return path


def _check_columns(reference, current, numeric: list[str], categorical: list[str]) -> None:
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise SchemaError(f"columns listed as both numeric and categorical: {both}")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in numeric + categorical if c not in frame.columns]
        if missing:
            raise SchemaError(f"columns missing from the {name} frame: {missing}")


def _prepare(frame, numeric: list[str], categorical: list[str]):
    import numpy as np
    import pandas as pd

    out = frame.loc[:, numeric + categorical].reset_index(drop=True).copy()
    for column in numeric:
        values = out[column]
        if pd.api.types.is_string_dtype(values) and not values.isna().all():
            raise SchemaError(f"column {column!r} is declared numeric but holds {values.dtype} values")
        try:
            # One plain float dtype: nullable Int64/boolean and all-null object columns (as
            # Arrow hands over an all-null column) all become float64 with NaN.
            floats = values.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"column {column!r} is declared numeric but holds {values.dtype} values") from exc
        # Evidently drops +-inf before testing; doing it here keeps the emptiness check in step.
        floats[np.isinf(floats)] = np.nan
        out[column] = floats
    for column in categorical:
        values = out[column]
        # Plain objects with None for missing: category dtypes with different category sets
        # and pd.NA from nullable/Arrow dtypes trip Evidently's concatenation and sorting.
        out[column] = values.astype(object).where(values.notna(), None)
    return out


def _has_values(series) -> bool:
    return bool(series.notna().any())


def _with_title(page: str, title: str | None) -> str:
    if not title:
        return page
    safe = html.escape(title)
    page = page.replace("<head>", f"<head>\n<title>{safe}</title>", 1)
    heading = f'<h1 style="font-family: sans-serif; margin: 16px 24px;">{safe}</h1>'
    return page.replace("<body>", f"<body>\n{heading}", 1)


def window_text(start, end) -> str:
    """A window as every report title writes it: `2024-06-03 00:00 .. 2024-06-04 00:00` (UTC)."""
    from datetime import datetime

    def one(moment) -> str:
        moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        return f"{moment:%Y-%m-%d %H:%M}"

    return f"{one(start)} .. {one(end)}"


def write_report(path: Path, text: str) -> None:
    """Write a report atomically, readable like any file this process creates (0666 less the
    umask: usually 0644): drift and explain reports alike, served under /reports/."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies (mkstemp: 0600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
