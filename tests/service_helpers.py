"""Helpers for the service, alert and HTTP tests: local receivers on 127.0.0.1 only."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core.results import CheckResult, FeatureDrift
from monitor.config import parse_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records requests and answers from a script of
    (status, headers) replies (the last one repeats)."""

    def __init__(self, replies=((200, {}),), port: int = 0) -> None:
        self.requests: list[dict] = []
        self.replies = list(replies)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                status, headers = receiver.replies[0] if len(receiver.replies) == 1 else receiver.replies.pop(0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    """A minimal SMTP server on 127.0.0.1 that keeps what it receives: plain, with STARTTLS
    (`tls="starttls"`) or implicit TLS (`tls="ssl"`) using `cert` = (certfile, keyfile)."""

    def __init__(self, tls: str | None = None, cert: tuple[str, str] | None = None) -> None:
        import ssl

        self.messages: list[dict] = []
        self.auth: list[tuple[str, bool]] = []  # (AUTH command line, over TLS?)
        owner = self
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                if tls == "ssl":
                    self.request = context.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                self.wfile.write(b"220 localhost test smtp\r\n")
                envelope = {"from": None, "to": [], "data": b"", "tls": tls == "ssl"}
                while True:
                    try:
                        line = self.rfile.readline()
                    except OSError:  # the client gave up on our certificate
                        return
                    if not line:
                        return
                    command = line.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        extra = b"250-STARTTLS\r\n" if tls == "starttls" and not envelope["tls"] else b""
                        self.wfile.write(b"250-localhost\r\n" + extra + b"250-AUTH PLAIN\r\n250 OK\r\n")
                    elif verb == "STARTTLS" and tls == "starttls":
                        self.wfile.write(b"220 ready\r\n")
                        self.wfile.flush()
                        try:
                            self.request = context.wrap_socket(self.request, server_side=True)
                        except OSError:
                            return
                        self.rfile = self.request.makefile("rb")
                        self.wfile = self.request.makefile("wb", buffering=0)
                        envelope["tls"] = True
                    elif verb == "AUTH":
                        owner.auth.append((command, envelope["tls"]))
                        self.wfile.write(b"235 accepted\r\n")
                    elif verb == "MAIL":
                        envelope["from"] = command
                        self.wfile.write(b"250 OK\r\n")
                    elif verb == "RCPT":
                        envelope["to"].append(command)
                        self.wfile.write(b"250 OK\r\n")
                    elif verb == "DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        data = b""
                        while True:
                            chunk = self.rfile.readline()
                            if chunk in (b".\r\n", b".\n", b""):
                                break
                            data += chunk
                        envelope["data"] = data
                        owner.messages.append(dict(envelope))
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 OK\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """(certfile, keyfile) of a fresh certificate for 127.0.0.1 and localhost, its own CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftline test")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


class Clock:
    """A settable clock for in-process service tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def model_dict(name: str = "m", schedules=(), alerts=(), base: Path | None = None) -> dict:
    return {
        "name": name,
        "reference": {"path": str((base or Path(".")) / "reference.parquet")},
        "serving": {"path": str((base or Path(".")) / "serving.parquet")},
        "schema": {"timestamp": "ts", "features": [{"name": "x", "kind": "numeric"},
                                                  {"name": "device", "kind": "categorical"}]},
        "schedules": list(schedules),
        "alerts": list(alerts),
    }


def make_config(tmp_path: Path, models: list[dict], reports: str = "reports"):
    raw = {"version": 1, "store": {"url": f"sqlite:///{tmp_path / 'store.db'}", "reports_dir": reports},
           "models": models}
    return parse_config(raw, "test", tmp_path)


def result(check: str, start: datetime, end: datetime, statuses: dict[str, str], model: str = "m",
           status: str | None = None, details: dict | None = None) -> CheckResult:
    from core.results import worst_status

    features = tuple(FeatureDrift(name, "numeric", "wasserstein", {"ok": 0.01, "warn": 0.15, "alert": 0.5}.get(s),
                                  0.2, s, 1000, 1000) for name, s in statuses.items())
    return CheckResult(check=check, status=status or worst_status(statuses.values()), features=features,
                       model=model, window_start=start.isoformat(), window_end=end.isoformat(),
                       details=details or {})


UTC = timezone.utc


def tiny_world(folder: Path) -> None:
    """400 rows of reference and serving data (ts, x, device) over the last two days."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    rows = 400
    times = [now - timedelta(hours=48) + timedelta(minutes=7 * i) for i in range(rows)]
    table = pa.table({"ts": pa.array(times, pa.timestamp("us", tz="UTC")),
                      "x": [float(i % 17) for i in range(rows)],
                      "device": [("mobile", "desktop")[i % 2] for i in range(rows)]})
    pq.write_table(table, folder / "reference.parquet")
    pq.write_table(table, folder / "serving.parquet")
