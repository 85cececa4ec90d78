"""`driftline check quality`: validate a dataset against a Great Expectations suite derived
from a reference (or an edited suite file)."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import ENGINE_HELP, SPARK_CONF_HELP, SPARK_MASTER_HELP, EngineName, FailOn, OutputFormat

    @check_app.command("quality")
    def check_quality(
        current: str = typer.Option(..., help="Data to validate: file, directory, glob or URI."),
        reference: Optional[str] = typer.Option(None, help="Reference data to derive the suite from."),
        suite: Optional[Path] = typer.Option(None, help="An expectation suite (JSON) to validate instead."),
        write_suite: Optional[Path] = typer.Option(None, help="Write the suite used (derived or loaded) here."),
        id_column: Optional[str] = typer.Option(None, help="Example id column: must be unique and non-null."),
        sample_rows: int = typer.Option(1_000_000, min=1000, help="Validate a uniform sample beyond this many rows."),
        output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        fail_on: Optional[FailOn] = typer.Option(None, help="Exit 1 when the check reaches this status."),
        engine: EngineName = typer.Option(EngineName.local, help=ENGINE_HELP),
        spark_master: str = typer.Option("local[2]", help=SPARK_MASTER_HELP),
        spark_conf: list[str] = typer.Option([], help=SPARK_CONF_HELP),
    ) -> None:
        """Columns, types, ranges, null rates, value sets and id uniqueness against a suite."""
        import json
        import sys

        from checks.quality import quality_between
        from core.errors import DriftlineError
        from monitor.cli import _exit_code, _fail, _print_result_table, one_off_engine

        try:
            result = quality_between(current, reference, str(suite) if suite else None,
                                     str(write_suite) if write_suite else None, id_column, sample_rows,
                                     engine=one_off_engine(engine, spark_master, spark_conf))
        except DriftlineError as exc:
            _fail(str(exc))
        if output_format is OutputFormat.json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        else:
            _print_result_table(result)
        raise typer.Exit(_exit_code([f.status for f in result.features] + [result.status], fail_on))
