"""Outbound HTTP for alert sinks, guarded against server-side request forgery.

Before any connection: the URL must be http(s) without credentials; the host is resolved
(IP literals and numeric forms without DNS) and *every* address must be a global unicast
one — loopback, private, link-local, CGNAT, multicast, unspecified and reserved ranges
are refused unless the route sets `allow_private: true`, and cloud metadata endpoints
(169.254.169.254 and friends) are refused always. The connection then goes to the vetted
address itself (no second lookup that DNS rebinding could answer differently), TLS still
verifies the host name, and redirects are never followed: a 3xx is a failed delivery.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import DriftlineError

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_RESPONSE_BYTES = 64 * 1024


class SSRFError(DriftlineError):
    """A sink URL that points somewhere driftline must not send to."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def safe_url(self) -> str:
        """For messages and logs: no path or query (Slack URLs carry their token there)."""
        return f"{self.scheme}://{self.host}:{self.port}/…"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def refusal(address: str, allow_private: bool) -> str | None:
    """Why an address is not allowed, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip]
    if ip.version == 6:
        embedded = [ip.ipv4_mapped, ip.sixtofour]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        candidates += [e for e in embedded if e is not None]
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if candidate.is_multicast or candidate.is_unspecified:
            return f"{address} is not a unicast address"
        if not candidate.is_global and not allow_private:
            return f"{address} is a loopback, private or link-local address (set allow_private: true to allow it)"
    return None


def resolve(host: str, port: int, allow_private: bool) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SSRFError(f"{host}: cannot resolve ({exc})") from exc
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise SSRFError(f"{host}: resolves to no address")
    for address in addresses:  # every record: a mixed answer must not slip through
        why = refusal(address, allow_private)
        if why:
            raise SSRFError(f"{host}: refused, {why}")
    return addresses


def check_url(url: str, allow_private: bool = False) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SSRFError(f"{parts.scheme or 'no'} scheme: only http and https URLs are allowed")
    if parts.username or parts.password:
        raise SSRFError("credentials in the URL are not allowed; use the route's secret settings")
    host = parts.hostname
    if not host:
        raise SSRFError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise SSRFError(f"{host}: bad port") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, resolve(host, port, allow_private))


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            allow_private: bool = False, timeout: float = 10.0) -> Response:
    """One request to a vetted address; no redirects; the response body is bounded."""
    target = check_url(url, allow_private)
    last_error: OSError | None = None
    for address in target.addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=timeout)
        except OSError as exc:
            last_error = exc
            continue
        try:
            if target.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
            connection.sock = sock  # already connected to the vetted address
            connection.request(method, target.path, body=body, headers=dict(headers or {}))
            reply = connection.getresponse()
            data = reply.read(MAX_RESPONSE_BYTES)
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
        finally:
            sock.close()
    raise ConnectionError(f"cannot connect ({last_error})")
