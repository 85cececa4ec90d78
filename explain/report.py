"""A self-contained HTML explain report: global importance bars, a beeswarm of per-row SHAP
values, importance over time, and the drift table. PNGs are embedded as base64; matplotlib
is imported here only, through its object API (no pyplot global state, safe in threads).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from core.results import CheckResult

BEESWARM_ROWS = 2000
TOP_FEATURES = 12


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.1)  # labels never clipped
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def importance_bars(rows: list[dict], reference_rows: list[dict], method: str, title: str) -> str:
    current = {r["feature"]: r for r in rows if r["method"] == method}
    reference = {r["feature"]: r for r in reference_rows if r["method"] == method}
    names = sorted(current, key=lambda f: -current[f]["importance"])[:TOP_FEATURES][::-1]
    fig = _figure(7, 0.35 * len(names) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(names))
    if reference:
        ax.barh(y + 0.2, [reference.get(n, {}).get("importance", np.nan) for n in names], 0.4,
                label="reference", color="#bbbbbb")
    ax.barh(y - 0.2 if reference else y, [current[n]["importance"] for n in names], 0.4 if reference else 0.7,
            xerr=[current[n].get("std") or 0 for n in names], label="current", color="#1f77b4")
    ax.set_yticks(y, names)
    ax.set_xlabel(title)
    ax.legend(loc="lower right")
    return _png(fig)


def beeswarm(values, features: tuple[str, ...], seed: int = 0) -> str:
    """Per-row SHAP values per feature, coloured by the feature's value (rank within the sample)."""
    shap = values.values
    matrix = values.matrix
    if len(shap) > BEESWARM_ROWS:
        keep = np.random.default_rng(seed).choice(len(shap), BEESWARM_ROWS, replace=False)
        shap, matrix = shap[keep], matrix[keep]
    order = np.argsort(-np.abs(shap).mean(axis=0))[:TOP_FEATURES][::-1]
    fig = _figure(7, 0.4 * len(order) + 1.2)
    ax = fig.add_subplot()
    rng = np.random.default_rng(seed)
    for row, j in enumerate(order):
        column = matrix[:, j]
        finite = np.isfinite(column)
        colour = np.full(len(column), 0.5)
        if finite.any():
            ranks = np.argsort(np.argsort(column[finite]))
            colour[finite] = ranks / max(len(ranks) - 1, 1)
        # Fixed colour limits: a column with no values to rank (an embedded categorical) stays grey.
        ax.scatter(shap[:, j], row + rng.uniform(-0.3, 0.3, len(column)), c=colour, cmap="coolwarm",
                   vmin=0, vmax=1, s=4, alpha=0.6, linewidths=0)
    ax.axvline(0, color="#888888", linewidth=0.8)
    ax.set_yticks(np.arange(len(order)), [features[j] for j in order])
    ax.set_xlabel("SHAP value (log-odds); colour: feature value low (blue) to high (red), grey: unordered")
    return _png(fig)


def history_from_results(results, current: CheckResult) -> list[tuple[str, dict]]:
    """[(window_start, {method: {feature: importance}})] of stored runs, with this one replacing its own window."""
    by_window: dict[str, dict] = {}
    for result in list(results) + [current]:
        if result.status == "error" or not result.window_start:
            continue
        methods: dict[str, dict] = {}
        for row in result.details.get("importance", []):
            methods.setdefault(row["method"], {})[row["feature"]] = row["importance"]
        by_window[result.window_start] = methods
    return sorted(by_window.items())


