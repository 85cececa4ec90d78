"""`driftline alerts list | test SINK`: the alert outbox and a test message per route."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import OutputFormat

    alerts_app = typer.Typer(rich_markup_mode=None, help="Alert routes, the outbox and test messages.", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")
    config_option = typer.Option(..., "--config", help="The driftline YAML config.")

    @alerts_app.command("list")
    def alerts_list(
        config: Path = config_option,
        state: Optional[str] = typer.Option(None, help="pending, sending, delivered or dead."),
        active: bool = typer.Option(False, "--active", help="Show the active alert keys instead of messages."),
        limit: int = typer.Option(50, min=1, max=10_000),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    ) -> None:
        """The outbox, newest first: what was sent, what is retrying, what was dead-lettered."""
        from rich.table import Table

        from monitor.alerts import outbox
        from monitor.cli import _fail, out
        from monitor.commands.jobs import _dump, _text
        from monitor.config import load_config
        from core.errors import DriftlineError
        from monitor.store import ResultsStore

        try:
            store = ResultsStore(load_config(config).store_url())
        except DriftlineError as exc:
            _fail(str(exc))
        try:
            rows = outbox.active_alerts(store.engine) if active else outbox.rows(store.engine, state, limit)
        finally:
            store.close()
        for row in rows:
            row.pop("payload_json", None)
        if output_format is OutputFormat.json:
            return _dump(rows)
        if active:
            table = Table(title="active alerts", title_justify="left")
            for column in ("route", "model", "check", "feature", "severity", "since", "notified"):
                table.add_column(column)
            for row in rows:
                table.add_row(row["route"], row["model"], row["check_name"], row["feature"] or "-", row["severity"],
                              _text(row["active_since"]), _text(row["notified"]))
        else:
            table = Table(title="alert outbox", title_justify="left")
            for column in ("id", "created", "route", "kind", "key", "state", "attempts", "next attempt", "error"):
                table.add_column(column)
            for row in rows:
                table.add_row(str(row["id"]), _text(row["created_at"]), row["route"], row["kind"], row["dedup_key"],
                              row["state"], f"{row['attempts']}/{row['max_attempts']}",
                              _text(row["next_attempt_at"]) if row["state"] == "pending" else "-",
                              (row["last_error"] or "")[:80])
        out.print(table)

    @alerts_app.command("test")
    def alerts_test(
        sink: str = typer.Argument(..., help="A route name, or a sink kind (webhook, slack, email, alertmanager, log)."),
        config: Path = config_option,
        model: Optional[str] = typer.Option(None, help="Only this model's routes."),
    ) -> None:
        """Send a test alert through every matching route, now (not through the outbox)."""
        from monitor.alerts.rules import make_test_message, routes_for
        from monitor.alerts.sinks import DeliveryError
        from monitor.cli import _fail, out
        from monitor.config import load_config
        from core.errors import DriftlineError

        try:
            cfg = load_config(config)
            models = [cfg.model(model)] if model else cfg.models
            routes = [r for m in models for r in routes_for(m, cfg.base_dir) if sink in (r.name, r.config.sink)]
            if not routes:
                known = sorted({r.name for m in models for r in routes_for(m, cfg.base_dir)})
                raise DriftlineError(f"no alert route named {sink!r} (routes: {', '.join(known) or 'none'})")
        except DriftlineError as exc:
            _fail(str(exc))
        failures = []
        for route in routes:
            try:
                route.sink.send(make_test_message(route))
                out.print(f"{route.id}: test alert sent", markup=False, highlight=False)
            except (DeliveryError, DriftlineError) as exc:
                failures.append(f"{route.id}: {exc}")
        if failures:
            _fail("; ".join(failures))
