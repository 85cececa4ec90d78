"""`driftline rollout status`: the always-valid verdict on a model rollout (stop, continue or
promote) with each metric's current interval, from the `rollout` check's configuration."""

# No `from __future__ import annotations`: typer resolves the annotations.
from pathlib import Path
from typing import Optional

import typer


def rollout_json(result) -> dict:
    """{"decision", "status", "control", "candidate", "metrics": {...}, "arms": {...}, "exported": [...]}."""
    data = result.to_dict()
    details = data.pop("details")
    for key in ("features", "report_path", "bad_files"):
        data.pop(key, None)
    data["exported"] = data.pop("metrics")  # the /metrics points; "metrics" is the per-metric verdict
    return {"schema_version": data.pop("schema_version"), "check": data.pop("check"),
            "decision": details.pop("decision", None), "status": data.pop("status"), **details, **data}


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import FailOn, OutputFormat

    rollout_app = typer.Typer(help="Model rollouts: control and candidate versions side by side.",
                              no_args_is_help=True)
    app.add_typer(rollout_app, name="rollout")

    @rollout_app.command("status")
    def status(
        config: Path = typer.Option(..., help="The driftline YAML config (models.<name>.checks.rollout)."),
        window: str = typer.Option(..., help="START/END, ISO 8601: the look covers [started or START, END)."),
        model: Optional[str] = typer.Option(None, help="Model name (required when several are configured)."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when the check reaches this status "
                                                            "(alert: the rollout should stop)."),
    ) -> None:
        """Stop, continue or promote, with an error rate that holds however often this is run."""
        import json
        import sys

        from core.errors import DriftlineError
        from core.sources import parse_window
        from monitor.cli import _exit_code, _fail, err
        from monitor.config import load_config
        from monitor.runner import run_config

        try:
            cfg = load_config(config)
            start, end = parse_window(window)
            (result,) = run_config(cfg, model, start, end, ["rollout"],
                                   progress=(lambda m: err.print(m, style="dim"))
                                   if output_format is OutputFormat.table else None)
            if result.status == "error":
                raise DriftlineError(result.details.get("error", "rollout check failed"))
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(rollout_json(result), indent=2) + "\n")
        else:
            _print(result)
        raise typer.Exit(_exit_code([result.status], fail_on))


def _print(result) -> None:
    from rich.table import Table

    from monitor.cli import out

    d = result.details
    if result.status == "pending":
        out.print(f"rollout: pending (labels mature at {d['labels_mature_at']})")
        return
    colour = {"stop": "red", "promote": "green"}.get(d["decision"], "yellow")
    share = "-" if d["candidate_share"] is None else f"{d['candidate_share']:.1%}"
    table = Table(title=f"rollout {d['control']} -> {d['candidate']} {d['stage']}: [{colour}]{d['decision']}[/] "
                        f"({d['hours']:.0f} h since {d['started']}, candidate share {share}, alpha {d['alpha']})",
                  title_justify="left")
    for column in ("metric", "control", "candidate", "difference", "always-valid interval", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")

    def fmt(value, spec):
        return "-" if value is None or value != value else ("inf" if value == float("inf") else format(value, spec))

    for name, m in d["metrics"].items():
        verdict = "harmful" if m["harmful"] else ("no worse" if m.get("non_inferior") else "undecided")
        if name == "calibration":
            t = d["calibration_tolerance"]
            inside = m["low"] is not None and m["high"] is not None and 1 / (1 + t) <= m["low"] and m["high"] <= 1 + t
            table.add_row("calibration ratio", "-", fmt(m["estimate"], ".3f"), "-",
                          f"[{fmt(m['low'], '.3f')}, {fmt(m['high'], '.3f')}]",
                          "harmful" if m["harmful"] else ("in band" if inside else "undecided"))
            continue
        spec = ".4f" if name == "ctr" else ".3f"
        table.add_row(name if name == "ctr" else "revenue/impression", fmt(m["control"], spec),
                      fmt(m["candidate"], spec), fmt(m["relative"], "+.1%"),
                      f"[{fmt(m['relative_low'], '+.1%')}, {fmt(m['relative_high'], '+.1%')}]", verdict)
    out.print(table)
    arms = d["arms"]
    out.print(f"impressions: control {arms['control']['impressions']:.0f}, candidate "
              f"{arms['candidate']['impressions']:.0f}", highlight=False)
