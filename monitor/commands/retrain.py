"""`driftline retrain` and `driftline models list | show | promote | rollback`.

Exit codes as everywhere: 0 ran (a rejected candidate is a result, not an error), 1 with
`--fail-on-reject` when the candidate was not promoted, 2 bad input.
"""

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def _registry(config: Optional[Path], registry: Optional[Path], model: Optional[str]):
    """The registry named by --registry, or the one configured for the model in --config."""
    from monitor.cli import _fail
    from retrain.registry import ModelRegistry

    if registry is not None:
        return ModelRegistry(registry)
    if config is None:
        _fail("give --config FILE or --registry DIR")
    from monitor.config import load_config
    from retrain.pipeline import registry_for

    cfg = load_config(config)
    return registry_for(cfg, cfg.model(model))


def _params(items: list[str]) -> dict | None:
    """--param KEY=VALUE (VALUE parsed as YAML: numbers, booleans, lists)."""
    import yaml

    from core.errors import ConfigError

    if not items:
        return None
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = yaml.safe_load(value)
    return params


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import OutputFormat

    models_app = typer.Typer(rich_markup_mode=None, help="The model registry: versions, production pointer, rollback.", no_args_is_help=True)
    app.add_typer(models_app, name="models")
    config_opt = typer.Option(None, "--config", help="The driftline YAML config (locates the registry).")
    registry_opt = typer.Option(None, "--registry", help="Registry directory (instead of --config).")

    @app.command("retrain")
    def retrain(
        config: Path = typer.Option(..., help="The driftline YAML config."),
        model: Optional[str] = typer.Option(None, help="Model name (required when several are configured)."),
        trainer: Optional[str] = typer.Option(None, help="Trainer (default: retrain.trainer in the config)."),
        window: Optional[str] = typer.Option(
            None, help="START/END (END exclusive); default: the sliding training window."),
        param: list[str] = typer.Option([], help="Trainer parameter KEY=VALUE (repeatable), over retrain.params (over the defaults with --trainer of another trainer)."),
        promote: bool = typer.Option(True, "--promote/--no-promote", help="Promote the candidate if it passes."),
        registry: Optional[Path] = registry_opt,
        when_due: bool = typer.Option(False, "--when-due", help="Only if the schedule or the alert policy says so."),
        fail_on_reject: bool = typer.Option(False, "--fail-on-reject", help="Exit 1 when the candidate is rejected."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    ) -> None:
        """Train a candidate, evaluate it against production, register it, promote it if it passes the gates."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from monitor.cli import _fail, err, out
        from monitor.config import load_config
        from core.errors import DriftlineError
        from core.sources import parse_window
        from retrain.pipeline import registry_for, run_retrain

        trigger = "cli"
        try:
            cfg = load_config(config)
            model_cfg = cfg.model(model)
            bounds = parse_window(window) if window else None
            params = _params(param)
            if when_due:
                from monitor.store import ResultsStore
                from retrain.triggers import decide

                store = ResultsStore(cfg.store_url())
                try:
                    decision = decide(model_cfg, registry_for(cfg, model_cfg, registry), store)
                finally:
                    store.close()
                if not decision.due:
                    reason = decision.reason if decision.reason.startswith("not due") else f"not due: {decision.reason}"
                    out.print(f"retrain {reason}", markup=False, highlight=False)
                    raise typer.Exit(0)
                trigger = f"{decision.trigger}: {decision.reason}"
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                          TimeElapsedColumn(), console=err, transient=True,
                          disable=output_format is OutputFormat.json) as bar:
                task = bar.add_task("training", total=None)

                def progress(done: int, total: int, message: str) -> None:
                    bar.update(task, completed=done, total=total, description=message)

                def log(message: str) -> None:
                    if output_format is OutputFormat.table:
                        err.print(message, style="dim", markup=False, highlight=False)

                result = run_retrain(cfg, model_cfg.name, trainer, params, bounds, promote, registry,
                                     progress=progress, log=log, trigger=trigger)
        except DriftlineError as exc:
            _fail(str(exc))
        if result is None:  # a torchrun process other than rank 0: rank 0 reports
            raise typer.Exit(0)
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        else:
            _print_result(out, result)
        raise typer.Exit(1 if fail_on_reject and not result.promoted else 0)

    @models_app.command("list")
    def models_list(
        config: Optional[Path] = config_opt, registry: Optional[Path] = registry_opt,
        model: Optional[str] = typer.Option(None, help="Only this model."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    ) -> None:
        """Every version of every model, with its gates, metrics and the production pointer."""
        from rich.table import Table

        from monitor.cli import _fail, out
        from core.errors import DriftlineError

        try:
            reg = _registry(config, registry, model if config else None)
            names = [model] if model else reg.models()
            rows = []
            for name in names:
                production = reg.production(name)
                for version in reg.versions(name):
                    meta = reg.metadata(name, version)
                    gates = meta.get("gates") or {}
                    rows.append({"model": name, "version": version, "production": version == production,
                                 "trainer": meta.get("trainer"), "created_at": meta.get("created_at"),
                                 "trigger": meta.get("trigger"), "gates": gates.get("passed"),
                                 "auc": ((meta.get("metrics") or {}).get("candidate") or {}).get("auc"),
                                 "parent": meta.get("parent_version")})
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        table = Table(title=f"models in {reg.root}", title_justify="left")
        for column in ("model", "version", "", "trainer", "created", "trigger", "gates", "holdout AUC", "parent"):
            table.add_column(column)
        for r in rows:
            gates = {True: "[green]passed[/]", False: "[red]rejected[/]", None: "-"}[r["gates"]]
            table.add_row(r["model"], str(r["version"]), "[bold]production[/]" if r["production"] else "",
                          r["trainer"] or "-", r["created_at"] or "-", str(r["trigger"] or "-")[:40], gates,
                          "-" if r["auc"] is None else f"{r['auc']:.4f}", str(r["parent"] or "-"))
        out.print(table)

    @models_app.command("show")
    def models_show(
        model: str = typer.Argument(..., help="Model name."),
        version: Optional[int] = typer.Argument(None, help="Version (default: production)."),
        config: Optional[Path] = config_opt, registry: Optional[Path] = registry_opt,
    ) -> None:
        """A version's metadata (trainer, params, data window, metrics, gates, parent, code version) as JSON."""
        from monitor.cli import _fail
        from core.errors import DriftlineError

        try:
            reg = _registry(config, registry, model)
            version = version or reg.production(model)
            if version is None:
                _fail(f"{model}: no production version; name one (versions: {reg.versions(model)})")
            meta = dict(reg.metadata(model, version), path=str(reg.path(model, version)),
                        production=reg.production(model) == version)
        except DriftlineError as exc:
            _fail(str(exc))
        sys.stdout.write(json.dumps(meta, indent=2, default=str) + "\n")

    @models_app.command("promote")
    def models_promote(
        model: str = typer.Argument(..., help="Model name."),
        version: int = typer.Argument(..., help="Version to serve."),
        force: bool = typer.Option(False, "--force", help="Promote even if the version failed its gates."),
        reason: str = typer.Option("", help="Recorded with the promotion."),
        config: Optional[Path] = config_opt, registry: Optional[Path] = registry_opt,
    ) -> None:
        """Point production at a version (atomically; runs the push hook)."""
        from monitor.cli import _fail, out
        from core.errors import DriftlineError

        try:
            pointer = _registry(config, registry, model).promote(model, version, reason or "promoted by hand", force)
        except DriftlineError as exc:
            _fail(str(exc))
        out.print(f"{model}: production is v{pointer['version']}")

    @models_app.command("rollback")
    def models_rollback(
        model: str = typer.Argument(..., help="Model name."),
        reason: str = typer.Option("", help="Recorded with the rollback."),
        config: Optional[Path] = config_opt, registry: Optional[Path] = registry_opt,
    ) -> None:
        """Point production back at the previous production version."""
        from monitor.cli import _fail, out
        from core.errors import DriftlineError

        try:
            pointer = _registry(config, registry, model).rollback(model, reason)
        except DriftlineError as exc:
            _fail(str(exc))
        out.print(f"{model}: production rolled back to v{pointer['version']}")


def _print_result(out, result) -> None:
    from rich.table import Table

    verdict = ("[green]promoted[/]" if result.promoted else "[green]passed (not promoted)[/]" if result.passed
               else "[red]rejected[/]")
    out.print(f"{result.model} v{result.version} ({result.trainer}): {verdict}")
    for reason in result.reasons:
        out.print(f"  - {reason}", markup=False, highlight=False)
    table = Table(title="holdout", title_justify="left")
    for column in ("metric", "candidate", "production"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    production = result.production_metrics or {}
    for metric in ("auc", "log_loss", "normalized_entropy", "calibration_ratio", "rows"):
        c, p = result.metrics.get(metric), production.get(metric)
        table.add_row(metric, "-" if c is None else f"{c:.4f}" if isinstance(c, float) else str(c),
                      "-" if p is None else f"{p:.4f}" if isinstance(p, float) else str(p))
    out.print(table)
    if len(result.head_metrics) > 1:
        heads = Table(title="holdout, every head (candidate / production)", title_justify="left")
        for column in ("head", "rows", "auc", "log_loss", "calibration_ratio"):
            heads.add_column(column, justify="left" if column == "head" else "right")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        for head, both in result.head_metrics.items():
            c, p = both["candidate"], both.get("production") or {}
            heads.add_row(head, str(c["rows"]), *(f"{fmt(c[m])} / {fmt(p.get(m))}"
                                                  for m in ("auc", "log_loss", "calibration_ratio")))
        out.print(heads)
    out.print(f"production: v{result.production_after or '-'} (was v{result.production_before or '-'})")
    out.print(f"report: {result.report_html}")
