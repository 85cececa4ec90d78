"""An outside check as a package would ship it: an entry point in `driftline.checks`, written
into a temporary folder on sys.path (a `*.dist-info` with `entry_points.txt`), so no pip install
is needed and nothing under monitor/ names it."""

from __future__ import annotations

from pathlib import Path

PLUGIN_SOURCE = '''
from pydantic import Field

from core.checks import CheckParams, CheckSpec, WindowCheck
from core.results import CheckResult, MetricPoint


class RowCountParams(CheckParams):
    min_rows: int = Field(default=1, ge=1, description="fewer rows in the window: alert")


class RowCount(WindowCheck):
    name = "row_count"

    def __init__(self, model_config, params: RowCountParams) -> None:
        self.params = params

    def run(self, window) -> CheckResult:
        rows = window.profile().rows
        status = "ok" if rows >= self.params.min_rows else "alert"
        return CheckResult(check=self.name, status=status, current_rows=rows,
                           metrics=(MetricPoint("window_rows", float(rows), help="Rows in the latest window."),),
                           **window.result_context)


spec = CheckSpec("row_count", RowCountParams, RowCount, frozenset({"profile"}), "rows in the window")
'''


def install_plugin(folder: Path, entry_points: str | None = None) -> Path:
    """Write the plug-in package and its distribution metadata into `folder` (put it on sys.path)."""
    package = folder / "driftline_rowcount"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(PLUGIN_SOURCE)
    info = folder / "driftline_rowcount-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: driftline-rowcount\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points or "[driftline.checks]\nrow_count = driftline_rowcount:spec\n")
    return folder
