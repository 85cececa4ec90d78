"""The evaluation report: one self-contained HTML page (inline SVG plots, no scripts, no
network) and the same facts as JSON. Plots: ROC curves and a reliability diagram of the
candidate and the production model on the holdout, AUC per segment value."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"candidate": "#1f77b4", "production": "#ff7f0e"}
_W, _H, _PAD = 320, 260, 36


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> list[tuple[float, float]]:
    y = np.asarray(labels) > 0
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return []
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tpr = np.concatenate([[0.0], np.cumsum(y[order]) / pos])
    fpr = np.concatenate([[0.0], np.cumsum(~y[order]) / neg])
    keep = np.unique(np.linspace(0, len(tpr) - 1, min(max_points, len(tpr))).astype(int))
    return [(float(fpr[i]), float(tpr[i])) for i in keep]


def reliability_points(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[tuple[float, float]]:
    """(mean predicted, observed rate) per score-quantile bin."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return []
    order = np.argsort(scores, kind="mergesort")
    return [(float(scores[part].mean()), float(np.asarray(labels)[part].mean()))
            for part in np.array_split(order, min(bins, len(scores))) if len(part)]


def _svg(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
         zoom: bool = False, diagonal: bool = True) -> str:
    """A line chart on [0, top]²; zoom fits top to the data (CTRs live near 0)."""
    points = [p for pts in series.values() for p in pts]
    top = max([1e-9] + [max(x, y) for x, y in points]) * 1.05 if zoom else 1.0
    scale = lambda v: v / top  # noqa: E731
    sx = lambda v: _PAD + scale(v) * (_W - 2 * _PAD)  # noqa: E731
    sy = lambda v: _H - _PAD - scale(v) * (_H - 2 * _PAD)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
             f'<title>{html.escape(title)}</title>',
             f'<rect x="{_PAD}" y="{_PAD}" width="{_W - 2 * _PAD}" height="{_H - 2 * _PAD}" '
             'fill="none" stroke="#999"/>',
             f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
             f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">{html.escape(x_label)}</text>',
             f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" '
             f'text-anchor="middle">{html.escape(y_label)}</text>',
             f'<text x="{_PAD}" y="{_H - _PAD + 12}" font-size="9">0</text>',
             f'<text x="{_W - _PAD}" y="{_H - _PAD + 12}" font-size="9" text-anchor="end">{top:.3g}</text>']
    if diagonal:
        parts.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(top)}" y2="{sy(top)}" stroke="#ccc" '
                     'stroke-dasharray="4"/>')
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS.get(name, "#2ca02c")
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{_PAD + 6}" y="{_PAD + 14 + 13 * i}" font-size="11" fill="{colour}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any], curves: dict[str, dict[str, list]]) -> str:
    """report: the JSON record; curves: {'roc': {name: points}, 'reliability': {name: points}}."""
    gates = report["gates"]
    verdict = "passed the gates" if gates["passed"] else "REJECTED"
    colour = "#2a7" if gates["passed"] else "#c33"
    cand, prod = report["candidate"]["overall"], (report.get("production") or {}).get("overall") or {}
    metric_rows = [[m, cand.get(m), prod.get(m),
                    None if cand.get(m) is None or prod.get(m) is None else cand[m] - prod[m]]
                   for m in ("auc", "log_loss", "normalized_entropy", "calibration_ratio", "rows", "positives")]
    gate_rows = [[c["scope"], c["metric"], c["candidate"], c["production"], c["limit"],
                  "ok" if c["passed"] else "FAIL"] for c in gates["checks"]]
    seg_rows = []
    prod_segments = (report.get("production") or {}).get("segments", {})
    for column, values in report["candidate"]["segments"].items():
        for value, m in values.items():
            p = prod_segments.get(column, {}).get(value, {})
            seg_rows.append([f"{column}={value}", m["rows"], m["auc"], p.get("auc"), m["calibration_ratio"],
                             p.get("calibration_ratio")])
    head_rows = []
    for head, both in (report.get("heads") or {}).items():
        c, p = both["candidate"]["overall"], (both.get("production") or {}).get("overall") or {}
        head_rows.append([head, c["rows"], c["positives"], c["auc"], p.get("auc"), c["log_loss"], p.get("log_loss"),
                          c["calibration_ratio"], p.get("calibration_ratio")])
    heads = ("<h2>Heads</h2>" + _table(["head", "rows", "positives", "AUC cand.", "AUC prod.", "log loss cand.",
                                        "log loss prod.", "calib. cand.", "calib. prod."], head_rows)
             if len(head_rows) > 1 else "")
    infra = report.get("infra") or {}
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in gates["reasons"])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>driftline evaluation: {html.escape(report['model'])} v{_fmt(report.get('version', '?'))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}
.verdict{{color:{colour};font-weight:bold}}svg{{margin-right:1em}}</style></head><body>
<h1>{html.escape(report['model'])}: candidate v{_fmt(report.get('version', '?'))} ({html.escape(report['trainer'])})</h1>
<p class="verdict">{verdict}</p>
{f'<ul>{reasons}</ul>' if reasons else ''}
<p>Training window {html.escape(str(report['window']['start']))} – {html.escape(str(report['window']['end']))},
{_fmt(report['window'].get('train_rows'))} training rows; holdout {_fmt(report['window'].get('holdout_rows'))} rows from
{html.escape(str(report['window'].get('holdout_start')))}. Production: v{_fmt(report.get('production_version'))}.</p>
<h2>Overall</h2>{_table(['metric', 'candidate', 'production', 'difference'], metric_rows)}
<div>{_svg('ROC', curves.get('roc', {}), 'false positive rate', 'true positive rate')}
{_svg('Reliability', curves.get('reliability', {}), 'mean predicted', 'observed rate', zoom=True)}</div>
{heads}
<h2>Gates</h2>{_table(['scope', 'metric', 'candidate', 'production', 'limit', 'result'], gate_rows)}
<h2>Segments</h2>{_table(['segment', 'rows', 'AUC cand.', 'AUC prod.', 'calib. cand.', 'calib. prod.'], seg_rows)}
<h2>Infra validation</h2>
<p>{'ok' if infra.get('passed') else 'FAILED'}: {html.escape(str(infra.get('message', '–')))}</p>
</body></html>
"""


def write_report(directory: Path, report: dict[str, Any], curves: dict[str, dict[str, list]]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "evaluation.json", directory / "evaluation.html"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    html_path.write_text(render_html(report, curves))
    return json_path, html_path
