"""Tables for the terminal, rendered from the CheckResult record alone (the same record the JSON,
the store, the exporter and the alerts read). Each check's table shows its own key fields: a
drift check its features, data quality its failed expectations, the label checks their overall
and segment metrics, concept drift its expected-vs-realized numbers and residual families.

Nothing is cut: columns fold wide values onto more lines. A terminal's width is used as it is;
output to a pipe or file is as wide as $COLUMNS, else WIDE_OUTPUT, so logs keep whole lines.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDE_OUTPUT = 200
COLOURS = {"ok": "green", "warn": "yellow", "alert": "red", "error": "red", "insufficient_data": "blue",
           "pending": "blue"}
NUMERIC_HEADERS = {"score", "threshold", "ref n", "cur n", "rows", "positives", "predicted", "ratio", "vs reference",
                   "ECE", "Brier", "AUC", "log loss", "NE", "unexpected", "share", "RMS log change", "cells alert", "cells"}


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)  # rich reads the terminal's width, or $COLUMNS
    return Console(stderr=stderr, width=WIDE_OUTPUT)


def table(title: str, columns: list[str]) -> Table:
    found = Table(title=Text(title), title_justify="left")
    for column in columns:
        found.add_column(column, justify="right" if column in NUMERIC_HEADERS else "left", overflow="fold")
    return found


def status(value: str) -> Text:
    return Text(value, style=COLOURS.get(value, "white"))


def add(found: Table, *cells) -> None:
    """A row of plain text (never read as markup: values may hold brackets) and styled Text."""
    found.add_row(*[cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells])


def fmt(value, digits: int = 3) -> str:
    if value is None or value != value:
        return "-"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def parts_of(result) -> list[tuple[str | None, dict]]:
    """A label check's details per prediction column: one pair as is, several under details.predictions."""
    details = result.details or {}
    return list(details.get("predictions", {}).items()) or [(None, details)]


def result_notes(result) -> list[str]:
    """Widened-tolerance lines of a result (one prediction pair, or several under details.predictions)."""
    return [f"{name}: {note}" if name else note for name, part in parts_of(result)
            for note in part.get("tolerance_notes", [])]


def title_of(result) -> str:
    window = f" {result.window_start[:16]}..{result.window_end[:16]}" if result.window_start else ""
    return f"{result.check}{window}: {result.status}"


def render(result, out: Console) -> None:
    """Print one result: the check's own table, then its notes (error, report, partial data)."""
    renderer = {"data_quality": _quality, "calibration": render_labelled, "performance": render_labelled,
                "concept_drift": _concept}.get(result.check, _features)
    renderer(result, out)
    for note in result_notes(result):
        out.print(f"  {note}", markup=False, highlight=False, style="yellow")
    if result.details.get("error"):
        out.print(f"  why: {result.details['error']}", markup=False, highlight=False)
    if result.report_path:
        out.print(f"  report: {result.report_path}", markup=False, highlight=False)
    if result.bad_files:
        out.print(f"  [yellow]partial: {len(result.bad_files)} unreadable file(s)[/]")


def _features(result, out: Console) -> None:
    if not result.features:
        out.print(title_of(result), markup=False, highlight=False)
        return
    found = table(title_of(result), ["feature", "kind", "method", "score", "threshold", "status", "ref n", "cur n",
                                     "why"])
    for f in result.features:
        why = "; ".join(f.reasons) if f.reasons else (f.message or "")
        add(found, f.feature, f.kind, f.method, fmt(f.score, 4), fmt(f.threshold, 4), status(f.status),
            str(f.reference_count), str(f.current_count), why)
    out.print(found)
    skipped = result.details.get("skipped_columns") or {}
    if skipped:
        by_reason: dict[str, list[str]] = {}
        for column, reason in skipped.items():
            by_reason.setdefault(reason, []).append(column)
        out.print("not compared (not features): " + "; ".join(f"{', '.join(cols)} ({reason})"
                                                             for reason, cols in by_reason.items())
                  + "; name columns with --features to compare them", markup=False, highlight=False)


def _quality(result, out: Console) -> None:
    details = result.details
    failed = [e for e in details.get("expectations", []) if e.get("status") not in ("ok", None)]
    if failed:
        found = table(title_of(result), ["expectation", "column", "severity", "status", "unexpected", "share",
                                         "offending values", "why"])
        for e in failed:
            values = ", ".join(_offending(v) for v in (e.get("offending_values") or [])[:5])
            add(found, e["expectation"], str(e.get("column") or "-"), e.get("severity") or "-", status(e["status"]),
                fmt(e.get("unexpected_count")), fmt(e.get("unexpected_fraction"), 4), values, e.get("why") or "")
        out.print(found)
    else:
        out.print(title_of(result), markup=False, highlight=False)
    if "expectations_total" in details:
        out.print(f"  {details['expectations_failed']} of {details['expectations_total']} expectations failed on "
                  f"{details['validated_rows']} of {details['window_rows']} rows"
                  + (" (uniform sample)" if details.get("sampled") else ""), markup=False, highlight=False)


