"""`driftline check calibration`: calibration ratio with an exact interval, ECE, Brier and
reliability points, overall and per segment; decay against a scored reference if given."""

from typing import Optional

import typer


def calibration_json(result) -> dict:
    """The command's JSON: {"check", "status", "overall": {...}, "segments": [...], ...}."""
    data = result.to_dict()
    details = data.pop("details")
    data.pop("features", None)
    return {"schema_version": data.pop("schema_version"), "check": data.pop("check"), "status": data.pop("status"),
            "overall": details.pop("overall"), "segments": details.pop("segments"), **details, **data}


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import FailOn, OutputFormat

    @check_app.command("calibration")
    def check_calibration(
        data: str = typer.Option(..., help="Scored, labelled data: file, directory, glob or URI."),
        prediction: str = typer.Option(..., help="Prediction column (probabilities in [0, 1])."),
        label: str = typer.Option(..., help="Binary label column (0/1)."),
        segment: list[str] = typer.Option([], help="Segment column (repeatable, or comma-separated)."),
        reference: Optional[str] = typer.Option(None, help="Scored, labelled reference: report decay against it."),
        top_n: int = typer.Option(10, min=1, help="Segments per column; the rest are pooled as (other)."),
        min_rows: int = typer.Option(500, min=1, help="Fewer rows in a group: insufficient_data."),
        n_bins: int = typer.Option(10, min=2, help="Equal-mass bins for ECE and the reliability curve."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when the check reaches this status."),
    ) -> None:
        """Predicted versus observed positives: sum(p)/sum(y) with a 95% interval, per segment."""
        import json
        import sys

        from checks.calibration import calibration_of
        from monitor.cli import _exit_code, _fail
        from core.errors import DriftlineError

        try:
            segments = [s.strip() for item in segment for s in item.split(",")]
            if any(not s for s in segments):
                raise DriftlineError("--segment: empty column name")
            result = calibration_of(data, prediction, label, segments, reference, top_n=top_n, min_rows=min_rows,
                                    n_bins=n_bins)
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(calibration_json(result), indent=2) + "\n")
        else:
            _print(result)
        raise typer.Exit(_exit_code([result.status], fail_on))


def _print(result) -> None:
    from monitor.cli import out
    from monitor.commands.tables import render_labelled, result_notes

    render_labelled(result, out, every=True)
    for note in result_notes(result):
        out.print(f"  {note}", markup=False, highlight=False, style="yellow")
