"""`driftline jobs list | history | run-now`: the scheduled jobs and their run ledger."""

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def _open(config_path: Path):
    from monitor.config import load_config
    from monitor.ledger import Ledger
    from monitor.store import ResultsStore

    config = load_config(config_path)
    store = ResultsStore(config.store_url())
    return config, store, Ledger(store.engine)


def _text(value) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def next_wake_up(schedule, now):
    """The next fire time, or None once it would close a window after the schedule's `end`."""
    from monitor.scheduling import utc

    upcoming = schedule.trigger().get_next_fire_time(None, now)
    end = schedule.config.end
    if upcoming is not None and end is not None and schedule.end_for(upcoming) > utc(end):
        return None
    return upcoming


def _dump(rows: list[dict]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
                     + "\n")


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import OutputFormat

    jobs_app = typer.Typer(rich_markup_mode=None, help="Scheduled jobs and the run ledger.", no_args_is_help=True)
    app.add_typer(jobs_app, name="jobs")
    config_option = typer.Option(..., "--config", help="The driftline YAML config.")
    format_option = typer.Option(OutputFormat.table, "--format", help="table or json.")

    @jobs_app.command("list")
    def jobs_list(config: Path = config_option, output_format: OutputFormat = format_option) -> None:
        """Every configured schedule: trigger, window, next wake-up, latest window and its state."""
        from rich.table import Table

        from monitor.cli import _fail, out
        from core.errors import DriftlineError
        from monitor.ledger import now_utc
        from monitor.scheduling import schedules_of

        try:
            cfg, store, ledger = _open(config)
            try:
                now = now_utc()
                rows = []
                for schedule in schedules_of(cfg):
                    latest = ledger.latest(schedule.model, schedule.check, schedule.grid) or {}
                    upcoming = next_wake_up(schedule, now)
                    rows.append({"job": schedule.job_id, "model": schedule.model, "check": schedule.check,
                                 "schedule": schedule.describe(), "next_wake_up": upcoming,
                                 "latest_window_end": latest.get("window_end"), "latest_state": latest.get("state"),
                                 "latest_result": latest.get("result_status")})
            finally:
                store.close()
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            return _dump(rows)
        table = Table(title="driftline jobs", title_justify="left")
        for column in ("model", "check", "schedule", "next wake-up", "latest window end", "state", "result"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["model"], row["check"], row["schedule"],
                          _text(row["next_wake_up"]) if row["next_wake_up"] else "none (schedule ended)",
                          _text(row["latest_window_end"]), _text(row["latest_state"]), _text(row["latest_result"]))
        out.print(table)

    @jobs_app.command("history")
    def jobs_history(
        config: Path = config_option,
        model: Optional[str] = typer.Option(None, help="Only this model."),
        check: Optional[str] = typer.Option(None, help="Only this check."),
        state: Optional[str] = typer.Option(None, help="pending, running, succeeded, failed or skipped."),
        limit: int = typer.Option(50, min=1, max=10_000, help="Newest rows to show."),
        events: bool = typer.Option(False, "--events", help="Show ledger events (overlaps, retries, timeouts)."),
        output_format: OutputFormat = format_option,
    ) -> None:
        """The run ledger, newest window first."""
        from rich.table import Table

        from monitor.cli import _fail, out
        from core.errors import DriftlineError

        try:
            _, store, ledger = _open(config)
            try:
                rows = ledger.events(model, check, limit) if events else ledger.rows(model, check, state, limit)
            finally:
                store.close()
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            return _dump(rows)
        if events:
            table = Table(title="driftline job events", title_justify="left")
            for column in ("at", "model", "check", "kind", "window end", "message"):
                table.add_column(column)
            for row in rows:
                table.add_row(_text(row["at"]), row["model"], row["check"], row["kind"], _text(row["window_end"]),
                              row["message"] or "")
        else:
            table = Table(title="driftline run ledger", title_justify="left")
            for column in ("model", "check", "window start", "window end", "state", "result", "attempts",
                           "failures", "duration s", "reason"):
                table.add_column(column)
            for row in rows:
                duration = row["duration_seconds"]
                table.add_row(row["model"], row["check"], _text(row["window_start"]), _text(row["window_end"]),
                              row["state"], _text(row["result_status"]), str(row["attempts"]), str(row["failures"]),
                              "-" if duration is None else f"{duration:.1f}", (row["reason"] or "")[:80])
        out.print(table)

    @jobs_app.command("run-now")
    def run_now(
        config: Path = config_option,
        model: Optional[str] = typer.Option(None, help="Model (required when several are configured)."),
        check: list[str] = typer.Option([], help="Check (repeatable); default: every scheduled check of the model."),
        window: Optional[str] = typer.Option(None, help="START/END; default: each schedule's latest closed window."),
    ) -> None:
        """Run now, through the ledger (a window another process is running is refused), and alert."""
        from monitor.alerts.outbox import Outbox
        from monitor.alerts.rules import routes_for
        from monitor.cli import _fail, out
        from core.errors import DriftlineError
        from monitor.ledger import now_utc
        from monitor.scheduling import schedules_of
        from monitor.service import JobRunner, heartbeat
        from core.sources import parse_window

        try:
            cfg, store, ledger = _open(config)
        except DriftlineError as exc:
            _fail(str(exc))
        failed = []
        try:
            name = cfg.model(model).name
            schedules = [s for s in schedules_of(cfg) if s.model == name]
            checks = check or sorted({s.check for s in schedules})
            if not checks:
                raise DriftlineError(f"model {name!r} has no schedules; name a --check and a --window")
            routes = {name: routes_for(cfg.model(name), cfg.base_dir)}
            runner = JobRunner(cfg, store, ledger, routes)
            with heartbeat(ledger, runner.lease):
                for check_name in checks:
                    schedule = next((s for s in schedules if s.check == check_name), None)
                    if window:
                        start, end = parse_window(window)
                        cfg.model(name).check_window(start, end)
                    elif schedule is not None:
                        ends = schedule.closed_ends(now_utc(), limit=1)
                        if not ends:
                            raise DriftlineError(f"{name}/{check_name}: the schedule has closed no window yet")
                        start, end = schedule.start_for(ends[0]), ends[0]
                    else:
                        raise DriftlineError(f"{name}/{check_name}: not scheduled; give --window START/END")
                    outcome = runner.run_window(name, check_name, start, end, schedule=schedule, force=True)
                    out.print(f"{name}/{check_name} {start.isoformat()}/{end.isoformat()}: {outcome}",
                              markup=False, highlight=False)
                    if outcome not in ("succeeded", "pending"):
                        failed.append(check_name)
            Outbox(store.engine, {r.id: r.sink for r in routes[name]}).deliver_due()
        except DriftlineError as exc:
            _fail(str(exc))
        finally:
            store.close()
        if failed:
            _fail(f"run-now did not succeed for: {', '.join(failed)} (see `driftline jobs history`)")
