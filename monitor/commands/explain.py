"""`driftline explain --model PATH --data PATH`: global feature importances of one model."""

# No `from __future__ import annotations`: typer resolves the annotations, and OutputFormat
# is imported inside register() (monitor.cli imports this module while it loads).
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import OutputFormat, _fail, out

    @app.command("explain")
    def explain(
        model: Path = typer.Option(..., help="LightGBM model in text format (never pickle), or a retrain/ model "
                                               "directory (DCN-V2, ESMM: deep SHAP at x0)."),
        data: str = typer.Option(..., help="Data to explain: file, directory, glob or URI (held out for permutation)."),
        method: str = typer.Option("shap", help="shap (mean |SHAP|, exact TreeSHAP) or permutation (log-loss)."),
        label: Optional[str] = typer.Option(None, help="Binary label column (required for permutation)."),
        sample: int = typer.Option(5000, help="Rows explained: a uniform sample of the data."),
        vocabulary: Optional[Path] = typer.Option(None, help="JSON {feature: [category, ...]} coding categoricals."),
        repeats: int = typer.Option(5, help="Shuffles per feature (permutation)."),
        group: list[str] = typer.Option([], help="Permute together: NAME=COL1,COL2 (repeatable)."),
        seed: int = typer.Option(0, help="Seed of the sample and the shuffles."),
        report: Optional[Path] = typer.Option(None, help="Write an HTML report with plots here."),
        background: Optional[str] = typer.Option(
            None, help="Deep models: data the background sample is drawn from (default: --data)."),
        background_rows: int = typer.Option(200, help="Deep models: rows in the background sample (seeded)."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    ) -> None:
        """Which features drive the model: SHAP or permutation importance, with their uncertainty."""
        import json
        import sys

        from explain.oneoff import explain_file
        from core.errors import DriftlineError

        try:
            groups = _groups(group)
            result = explain_file(model, data, method, label, sample, vocabulary, seed, repeats, groups, report,
                                  background=background, background_rows=background_rows)
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
            return
        _print(out, result, report)


def _groups(items: list[str]) -> dict[str, list[str]]:
    from core.errors import DriftlineError

    groups = {}
    for item in items:
        name, _, columns = item.partition("=")
        members = [c.strip() for c in columns.split(",") if c.strip()]
        if not name.strip() or not members:
            raise DriftlineError(f"--group {item!r}: expected NAME=COL1,COL2")
        groups[name.strip()] = members
    return groups


def _print(out, result, report) -> None:
    from rich.markup import escape
    from rich.table import Table

    shap = result.method == "shap"
    title = f"{result.model}: {result.method} importance on {result.rows} rows"
    if shap:
        title += f" (base value {result.base_value:.4f}, additivity error {result.additivity_error:.1e})"
    table = Table(title=title, title_justify="left")
    # Only the columns this model has (a deep ranker has no gain or split counts).
    extras = tuple(e for e in (("gain_share", "split") if shap else ("auc_delta", "se"))
                   if any(e in f.extra for f in result.features))
    for column in ("feature", "importance", "std") + extras:
        table.add_column(column, justify="left" if column == "feature" else "right")
    for f in result.features:
        cells = [f.importance, f.std] + [f.extra.get(e) for e in extras]
        table.add_row(f.feature, *("-" if v is None else f"{v:.4g}" for v in cells))
    out.print(table)
    if result.status != "ok":
        out.print(f"[blue]{result.status}[/]: " + escape("; ".join(result.reasons)), highlight=False)
    if result.partial:
        out.print(f"[yellow]partial: {len(result.bad_files)} unreadable file(s) skipped[/]: "
                  + escape("; ".join(result.bad_files)), highlight=False)
    if report is not None:
        out.print(f"report: {report}")
