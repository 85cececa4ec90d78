"""The `driftline` command line. The only place that turns exceptions into exit codes:
0 the command ran (whatever it found), 1 a `--fail-on` level was met, 2 bad input."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional


def use_returning_memory_pool() -> None:
    """Have Arrow allocate from jemalloc in this process, unless ARROW_DEFAULT_MEMORY_POOL says otherwise.

    Arrow's default pool (mimalloc) keeps pages its threads freed: `check drift` over 1M rows
    peaked ~80 MiB higher than with jemalloc, which hands them back. Arrow reads the variable
    when it first allocates (importing pyarrow does), so this runs when the CLI module loads,
    before any command imports pyarrow; the installed `driftline` script calls `app` directly.
    Windows builds of pyarrow have no jemalloc.
    """
    if sys.platform != "win32" and "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def use_one_blas_thread() -> None:
    """Have numpy's OpenBLAS run on the calling thread, unless OPENBLAS_NUM_THREADS says otherwise.

    driftline's numpy work is vector passes, not matrix products, and its parallelism is its own
    (the profile kernel's workers; LightGBM and torch have theirs). OpenBLAS still starts a
    thread per core when numpy loads, and they spin: ~0.07 CPU-s of every `check drift` on two
    cores. OpenBLAS reads the variable when it loads, so this runs before any command imports numpy.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# The CLI is the application: process-wide choices belong here.
use_returning_memory_pool()
use_one_blas_thread()

import typer  # noqa: E402  (after the memory pool choice above)
from rich.console import Console  # noqa: E402

from core.errors import DriftlineError  # noqa: E402

# rich_markup_mode=None everywhere: help is plain text, so `{feature: [category, ...]}` keeps its
# brackets (rich markup would read them as tags) and flags show no `<bool>` type.
app = typer.Typer(rich_markup_mode=None, help="Drift, skew and calibration monitoring for ranking and CTR models.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
check_app = typer.Typer(rich_markup_mode=None, help="One-off checks that need no config file.", no_args_is_help=True)
app.add_typer(check_app, name="check")


def _consoles() -> tuple[Console, Console]:
    from monitor.commands.tables import console

    return console(), console(stderr=True)


out, err = _consoles()


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class FailOn(str, Enum):
    warn = "warn"
    alert = "alert"


class EngineName(str, Enum):
    local = "local"
    spark = "spark"


ENGINE_HELP = "local (read and profile here) or spark (the same kernel on Spark; needs the spark extra)."
SPARK_MASTER_HELP = "Spark master for --engine spark: local[N], spark://host:7077, yarn, ..."
SPARK_CONF_HELP = "Spark setting for --engine spark, KEY=VALUE (repeatable), e.g. spark.executor.memory=4g."


def one_off_engine(engine: EngineName, master: str, conf: list[str]):
    """None for the embedded engine, else a SparkEngine (one-off checks have no config file)."""
    if engine is EngineName.local:
        return None
    from core.engines import SparkSettings, get_engine

    settings = {}
    for item in conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise DriftlineError(f"--spark-conf {item!r}: expected spark.KEY=VALUE")
        settings[key.strip()] = value.strip()
    return get_engine("spark", SparkSettings(master=master, conf=settings))


def _fail(message: str) -> None:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _exit_code(statuses: list[str], fail_on: FailOn | None) -> int:
    if fail_on is None:
        return 0
    levels = {"warn": {"warn", "alert", "error"}, "alert": {"alert", "error"}}[fail_on.value]
    return 1 if any(s in levels for s in statuses) else 0


def _print_result_table(result) -> None:
    from monitor.commands.tables import render

    render(result, out)


@check_app.command("drift")
def check_drift(
    reference: str = typer.Option(..., help="Reference (training) data: file, directory, glob or URI."),
    current: str = typer.Option(..., help="Current (serving) data: file, directory, glob or URI."),
    features: Optional[str] = typer.Option(None, help="Comma-separated features; default: every reference column "
                                                       "that is a feature (identifiers, timestamps, labels and scores "
                                                       "are inferred from names and values, skipped and listed)."),
    output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    report: Optional[Path] = typer.Option(None, help="Write an Evidently drill-down report (HTML) here."),
    fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when any feature reaches this status."),
    min_samples: int = typer.Option(1000, help="Fewer values than this give insufficient_data."),
    method: list[str] = typer.Option([], help="Per-feature method, FEATURE=METHOD (wasserstein, psi, jensenshannon, linf)."),
    engine: EngineName = typer.Option(EngineName.local, help=ENGINE_HELP),
    spark_master: str = typer.Option("local[2]", help=SPARK_MASTER_HELP),
    spark_conf: list[str] = typer.Option([], help=SPARK_CONF_HELP),
) -> None:
    """Compare two datasets feature by feature and report drift."""
    from monitor.oneoff import drift_between

    try:
        methods = _parse_methods(method)
        names = [f.strip() for f in features.split(",") if f.strip()] if features else None
        result = drift_between(reference, current, names, methods=methods, min_samples=min_samples, report=report,
                               engine=one_off_engine(engine, spark_master, spark_conf))
    except DriftlineError as exc:
        _fail(str(exc))
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        _print_result_table(result)
    raise typer.Exit(_exit_code([f.status for f in result.features] + [result.status], fail_on))


def _parse_methods(items: list[str]) -> dict[str, str]:
    methods = {}
    for item in items:
        if "=" not in item:
            raise DriftlineError(f"--method {item!r}: expected FEATURE=METHOD")
        feature, name = item.split("=", 1)
        methods[feature.strip()] = name.strip()
    return methods


@app.command("run")
def run(
    config: Path = typer.Option(..., help="The driftline YAML config."),
    window: str = typer.Option(..., help="START/END in ISO 8601, END exclusive, e.g. 2026-01-01/2026-01-02."),
    model: Optional[str] = typer.Option(None, help="Model name (required when several are configured)."),
    check: list[str] = typer.Option([], help="Check to run (repeatable); default: every enabled check."),
    output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when any check reaches this status."),
    engine: Optional[EngineName] = typer.Option(None, help="Override the model's `engine:` setting: " + ENGINE_HELP),
) -> None:
    """Run configured checks for one window and store the results (idempotent per window)."""
    from monitor.config import load_config
    from monitor.runner import run_config
    from core.sources import parse_window

    try:
        cfg = load_config(config)
        start, end = parse_window(window)
        results = run_config(cfg, model, start, end, check or None,
                             progress=(lambda m: err.print(m, style="dim")) if output_format is OutputFormat.table else None,
                             engine=engine.value if engine else None)
    except DriftlineError as exc:
        _fail(str(exc))
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    else:
        for result in results:
            _print_result_table(result)
    raise typer.Exit(_exit_code([r.status for r in results], fail_on))


@app.command("init")
def init(
    path: Path = typer.Argument(Path("driftline.yaml"), help="Where to write the example config."),
    force: bool = typer.Option(False, help="Overwrite an existing file."),
) -> None:
    """Write a commented example configuration."""
    from monitor.config import example_config_text

    if path.exists() and not force:
        _fail(f"{path}: already exists (use --force to overwrite)")
    path.write_text(example_config_text())
    out.print(f"wrote {path}")


def print_demo_summary(summary: dict, workdir: Path, serve: bool = False) -> None:
    """The demo's closing summary: incidents caught, false alarms, ledger, alerts, retraining."""
    from rich.text import Text

    from monitor.commands.tables import add, table

    config = workdir / "driftline.yaml"
    found = table("driftline demo: planted incidents", ["incident", "day", "features", "caught by", "status"])
    for incident in summary["incidents"]:
        status = Text("caught", style="green") if incident["detected"] else Text(incident.get("note", "missed"),
                                                                                  style="yellow")
        add(found, incident["name"], incident["day"], ", ".join(incident["features"]) or "-",
            ", ".join(incident["detected_by"]) or "-", status)
    out.print(found)
    alarms = summary["false_alarms"]
    out.print(f"false alarms on clean days: {len(alarms)}" + (
        "" if not alarms else " (" + "; ".join(f"{a['day']} {a['check']} {','.join(a['features'])}" for a in alarms) + ")"
    ))
    jobs, alerts = summary.get("jobs", {}), summary.get("alerts", {})
    if jobs:
        ran = jobs["windows_run"]
        out.print(f"run ledger: {jobs['windows']} (check, day) windows " + (
            f"run now ({', '.join(f'{n} {k}' for k, n in sorted(jobs['outcomes'].items()))})" if ran
            else "already done by an earlier run (nothing re-run)") + f"; `driftline jobs history --config {config}`",
            markup=False, highlight=False)
    if alerts:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(alerts["delivered"].items())) or "none new"
        out.print(f"alerts delivered through the {alerts['sink']} sink: {counts}; lines in "
                  f"{workdir / alerts['log']}; `driftline alerts list --config {config}`", markup=False, highlight=False)
    if summary.get("ranking"):
        _print_ranking_demo(summary["ranking"])
    if summary.get("retrain"):
        from monitor.demo.retrain import summary_line

        out.print(summary_line(summary["retrain"]), highlight=False)
    out.print(f"summary: {workdir / 'summary.json'}")
    if not serve:
        out.print(f"next: `driftline demo --serve --workdir {workdir}` serves /metrics and the reports; "
                  f"your own model: `driftline init` (README, \"Monitor your own model\")", markup=False,
                  highlight=False)


@app.command("demo")
def demo(
    workdir: Path = typer.Option(Path("driftline-demo"), help="Where the demo world, store and reports go."),
    seed: int = typer.Option(7, help="Seed of the demo world."),
    rows_per_day: int = typer.Option(20_000, help="Impressions per simulated day."),
    serve: bool = typer.Option(False, "--serve", help="Then keep `driftline serve` running on the demo config."),
    host: str = typer.Option("127.0.0.1", help="With --serve: address to bind."),
    port: int = typer.Option(9108, help="With --serve: port for /metrics, /healthz and /reports/."),
) -> None:
    """Build the demo world (if absent), backfill the monitoring jobs over its 7 serving days, summarise."""
    from monitor.demo.run import run_demo

    try:
        summary = run_demo(workdir, seed=seed, rows_per_day=rows_per_day,
                           progress=lambda m: err.print(m, style="dim"))
    except DriftlineError as exc:
        _fail(str(exc))
    print_demo_summary(summary, workdir, serve)
    if serve:
        from monitor.commands.serve import run_service, setup_logging

        setup_logging()
        try:
            run_service(workdir / "driftline.yaml", host, port,
                        announce=lambda m: err.print(m, markup=False, highlight=False, soft_wrap=True))
        except DriftlineError as exc:
            _fail(str(exc))


def _print_ranking_demo(ranking: dict) -> None:
    from rich.text import Text

    from monitor.commands.tables import add, table

    found = table(f"driftline demo: ranking incidents ({ranking['model']})",
                  ["incident", "days", "caught by", "first caught", "what it named"])
    for incident in ranking["incidents"]:
        caught = Text(incident["check"], style="green") if incident["detected"] else Text("missed", style="yellow")
        add(found, incident["name"], f"{incident['days'][0]}..{incident['days'][-1]}", caught,
            incident["first_detected"] or "-", incident["what"] or "-")
    out.print(found)
    alarms = ranking["false_alarms"]
    out.print(f"ranking false alarms: {len(alarms)}" + (
        "" if not alarms else " (" + "; ".join(f"{a['day']} {a['check']}" for a in alarms) + ")"))


# Command groups living in their own modules (monitor/commands/<name>.py, each with
# `register(app, check_app)`). Their imports stay inside the commands, keeping startup light.
COMMAND_MODULES: list[str] = ["db", "dashboards", "serve", "jobs", "alerts", "quality", "calibration", "explain",
                               "skew", "retrain", "rollout"]


def _register_command_modules() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"monitor.commands.{name}").register(app, check_app)


_register_command_modules()


def main() -> None:  # pragma: no cover - console entry
    try:
        app()
    finally:
        # Leave what the command built (Evidently's and pydantic's classes, frames, models) out of
        # the collection the interpreter makes at exit: it took ~2 s after the demo had finished.
        import gc

        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
