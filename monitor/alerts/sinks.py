"""Alert sinks and their registry.

Built-ins register with `@register_sink(name)`; outside ones through the entry-point
group `driftline.alert_sinks` (an entry point names a `Sink` subclass). A sink gets its
route (`AlertRouteConfig`) and sends one `AlertMessage`, raising `DeliveryError` —
`permanent` for what a retry cannot fix (a 4xx, a refused URL), with `retry_after` when
the receiver said when to come back (429/503 `Retry-After`).

Secrets (the webhook signing secret, the Slack URL, the SMTP password) come from the
environment or files only (`secret_env`/`secret_file`, `url_env`/`url_file`,
`email.password_env`/`password_file`) and never appear in messages or logs: errors name
the scheme, host and port only.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable

from monitor.alerts import signing, ssrf
from monitor.alerts.deadline import Deadline
from monitor.config import AlertRouteConfig
from core.errors import ConfigError, DriftlineError

log = logging.getLogger("driftline.alerts")
ENTRY_POINT_GROUP = "driftline.alert_sinks"
MAX_RETRY_AFTER = 3600.0
# One attempt, connection to last byte: a receiver that drips its answer fails the attempt
# (retried later) instead of holding `alerts test` or a delivery lane for minutes.
ATTEMPT_DEADLINE = 30.0
SOCKET_TIMEOUT = 10.0  # each connect, read or write
ALERTMANAGER_HOLD = timedelta(minutes=5)  # endsAt of a firing alert; re-sent well before it


@dataclass(frozen=True)
class AlertMessage:
    id: str
    kind: str  # firing | resolved | test
    dedup_key: str
    route: str
    model: str
    check: str
    feature: str  # "" for a check-level alert
    severity: str  # warn | alert
    status: str  # the feature's (or check's) status
    summary: str
    window_start: str | None = None
    window_end: str | None = None
    score: float | None = None
    threshold: float | None = None
    method: str | None = None
    starts_at: str | None = None
    created_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AlertMessage":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class DeliveryError(DriftlineError):
    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Sink:
    """One configured destination. Subclasses set `kind` and implement `send`."""

    kind = "sink"

    def __init__(self, route: AlertRouteConfig, base_dir: Path | None = None) -> None:
        self.route = route
        self.base_dir = base_dir or Path(".")

    @property
    def name(self) -> str:
        return self.route.name or self.route.sink

    def send(self, message: AlertMessage) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind

    def validate(self) -> None:
        """Raise ConfigError now for what would make every delivery fail (called at `serve` start)."""

    # helpers for subclasses
    def secret(self, env: str | None, file: str | None, what: str, required: bool = True) -> str | None:
        return read_secret(env, file, f"alert route {self.name}: {what}", self.base_dir, required)

    def url(self) -> str:
        value = self.route.url or self.secret(self.route.url_env, self.route.url_file, "url", required=False)
        if not value:
            raise ConfigError(f"alert route {self.name}: give url, url_env or url_file")
        return value


_SINKS: dict[str, type[Sink]] = {}


def register_sink(name: str) -> Callable[[type[Sink]], type[Sink]]:
    def decorator(cls: type[Sink]) -> type[Sink]:
        if name in _SINKS and _SINKS[name] is not cls:
            raise ValueError(f"alert sink {name!r} is registered twice")
        _SINKS[name] = cls
        cls.kind = name
        return cls

    return decorator


def known_sinks() -> list[str]:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _SINKS:
            _SINKS[entry.name] = entry.load()
    return sorted(_SINKS)


def build_sink(route: AlertRouteConfig, base_dir: Path | None = None) -> Sink:
    names = known_sinks()
    if route.sink not in _SINKS:
        raise ConfigError(f"alerts: unknown sink {route.sink!r} (known: {', '.join(names)})")
    return _SINKS[route.sink](route, base_dir)


def read_secret(env: str | None, file: str | None, what: str, base_dir: Path | None = None,
                required: bool = True) -> str | None:
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return value.strip()
    if file:
        path = Path(file)
        path = path if path.is_absolute() else (base_dir or Path(".")) / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from exc
    if required:
        raise ConfigError(f"{what}: give an environment variable or a file")
    return None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds or an HTTP date; bounded."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def post_json(url: str, payload, allow_private: bool, headers: dict[str, str] | None = None,
              body: bytes | None = None) -> ssrf.Response:
    """POST through the SSRF guard and map the outcome onto DeliveryError."""
    data = body if body is not None else json.dumps(payload, separators=(",", ":")).encode()
    try:
        response = ssrf.request("POST", url, data, {"Content-Type": "application/json",
                                                     "User-Agent": "driftline", **(headers or {})},
                                allow_private=allow_private, timeout=SOCKET_TIMEOUT, deadline=ATTEMPT_DEADLINE)
    except ssrf.SSRFError as exc:
        raise DeliveryError(str(exc), permanent=True) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{_safe(url)}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    status = response.status
    if 200 <= status < 300:
        return response
    where = f"{_safe(url)}: HTTP {status}"
    if status in (429, 503):
        raise DeliveryError(where, retry_after=retry_after_seconds(response.headers.get("retry-after")))
    if 300 <= status < 400:
        raise DeliveryError(f"{where}: redirects are not followed", permanent=True)
    if status in (408, 425) or status >= 500:
        raise DeliveryError(where)
    raise DeliveryError(where, permanent=True)


def _safe(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@register_sink("log")
class LogSink(Sink):
    def send(self, message: AlertMessage) -> None:
        level = logging.INFO if message.kind == "resolved" else logging.WARNING
        log.log(level, "alert %s [%s] %s", message.kind, message.severity, message.summary)


@register_sink("webhook")
class WebhookSink(Sink):
    """JSON POST signed per Standard Webhooks; a retry keeps webhook-id, re-signs the timestamp."""

    def send(self, message: AlertMessage) -> None:
        secret = self.secret(self.route.secret_env, self.route.secret_file, "signing secret")
        body = json.dumps({"type": f"driftline.alert.{message.kind}", "data": message.to_dict()},
                          separators=(",", ":")).encode()
        try:
            headers = signing.headers(secret, message.id, body)
        except signing.SignatureError as exc:
            raise DeliveryError(f"alert route {self.name}: {exc}", permanent=True) from exc
        post_json(self.url(), None, self.route.allow_private, headers=headers, body=body)

    def describe(self) -> str:
        return f"webhook {_safe(self.url())}" if self.route.url else "webhook (url from env/file)"

    def validate(self) -> None:
        self.url()
        try:
            signing.decode_secret(self.secret(self.route.secret_env, self.route.secret_file, "signing secret"))
        except signing.SignatureError as exc:
            raise ConfigError(f"alert route {self.name}: {exc}") from exc


@register_sink("slack")
class SlackSink(Sink):
    """Slack incoming webhook: the URL is the secret, so prefer url_env / url_file."""

    ICONS = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "test": ":wave:"}

    def validate(self) -> None:
        self.url()

    def send(self, message: AlertMessage) -> None:
        text = f"{self.ICONS.get(message.kind, '')} *{message.kind.upper()}* {message.summary}".strip()
        post_json(self.url(), {"text": text}, self.route.allow_private)


@register_sink("email")
class EmailSink(Sink):
    def validate(self) -> None:
        if self.route.email is None:
            raise ConfigError(f"alert route {self.name}: the email sink needs an `email:` block")
        self.secret(self.route.email.password_env, self.route.email.password_file, "email password", required=False)
    def _tls_context(self, cfg) -> ssl.SSLContext:
        """Certificate and host name verified (smtplib's own default verifies neither)."""
        ca_file = None
        if cfg.ca_file:
            ca_file = Path(cfg.ca_file) if Path(cfg.ca_file).is_absolute() else Path(self.base_dir) / cfg.ca_file
            if not ca_file.is_file():
                raise DeliveryError(f"alert route {self.name}: email.ca_file {ca_file} not found", permanent=True)
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def send(self, message: AlertMessage) -> None:
        cfg = self.route.email
        if cfg is None:
            raise ConfigError(f"alert route {self.name}: the email sink needs an `email:` block")
        try:
            ssrf.resolve(cfg.host, cfg.port, self.route.allow_private)
        except ssrf.SSRFError as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        mail = EmailMessage()
        mail["Subject"] = f"[driftline {message.kind}] {message.summary}"[:200]
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.to)
        mail["Message-ID"] = f"<{message.id}@driftline>"
        mail.set_content(json.dumps(message.to_dict(), indent=2))
        password = self.secret(cfg.password_env, cfg.password_file, "email password", required=False)
        context = self._tls_context(cfg) if cfg.security != "none" else None
        clients: list[smtplib.SMTP] = []  # the watchdog reads .sock, which STARTTLS replaces
        watch = Deadline(ATTEMPT_DEADLINE, lambda: getattr(clients[-1], "sock", None) if clients else None)
        try:
            with watch:
                if cfg.security == "ssl":
                    client = _SMTP_SSL(cfg.host, cfg.port, timeout=SOCKET_TIMEOUT, context=context,
                                       on_connect=clients.append)
                else:
                    client = _SMTP(cfg.host, cfg.port, timeout=SOCKET_TIMEOUT, on_connect=clients.append)
                with client:
                    if cfg.security == "starttls":
                        client.starttls(context=context)
                    if cfg.username and password:
                        client.login(cfg.username, password)
                    client.send_message(mail)
        except Exception as exc:
            error = DeliveryError(f"smtp {cfg.host}:{cfg.port}: {watch.error()}") if watch.expired \
                else _smtp_error(cfg, exc)  # when expired, what the shutdown broke is not the server's answer
            if error is None:
                raise
            raise error from exc


