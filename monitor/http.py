"""The service's one small HTTP server (stdlib ThreadingHTTPServer).

- `/metrics`: the Prometheus exposition of a registry passed in;
- `/healthz`: liveness JSON (no secrets, no auth, so probes need no token);
- `/reports/...`: the stored HTML reports, confined to the reports folder (no `..`,
  no absolute paths, no symlinks out of it, files only). Every answer carries
  `X-Content-Type-Options: nosniff` and a Content-Security-Policy that loads nothing from
  anywhere; an HTML page may run only the inline scripts it holds, each allowed by its
  SHA-256 (Evidently's page needs them), so no inline event handler runs. (That the scripts
  hold only data is the writer's part: checks/drift_report.py escapes what Evidently embeds.)

It binds 127.0.0.1 by default. Bound beyond loopback it is *exposed*: it refuses to start
without a bearer token (env `DRIFTLINE_TOKEN` or a token file), and `/metrics` and
`/reports` answer 401 without `Authorization: Bearer <token>` (constant-time compare).
A configured token is enforced on loopback too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from core.errors import ConfigError, DriftlineError

log = logging.getLogger("driftline.http")
TOKEN_ENV = "DRIFTLINE_TOKEN"
MAX_REPORT_BYTES = 50 * 1024 * 1024
# Nothing is fetched from anywhere (data: images and fonts are inline in the pages); no
# forms, no <base>, no framing. Only script-src varies: the hashes of the page's own scripts.
_CSP = ("default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:; font-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# An inline script's text up to the end tag the HTML tokenizer would see.
_INLINE_SCRIPT = re.compile(rb"<script(\s[^>]*)?>(.*?)</script[\s/>]", re.S | re.I)


class ServeError(DriftlineError):
    """The HTTP server cannot start as configured."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere, treat it as exposed


def load_token(token_file: str | Path | None = None) -> str | None:
    """The bearer token from a file (first line) or the DRIFTLINE_TOKEN environment variable."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{token_file}: cannot read the token file ({exc.strerror})") from exc
        if not token:
            raise ConfigError(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def authorized(header: str | None, token: str | None) -> bool:
    """Does an Authorization header carry the token? (True when no token is required.)"""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


def resolve_report(root: Path, url_path: str) -> Path | None:
    """The file under `root` that `/reports/<url_path>` names, or None when it escapes or is absent."""
    relative = unquote(url_path)
    if "\x00" in relative or "\\" in relative:
        return None
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    base = root.resolve()
    candidate = base.joinpath(*parts).resolve() if parts else base
    if candidate != base and base not in candidate.parents:
        return None  # a symlink pointing out of the folder
    return candidate if candidate.exists() else None


class _Handler(BaseHTTPRequestHandler):
    server_version = "driftline"
    sys_version = ""
    timeout = 15  # a client that stalls does not pin a thread for long

    def log_message(self, fmt, *args) -> None:  # quiet: the Authorization header is never logged
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        app: "HttpApp" = self.server.app  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        if path == "/healthz":
            return self._send(HTTPStatus.OK, json.dumps(app.health()).encode(), "application/json", head)
        if path != "/metrics" and path != "/reports" and not path.startswith("/reports/"):
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
        if not authorized(self.headers.get("Authorization"), app.token):
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Bearer realm="driftline"')
            self.send_header("Content-Length", "13")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if not head:
                self.wfile.write(b"unauthorized\n")
            return
        if path == "/metrics":
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            return self._send(HTTPStatus.OK, encoder(app.registry), content_type, head)
        self._report(app, path[len("/reports"):], head)

    def _report(self, app: "HttpApp", rest: str, head: bool) -> None:
        if app.reports_dir is None:
            return self._send(HTTPStatus.NOT_FOUND, b"no reports folder\n", "text/plain", head)
        target = resolve_report(app.reports_dir, rest)
        if target is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
        if target.is_dir():
            return self._send(HTTPStatus.OK, _index(app.reports_dir, target).encode(), "text/html; charset=utf-8",
                              head)
        if target.stat().st_size > MAX_REPORT_BYTES:
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large\n", "text/plain", head)
        page = target.suffix in (".html", ".htm")
        kind = "text/html; charset=utf-8" if page else (
            "application/json" if target.suffix == ".json" else "application/octet-stream")
        body = target.read_bytes()
        self._send(HTTPStatus.OK, body, kind, head, csp=content_security_policy(body) if page else None)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool, csp: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", csp or content_security_policy())
        self.end_headers()
        if not head:
            self.wfile.write(body)


def content_security_policy(body: bytes = b"") -> str:
    """The policy for a page: its inline scripts allowed by hash, nothing else (no
    'unsafe-inline', so inline event handlers never run, and no external source)."""
    hashes = sorted({"'sha256-" + base64.b64encode(hashlib.sha256(m.group(2)).digest()).decode() + "'"
                     for m in _INLINE_SCRIPT.finditer(body) if b"src" not in (m.group(1) or b"").lower()})
    return _CSP.format(scripts=" ".join(hashes) or "'none'")


def _index(root: Path, folder: Path) -> str:
    base = root.resolve()
    entries = []
    for item in sorted(folder.iterdir()):
        if item.is_symlink():
            continue
        link = "/reports/" + "/".join(item.resolve().relative_to(base).parts) + ("/" if item.is_dir() else "")
        entries.append(f'<li><a href="{html.escape(link)}">{html.escape(item.name)}</a></li>')
    return "<!doctype html><title>driftline reports</title><ul>" + "".join(entries) + "</ul>\n"


class HttpApp:
    def __init__(self, registry, reports_dir: Path | None, token: str | None,
                 health: Callable[[], dict] | None = None) -> None:
        self.registry = registry
        self.reports_dir = Path(reports_dir) if reports_dir is not None else None
        self.token = token
        self.health = health or (lambda: {"status": "ok"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of scrapers and probes overflowed it,
    # and the dropped connections retried after 1 s, 3 s, 7 s (bench.service --scrapers).
    request_queue_size = 128


class HttpServer:
    """Binds at construction (so a busy port fails before anything else starts)."""

    def __init__(self, host: str, port: int, registry, reports_dir: Path | None = None,
                 token: str | None = None, health: Callable[[], dict] | None = None,
                 exposed: bool | None = None) -> None:
        self.exposed = (not is_loopback(host)) if exposed is None else exposed
        if self.exposed and not token:
            raise ServeError(f"{host}: binding beyond loopback needs a bearer token "
                             f"(set {TOKEN_ENV} or give --token-file)")
        server_cls = _Server
        if ":" in host:
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self.server = server_cls((host, port), _Handler)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
        self.server.app = HttpApp(registry, reports_dir, token, health)  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="driftline-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which must have started
            self.server.shutdown()
            self._thread = None
        self.server.server_close()