def _offending(value) -> str:
    if isinstance(value, dict) and "value" in value:
        shown = "null" if value["value"] is None else str(value["value"])
        return f"{shown} (x{value['count']})" if value.get("count", 1) != 1 else shown
    return str(value)


def _groups(details: dict, every: bool) -> list[tuple[str, dict]]:
    segments = [(f"{s['segment']}={s['value']}", s) for s in details.get("segments", [])]
    if not every:
        segments = [(name, s) for name, s in segments if s.get("status") != "ok"]
    return [("overall", details["overall"])] + segments if details.get("overall") else segments


def render_labelled(result, out: Console, every: bool = False) -> None:
    """calibration and performance: overall and (non-ok, or every) segment rows, per prediction."""
    parts = [(name, part) for name, part in parts_of(result) if part.get("overall")]
    if not parts:
        out.print(title_of(result), markup=False, highlight=False)
    for _, details in parts:
        _labelled_part(result, details, out, every)


def _labelled_part(result, details: dict, out: Console, every: bool) -> None:
    against = details.get("baseline") == "reference" or result.check == "performance"
    what = f" of {details.get('prediction')} vs {details.get('label')}" if details.get("prediction") else ""
    title = title_of(result).replace(f"{result.check}", f"{result.check}{what}", 1)
    if result.check == "calibration":
        columns = ["group", "rows", "positives", "predicted", "ratio", "95% interval"]
        columns += ["vs reference", "its 95% interval"] if against else []
        columns += ["ECE", "Brier", "status"]
    else:
        columns = ["group", "rows", "positives", "AUC", "log loss", "NE", "ratio", "status", "why"]
    found = table(title, columns)
    for name, g in _groups(details, every):
        if result.check == "calibration":
            row = [name, fmt(g["count"]), fmt(g["positives"], 0), fmt(g["predicted_positives"], 1),
                   fmt(g["calibration_ratio"]), f"[{fmt(g['ci_low'])}, {fmt(g['ci_high'])}]"]
            if against:
                row += [fmt(g.get("relative_ratio")),
                        f"[{fmt(g.get('relative_ci_low'))}, {fmt(g.get('relative_ci_high'))}]"]
            row += [fmt(g["ece"], 4), fmt(g["brier"], 4), status(g["status"])]
        else:
            row = [name, fmt(g.get("count")), fmt(g.get("positives"), 0), fmt(g.get("auc")), fmt(g.get("log_loss"), 4),
                   fmt(g.get("ne")), fmt(g.get("calibration_ratio")), status(g.get("status", "-")), _why(g)]
        add(found, *row)
    out.print(found)
    hidden = len(details.get("segments", [])) - (len(_groups(details, every)) - 1)
    if hidden > 0:
        out.print(f"  {hidden} segment(s) ok, not shown (--format json lists every one)", markup=False,
                  highlight=False)


_MEASURES = {"auc_drop": ("AUC", "auc"), "ne_rise": ("NE", "ne"), "calibration": ("ratio", "calibration_ratio")}


def _why(group: dict) -> str:
    """performance: which measure moved, against the reference's value."""
    reference = group.get("reference") or {}
    if group.get("status") == "insufficient_data":
        return "too few rows or positives to judge"
    parts = []
    for name, verdict in (group.get("statuses") or {}).items():
        if verdict in ("ok", None):
            continue
        label, key = _MEASURES.get(name, (name, name))
        parts.append(f"{label} {fmt(group.get(key))} vs reference {fmt(reference.get(key))}: {verdict}")
    return "; ".join(parts)


def _concept(result, out: Console) -> None:
    shown = False
    for name, details in parts_of(result):
        shown = _concept_part(result, name, details, out) or shown
    if not shown:
        out.print(title_of(result), markup=False, highlight=False)


def _concept_part(result, name: str | None, details: dict, out: Console) -> bool:
    expected = details.get("expected_vs_realized") or {}
    families = details.get("residuals") or []
    if not expected and not families:
        return False
    title = title_of(result).replace(result.check, f"{result.check} of {name}", 1) if name else title_of(result)
    found = table(title, ["residuals of", "cells", "RMS log change", "cells alert", "status"])
    for family in families:
        add(found, " x ".join(family["segments"]), fmt(family.get("cells_tested")), fmt(family.get("rms_log_change")),
            fmt(family.get("cells_alert")), status(family["status"]))
    out.print(found)
    if expected:
        out.print(f"  AUC expected {fmt(expected.get('expected_auc'))}, realized {fmt(expected.get('realized_auc'))} "
                  f"(drop {fmt(expected.get('auc_drop'))}); log loss expected "
                  f"{fmt(expected.get('expected_log_loss'), 4)}, realized {fmt(expected.get('realized_log_loss'), 4)}",
                  markup=False, highlight=False)
    hinkley = details.get("page_hinkley") or {}
    if hinkley:
        out.print(f"  Page-Hinkley over {hinkley.get('series_length')} windows: statistic "
                  f"{fmt(hinkley.get('statistic'))} (threshold {fmt(hinkley.get('threshold'))}), "
                  f"{'detected' if hinkley.get('detected') else 'not detected'}", markup=False, highlight=False)
    return True
