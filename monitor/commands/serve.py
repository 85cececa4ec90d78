"""`driftline serve`: the long-running service (scheduler, ledger, alerts, /metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9108


def setup_logging(level: str = "info") -> None:
    import logging

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # "Running job ..." on every wake-up, migration chatter, Great Expectations' import notes.
    for noisy in ("apscheduler", "alembic", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_service(config_path: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                token_file: Optional[Path] = None, announce=print) -> None:
    """Start, announce, block until SIGTERM/SIGINT (or a lost lock), stop. Raises DriftlineError."""
    import signal

    from monitor.config import load_config
    from monitor.database import redacted
    from monitor.http import load_token
    from monitor.service import Service

    config = load_config(config_path)
    service = Service(config, host=host, port=port, token=load_token(token_file))
    service.start()
    import time

    previous = {}
    received: list[str] = []

    def on_signal(number, _frame) -> None:
        received.append(signal.Signals(number).name)
        service.request_stop()

    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, on_signal)
    try:
        announce(f"driftline serve: listening on http://{host}:{service.http.port} (/metrics /healthz /reports/); "
                 f"{len(service.schedules)} schedule(s); store {redacted(config.store_url())}")
        service.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        began = time.monotonic()
        announce(f"driftline serve: {received[0] if received else 'stop requested'}; stopping (a running check "
                 "is left to the next start, which re-runs its window)")
        service.stop()
        announce(f"driftline serve: stopped in {time.monotonic() - began:.1f}s")
        # The heavy libraries loaded at start leave millions of objects: the interpreter's final
        # garbage collection took ~8 s after a clean stop. Nothing is left to collect that
        # matters (files and the store are closed), so those objects are frozen out of it.
        import gc

        gc.freeze()


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        config: Path = typer.Option(..., help="The driftline YAML config."),
        host: str = typer.Option(DEFAULT_HOST, help="Address to bind; beyond loopback a bearer token is required."),
        port: int = typer.Option(DEFAULT_PORT, help="Port for /metrics, /healthz and /reports/."),
        token_file: Optional[Path] = typer.Option(None, help="File holding the bearer token "
                                                             "(default: the DRIFTLINE_TOKEN variable)."),
        log_level: str = typer.Option("info", help="debug, info, warning or error."),
    ) -> None:
        """Run the scheduled checks, deliver alerts and serve /metrics until stopped (SIGTERM/Ctrl-C)."""
        from monitor.cli import _fail, err
        from core.errors import DriftlineError

        setup_logging(log_level)
        try:
            run_service(config, host, port, token_file,
                        announce=lambda m: err.print(m, markup=False, highlight=False, soft_wrap=True))
        except DriftlineError as exc:
            _fail(str(exc))
