"""`driftline dashboards export DIR | push --url URL`: the generated Grafana dashboards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from core.errors import DriftlineError


class GrafanaPushError(DriftlineError):
    """Grafana refused or could not be reached; the message names the dashboard."""


def push_dashboards(url: str, token: str, folder: str = "driftline", timeout: float = 10.0) -> list[str]:
    """Create the folder if needed and upsert every dashboard into it; return their uids."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    from dashboards.generate import build_all

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        try:
            api.folder.get_folder(folder)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(folder, uid=folder)
    except GrafanaException as exc:
        raise GrafanaPushError(f"{url}: folder {folder!r}: {_why(exc)}") from exc
    except Exception as exc:  # connection refused, DNS, TLS ...
        raise GrafanaPushError(f"{url}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    pushed = []
    for name, dashboard in build_all().items():
        body = {"dashboard": {**dashboard, "id": None}, "folderUid": folder, "overwrite": True,
                "message": "driftline dashboards push"}
        try:
            api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise GrafanaPushError(f"{url}: dashboard {name} ({dashboard['uid']}): {_why(exc)}") from exc
        except Exception as exc:
            raise GrafanaPushError(f"{url}: dashboard {name}: {type(exc).__name__}: {str(exc)[:200]}") from exc
        pushed.append(dashboard["uid"])
    return pushed


def _why(exc) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"HTTP {status}: {message[:200]}" if status else message[:200]


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import _fail, out

    dashboards_app = typer.Typer(rich_markup_mode=None, help="Grafana dashboards generated from code (dashboards/generate.py).",
                                 no_args_is_help=True)
    app.add_typer(dashboards_app, name="dashboards")

    @dashboards_app.command("export")
    def export(directory: Path = typer.Argument(..., help="Folder to write <name>.json files into.")) -> None:
        """Write every dashboard as JSON (what dashboards/json/ holds)."""
        from dashboards.generate import export as write

        try:
            paths = write(directory)
        except OSError as exc:
            _fail(f"{directory}: cannot write ({exc.strerror})")
        for path in paths:
            out.print(f"wrote {path}", markup=False, highlight=False)

    @dashboards_app.command("push")
    def push(
        url: str = typer.Option(..., help="Grafana base URL, e.g. http://127.0.0.1:3000"),
        token_env: str = typer.Option("GRAFANA_TOKEN", help="Environment variable holding a service-account token."),
        folder: str = typer.Option("driftline", help="Folder uid (and title) to put the dashboards in."),
    ) -> None:
        """Create or update every dashboard in Grafana through its HTTP API."""
        token = os.environ.get(token_env, "").strip()
        if not token:
            _fail(f"{token_env}: not set; export a Grafana service-account token in it")
        try:
            uids = push_dashboards(url, token, folder)
        except DriftlineError as exc:
            _fail(str(exc).replace(token, "***"))
        out.print(f"pushed {len(uids)} dashboards to {url} (folder {folder}): {', '.join(uids)}",
                  markup=False, highlight=False)
