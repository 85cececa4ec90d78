"""`driftline check skew`: train/serve skew between training examples and serving logs."""

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer


def _names(text: Optional[str]) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _adapters(models: list[str], vocabulary: Optional[Path]) -> dict:
    """`PATH` replays every logged version; `VERSION=PATH` only that version's rows."""
    from skew.prediction import load_adapter

    adapters = {}
    for item in models:
        version, path = None, item
        head, sep, tail = item.partition("=")
        if sep and os.sep not in head and "/" not in head:
            version, path = head.strip(), tail.strip()
        adapters[version] = load_adapter(path, vocabulary)
    return adapters


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import (
        ENGINE_HELP,
        SPARK_CONF_HELP,
        SPARK_MASTER_HELP,
        EngineName,
        FailOn,
        OutputFormat,
        _exit_code,
        _fail,
        one_off_engine,
    )
    from core.errors import DriftlineError

    @check_app.command("skew")
    def check_skew(
        training: str = typer.Option(..., help="Training examples of the served events: file, directory, glob or URI."),
        serving: str = typer.Option(..., help="Serving logs: file, directory, glob or URI."),
        key: str = typer.Option(..., help="Example id column joining serving rows to training examples."),
        model: list[str] = typer.Option([], help="LightGBM text model (or demo world directory) to replay the "
                                                 "logged features through; VERSION=PATH for one logged version."),
        vocabulary: Optional[Path] = typer.Option(None, help="JSON mapping each categorical model input to its "
                                                             "categories (code = position)."),
        score_column: str = typer.Option("score", help="The logged score column."),
        version_column: str = typer.Option("model_version", help="The logged model version column."),
        features: Optional[str] = typer.Option(None, help="Comma-separated features; default: every training column."),
        serving_absent: Optional[str] = typer.Option(None, help="Comma-separated columns absent at serving by "
                                                                "design (labels)."),
        segments: Optional[str] = typer.Option(None, help="Comma-separated serving columns to break "
                                                          "mismatches down by."),
        tolerance: float = typer.Option(1e-9, min=0, help="Absolute tolerance for numeric values."),
        relative_tolerance: float = typer.Option(1e-9, min=0, help="Relative tolerance for numeric values."),
        decimals: Optional[int] = typer.Option(None, help="Compare numerics rounded to this many decimals instead."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when the check or any feature reaches "
                                                            "this status."),
        min_samples: int = typer.Option(1000, min=1, help="Fewer values than this give insufficient_data."),
        memory_limit: str = typer.Option("1.5GB", help="DuckDB memory limit for the join (it spills beyond)."),
        threads: int = typer.Option(2, min=1, help="DuckDB threads for the join."),
        engine: EngineName = typer.Option(EngineName.local, help=ENGINE_HELP),
        spark_master: str = typer.Option("local[2]", help=SPARK_MASTER_HELP),
        spark_conf: list[str] = typer.Option([], help=SPARK_CONF_HELP),
    ) -> None:
        """Compare training examples with serving logs: schema, distribution, feature-value and prediction skew."""
        from core.sources import Source
        from skew.check import SkewCheck
        from skew.distribution import DistributionSettings
        from skew.feature_values import JoinSettings, Tolerance

        try:
            spark = one_off_engine(engine, spark_master, spark_conf)
            if spark is None:
                training_source, serving_source = Source(training), Source(serving)
            else:
                training_source, serving_source = spark.source(training), spark.source(serving)
            names = _names(features)
            kinds = None
            if names:
                from core.reference import feature_kinds

                kinds = feature_kinds(training_source, names)
            absent = [c for c in _names(segments) if c not in serving_source.schema.names]
            if absent:
                raise DriftlineError(f"{serving}: segment column '{absent[0]}' is missing in the serving data")
            adapters = _adapters(model, vocabulary) if model else None
            check = SkewCheck(
                key=key, features=kinds, serving_absent=tuple(_names(serving_absent)),
                ignore=(score_column, version_column),
                distribution=DistributionSettings(min_samples=min_samples),
                join=JoinSettings(tolerance=Tolerance(tolerance, relative_tolerance, decimals),
                                  segments=tuple(_names(segments)), memory_limit=memory_limit, threads=threads),
                score_column=score_column, version_column=version_column,
            )
            report = check.run(training_source, serving_source, adapters, engine=spark)
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        else:
            print_report(report)
        raise typer.Exit(_exit_code([f.status for f in report.features] + [report.status], fail_on))


def print_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from monitor.cli import out

    colours = {"ok": "green", "warn": "yellow", "alert": "red", "error": "red", "insufficient_data": "blue"}

    def paint(status: str) -> str:
        return f"[{colours.get(status, 'white')}]{status}[/]"

    out.print(f"train_serve_skew: {paint(report.status)}  (training {report.training_rows:,} rows, "
              f"serving {report.serving_rows:,} rows)")
    issues = list(report.schema)
    if issues:
        table = Table(title="schema", title_justify="left")
        for column in ("column", "issue", "severity", "detail"):
            table.add_column(column)
        for issue in issues:
            table.add_row(escape(issue.column), issue.issue,
                          paint(issue.severity) if issue.severity != "info" else "info", escape(issue.detail))
        out.print(table)
    if report.join is not None:
        j = report.join
        out.print(f"join on '{j.key}': {paint(j.status)} matched {j.matched:,} keys, serving only {j.serving_only:,} "
                  f"rows, training only {j.training_only:,} rows, duplicate keys {j.duplicate_keys:,}"
                  + (f" ({escape('; '.join(j.reasons))})" if j.reasons else ""))
    table = Table(title="features", title_justify="left")
    for column in ("feature", "kind", "method", "distribution", "value mismatch", "null mismatch", "status", "why"):
        table.add_column(column, justify="right" if column in ("distribution", "value mismatch", "null mismatch")
                         else "left")
    for f in report.features:
        table.add_row(
            escape(f.feature), f.kind, f.method or "-",
            "-" if f.distribution_score is None else f"{f.distribution_score:.4f}",
            "-" if f.value_mismatch_rate is None else f"{f.value_mismatch_rate:.2%}",
            "-" if f.null_mismatch_rate is None else f"{f.null_mismatch_rate:.2%}",
            paint(f.status), escape("; ".join(f.reasons) or (f.message or "")),
        )
    out.print(table)
    p = report.prediction
    if p is not None:
        out.print(f"prediction replay of '{p.score_column}': {paint(p.status)} "
                  + ("no rows compared" if not p.compared else
                     f"{p.mismatch_rate:.2%} differ by more than {p.tolerance:g} (mean |diff| {p.mean_abs_diff:.3g}, "
                     f"max {p.max_abs_diff:.3g})")
                  + (f"; {p.not_compared:,} rows not compared (null, NaN or infinite score)" if p.not_compared else ""))
        for v in p.by_version:
            detail = v.message or (f"{v.mismatch_rate:.2%} differ" if v.mismatch_rate is not None else "")
            out.print(f"  version {escape(str(v.model_version))}: {paint(v.status)} {v.rows:,} rows, {escape(detail)}")
    worst = [s for s in report.segments if s.mismatch_rate > 0][:5]
    if worst:
        out.print("segments with the most mismatches: " + "; ".join(
            escape(f"{s.segment}={s.value} {s.mismatch_rate:.1%}") for s in worst))
    for error in report.errors:
        out.print(f"[red]error[/]: {escape(error)}")
    if report.bad_files:
        out.print(f"[yellow]partial: {len(report.bad_files)} unreadable file(s)[/]")