def _smtp_error(cfg, exc: Exception) -> DeliveryError | None:
    """The DeliveryError for what smtplib raised (permanent where a retry cannot help), or None."""
    where = f"smtp {cfg.host}:{cfg.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):  # retrying cannot fix a certificate
        return DeliveryError(f"{where}: TLS certificate not trusted ({exc.verify_message}); "
                             "set email.ca_file for a private CA", permanent=True)
    if isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError,
                        smtplib.SMTPNotSupportedError)):
        return DeliveryError(f"{where}: {type(exc).__name__}", permanent=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryError(f"{where}: {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600)
    if isinstance(exc, (smtplib.SMTPException, OSError, socket.timeout)):
        return DeliveryError(f"{where}: {type(exc).__name__}")
    return None


class _Watched:
    """smtplib's client that tells the deadline about itself before it connects (the
    greeting is read inside the constructor, where a slow server could otherwise hide)."""

    def __init__(self, *args, on_connect: Callable[[smtplib.SMTP], None], **kwargs) -> None:
        self._on_connect = on_connect
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        self._on_connect(self)
        return super()._get_socket(host, port, timeout)


class _SMTP(_Watched, smtplib.SMTP):
    pass


class _SMTP_SSL(_Watched, smtplib.SMTP_SSL):
    pass


@register_sink("alertmanager")
class AlertmanagerSink(Sink):
    """POST /api/v2/alerts. Firing alerts carry endsAt a few minutes ahead and are re-sent
    while active (the delivery worker's refresh); a resolve sends endsAt = now."""

    def payload(self, message: AlertMessage, now: datetime | None = None) -> list[dict]:
        now = now or datetime.now(timezone.utc)
        ends = now if message.kind == "resolved" else now + ALERTMANAGER_HOLD
        labels = {"alertname": "DriftlineCheck", "model": message.model, "check": message.check,
                  "severity": message.severity, "source": "driftline"}
        if message.feature:
            labels["feature"] = message.feature
        if message.kind == "test":
            labels["alertname"] = "DriftlineTest"
        return [{
            "labels": labels,
            "annotations": {"summary": message.summary, "window": f"{message.window_start}/{message.window_end}"},
            "startsAt": message.starts_at or message.created_at or now.isoformat(),
            "endsAt": ends.isoformat(),
        }]

    def validate(self) -> None:
        self.url()

    def send(self, message: AlertMessage, now: datetime | None = None) -> None:
        url = self.url().rstrip("/") + "/api/v2/alerts"
        post_json(url, self.payload(message, now), self.route.allow_private)
