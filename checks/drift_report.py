"""Drill-down HTML reports rendered by Evidently.

Drift *values* come from our own kernel over profiles; this module only draws a
human-readable Evidently report on a bounded row sample of the same window. Evidently
is imported inside the function so that `import monitor` stays light.
"""

from __future__ import annotations

import html
import os
import re
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DriftlineError, SchemaError, require

if TYPE_CHECKING:
    import pandas as pd

    from core.results import CheckResult

# Rows per side handed to Evidently: its stattests and plots work on rows in memory.
REPORT_SAMPLE_SIZE = 20_000

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
    verdict: "CheckResult | None" = None,
) -> Path:
    """Render Evidently's data-drift report for the given columns and write it to `path` as HTML.

    The frames should already be bounded samples (see `sample_for_report`). Columns
    without a single finite value on either side cannot be tested for drift; they are
    shown with their missing-value counts instead. `methods` / `thresholds` map a
    feature to our method name and threshold so the report uses the same test; a method
    Evidently lacks (e.g. "linf") falls back to Evidently's default choice.

    With `verdict` (driftline's result for this window) the page opens with that result, and
    Evidently adds no verdict of its own that could contradict it: each column gets
    Evidently's drift test only where Evidently computes our very statistic (with our warn
    threshold), and its category counts otherwise; there is no dataset-level headline.
    """
    # No report path sends telemetry in 0.7, but Evidently's logger honours this switch.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    require("evidently")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, UniqueValueCount, ValueDrift
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
    if verdict is not None:
        for column in testable:
            if column in per_column_method:
                items.append(ValueDrift(column=column, method=per_column_method[column],
                                        threshold=per_column_threshold.get(column)))
            else:
                items.append(UniqueValueCount(column=column))
    elif testable:
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

    page = _with_title(script_safe_data(page), title)
    if verdict is not None:
        page = page.replace("<body>", "<body>\n" + verdict_html(verdict), 1)
    write_report(path, page)
    return path


def render_result_report(result: "CheckResult", reference, current, path: Path, kinds: Mapping[str, str],
                         title: str | None = None) -> Path:
    """The drill-down report of one drift result: Arrow samples of both sides (`reference` a
    uniform sample, see `uniform_rows`), the features' methods and warn thresholds as judged."""
    columns = [c for c in kinds if c in current.schema.names and c in reference.schema.names]
    judged = {f.feature: f for f in result.features}
    return render_drift_report(
        uniform_rows(reference, REPORT_SAMPLE_SIZE).select(columns).to_pandas(),
        uniform_rows(current, REPORT_SAMPLE_SIZE).select(columns).to_pandas(),
        path,
        numeric=[c for c in columns if kinds[c] == "numeric"],
        categorical=[c for c in columns if kinds[c] == "categorical"],
        title=title,
        methods={c: judged[c].method for c in columns if c in judged},
        thresholds={c: _warn_threshold(judged[c]) for c in columns if c in judged and _warn_threshold(judged[c])},
        verdict=result,
    )


def uniform_rows(table, n: int, seed: int = 0):
    """A reproducible uniform sample of at most `n` rows of an Arrow table, in row order: never
    a leading slice, which on time-ordered data would be the first days only."""
    if table.num_rows <= n:
        return table
    import numpy as np

    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False))
    return table.take(rows)


def _warn_threshold(feature) -> float | None:
    value = feature.warn_threshold if feature.warn_threshold is not None else feature.threshold
    return None if value is None else float(value)


def verdict_html(result: "CheckResult") -> str:
    """driftline's verdict for the window, as the page's first section (every value escaped)."""
    esc = html.escape

    def number(value) -> str:
        return "-" if value is None else f"{value:.4g}"

    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(str(cell))}</td>" for cell in (
            f.feature, f.kind, f.method, number(f.score), number(f.warn_threshold), number(f.threshold),
            f.status, f.reference_count, f.current_count, f.message or "")) + "</tr>"
        for f in sorted(result.features, key=lambda f: (-_SEVERITY_ORDER.get(f.status, 0), f.feature)))
    head = "".join(f"<th>{h}</th>" for h in ("feature", "kind", "method", "score", "warn", "alert", "status",
                                            "reference n", "window n", "note"))
    counts = {s: sum(f.status == s for f in result.features) for s in ("alert", "warn", "ok")}
    summary = (f"driftline verdict: {esc(result.status.upper())} &mdash; {counts['alert']} alert, "
               f"{counts['warn']} warn, {counts['ok']} ok of {len(result.features)} features "
               f"({result.current_rows:,} window rows vs {result.reference_rows:,} reference rows)")
    style = ("font-family: sans-serif; margin: 16px 24px; border-collapse: collapse;")
    return (f'<section id="driftline-verdict" style="{style}"><h2>{summary}</h2>'
            f'<p>Scores are driftline\'s, computed on every row of the window. Below, Evidently draws the '
            f'distributions from uniform samples of both sides (at most {REPORT_SAMPLE_SIZE:,} rows each) and '
            f'tests a column only where it computes the same statistic, with driftline\'s warn threshold.</p>'
            f'<table border="1" cellpadding="4" style="border-collapse: collapse;"><tr>{head}</tr>{rows}</table>'
            f'</section>')


_SEVERITY_ORDER = {"alert": 3, "error": 3, "warn": 2, "insufficient_data": 1, "ok": 0}


class UnsafeReportError(DriftlineError):
    """Evidently's page is not laid out as driftline knows how to make safe; nothing is written."""


# Evidently 0.7's standalone page (legacy/utils/dashboard.py, file_html_template) embeds the
# report as two JSON values in one <script> in <head>. json.dumps writes no raw newline, so
# each value is exactly one line, whatever the data holds.
_DATA_BLOCK = re.compile(r"<script>\n    var (metric_[0-9a-f]{32}) = ([^\n]*);\n"
                         r"    var additional_graphs_\1 = ([^\n]*);\n</script>")
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def json_for_script(text: str) -> str:
    """JSON text that is the same value in JavaScript but cannot end or re-open a <script>:
    `<`, `>` and `&` only occur inside JSON strings, where \\u escapes mean the same."""
    return re.sub("[<>&]", lambda m: _SCRIPT_UNSAFE[m.group()], text)


def script_safe_data(page: str) -> str:
    """The page with its data block escaped, so a category value or column name such as
    `</script><img src=x onerror=...>` stays data. Raises UnsafeReportError when the block is
    not found exactly once (an Evidently that lays its page out differently)."""
    found = list(_DATA_BLOCK.finditer(page))
    if len(found) != 1:
        raise UnsafeReportError(f"Evidently's report page has {len(found)} data blocks where driftline expects 1; "
                                "the report is not written (it could not be made safe for data values)")
    match = found[0]
    name, info, graphs = match.groups()
    block = (f"<script>\n    var {name} = {json_for_script(info)};\n"
             f"    var additional_graphs_{name} = {json_for_script(graphs)};\n</script>")
    return page[:match.start()] + block + page[match.end():]


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
