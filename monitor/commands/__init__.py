"""CLI command groups, one module per area. Each module defines `register(app, check_app)`;
`monitor.cli` calls it for every module named in `monitor.cli.COMMAND_MODULES`."""
