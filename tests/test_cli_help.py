"""Every command's --help shows the help text as written: brackets kept, no `<bool>` after flags."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from monitor.cli import app


def _paths(command, prefix: tuple[str, ...] = ()):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer may vendor its own click)
        for name, sub in command.commands.items():
            yield from _paths(sub, prefix + (name,))


def test_help_keeps_brackets_and_shows_no_type_on_flags():
    root = typer.main.get_command(app)
    seen = 0
    for path in _paths(root):
        done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert done.exit_code == 0, (path, done.output)
        assert "<bool>" not in done.output, path
        assert "{feature: }" not in done.output, path
        seen += 1
    assert seen > 25
    explain = CliRunner().invoke(app, ["explain", "--help"], env={"COLUMNS": "200"}).output
    assert "{feature: [category, ...]}" in explain