def importance_over_time(history: list[tuple[str, dict]], method: str) -> str | None:
    points = [(w, m[method]) for w, m in history if method in m]
    if len(points) < 2:
        return None
    # The features that mattered most in any window: a collapsed one stays on the plot.
    peak: dict[str, float] = {}
    for _, values in points:
        for name, value in values.items():
            peak[name] = max(peak.get(name, -np.inf), value if value is not None else -np.inf)
    names = sorted(peak, key=lambda f: -peak[f])[:8]
    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(points))
    for name in names:
        ax.plot(x, [p[1].get(name, np.nan) for p in points], marker="o", label=name)
    ax.set_xticks(x, [w[:16].replace("T", " ") for w, _ in points], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(method)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def _img(data: str | None, alt: str) -> str:
    return "" if data is None else f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render_explain_report(path: str | Path, title: str, result: CheckResult, values,
                          history: list[tuple[str, dict]]) -> Path:
    path = Path(path)
    rows, reference_rows = result.details.get("importance", []), result.details.get("reference_importance", [])
    sections = [f"<h1>{html.escape(title)}</h1>", f"<p>status: <b>{html.escape(result.status)}</b></p>"]
    details = result.details
    if details.get("additivity_error") is not None:  # how far base + sum(SHAP) is from the model's logit
        explainer = f", explainer {_fmt(details['explainer'])}" if details.get("explainer") else ""
        background = details.get("background") or {}
        against = f", against {_fmt(background['rows'])} background rows" if background.get("rows") else ""
        sections.append(f"<p>base value {_fmt(details.get('base_value'))} (log-odds); additivity error "
                        f"<b>{_fmt(details['additivity_error'])}</b> (max |base + &Sigma; SHAP &minus; logit| over "
                        f"the rows{explainer}{against})</p>")
    rankings = result.details.get("rankings", {})
    if rankings:
        sections.append("<h2>Rankings</h2><table><tr><th>method</th><th>Spearman</th><th>nDCG@k</th>"
                        "<th>k</th><th>flagged</th><th>reference top</th><th>current top</th></tr>")
        for method, r in rankings.items():
            sections.append(f"<tr><td>{_fmt(method)}</td><td>{_fmt(r['spearman'])}</td><td>{_fmt(r['ndcg'])}</td>"
                            f"<td>{_fmt(r['k'])}</td><td>{_fmt(r['flagged'])}</td><td>{_fmt(', '.join(r['reference_top']))}</td>"
                            f"<td>{_fmt(', '.join(r['current_top']))}</td></tr>")
        sections.append("</table>")
    sections.append("<h2>Global importance</h2>")
    sections.append(_img(importance_bars(rows, reference_rows, "mean_abs_shap", "mean |SHAP| (log-odds)"),
                         "mean |SHAP|"))
    if any(r["method"] == "permutation_logloss" for r in rows):
        sections.append(_img(importance_bars(rows, reference_rows, "permutation_logloss",
                                             "permutation importance (log-loss increase)"), "permutation"))
    if values is not None:
        sections.append("<h2>SHAP values (beeswarm)</h2>")
        sections.append(_img(beeswarm(values, values.features), "beeswarm"))
    over_time = [importance_over_time(history, m) for m in ("mean_abs_shap", "permutation_logloss")]
    if any(over_time):
        sections.append("<h2>Importance over time</h2>")
        sections.extend(_img(image, "importance over time") for image in over_time)
    if result.features:  # attribution drift: each feature's SHAP-distribution change
        sections.append("<h2>Features</h2><table><tr><th>feature</th><th>status</th><th>SHAP wasserstein</th>"
                        "<th>why</th></tr>")
        for f in result.features:
            why = "; ".join(f.reasons) or (f.message or "")
            sections.append(f"<tr><td>{_fmt(f.feature)}</td><td>{_fmt(f.status)}</td><td>{_fmt(f.score)}</td>"
                            f"<td>{_fmt(why)}</td></tr>")
        sections.append("</table>")
    elif rows:  # a one-off explanation: the importances themselves
        sections.append("<h2>Features</h2><table><tr><th>feature</th><th>method</th><th>importance</th>"
                        "<th>std</th></tr>")
        for r in sorted(rows, key=lambda r: -(r.get("importance") or 0)):
            sections.append(f"<tr><td>{_fmt(r['feature'])}</td><td>{_fmt(r['method'])}</td>"
                            f"<td>{_fmt(r.get('importance'))}</td><td>{_fmt(r.get('std'))}</td></tr>")
        sections.append("</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style></head><body>"
            + "\n".join(sections) + "</body></html>")
    from checks.drift_report import write_report

    write_report(path, page)
    return path
