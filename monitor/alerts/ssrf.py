"""Outbound HTTP for alert sinks, guarded against server-side request forgery.

Before any connection: the URL must be http(s) without credentials; the host is resolved
(IP literals and numeric forms without DNS) and *every* address must be a global unicast
one — loopback, private, link-local, CGNAT, multicast, unspecified and reserved ranges
are refused unless the route sets `allow_private: true`, and cloud metadata endpoints
(169.254.169.254 and friends) are refused always. An IPv6 address that embeds an IPv4 one
(mapped, translated, compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4, Teredo) is
judged by the IPv4 address too. The connection then goes to the vetted
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
from monitor.alerts.deadline import Deadline

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the IPv4 is the last 32 bits
# RFC 8215 local-use translation prefix: an operator's own NAT64, never a global destination;
# the IPv4 sits at the RFC 6052 position of whichever prefix length (/48 to /96) it uses.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 IPv4-compatible (deprecated)
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


def _v4(data: bytes) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(data)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries (mapped, translated, compatible, NAT64,
    6to4, Teredo server and client); [] for a plain IPv6 address. A local-use NAT64
    address gives its candidates at each RFC 6052 position, since its prefix length is
    the operator's choice."""
    packed = ip.packed
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _TRANSLATED or ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _COMPATIBLE and int(ip) > 1):
        found.append(_v4(packed[12:]))  # the last 32 bits (not :: or ::1 for the compatible form)
    if ip in _NAT64_LOCAL:
        without_u = packed[:8] + packed[9:]  # RFC 6052 skips bits 64-71 (the "u" octet)
        found.extend(_v4(without_u[n // 8:n // 8 + 4]) for n in (48, 56, 64))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return list(dict.fromkeys(found))


def refusal(address: str, allow_private: bool) -> str | None:
    """Why an address is not allowed, or None.

    An IPv6 address that embeds an IPv4 one is judged by what it embeds too: `[::127.0.0.1]`,
    `[::ffff:0:7f00:1]` or a NAT64 form of 10.0.0.1 reach what the IPv4 address reaches.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = embedded_ipv4(ip) if ip.version == 6 else []
    if any(candidate in METADATA_ADDRESSES for candidate in [ip, *embedded]):
        return f"{address} is a cloud metadata address"
    if ip.is_multicast or ip.is_unspecified:
        return f"{address} is not a unicast address"
    if allow_private:
        return None
    # The outer address decides unless it is a translation form (reserved space by itself,
    # e.g. ::/8, which Python 3.11 still calls global); local-use NAT64 is private by definition.
    outer_ok = ip.is_global and not (ip.version == 6 and (ip.is_reserved and not embedded or ip in _NAT64_LOCAL
                                                          or ip.is_site_local))  # fec0::/10, deprecated
    if not outer_ok or not all(candidate.is_global and not candidate.is_multicast for candidate in embedded):
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
            allow_private: bool = False, timeout: float = 10.0, deadline: float = 30.0) -> Response:
    """One request to a vetted address; no redirects; the response body is bounded; `timeout`
    bounds each socket operation and `deadline` the whole request (DeadlineExceeded)."""
    target = check_url(url, allow_private)
    last_error: OSError | None = None
    current: list[socket.socket] = []
    with Deadline(deadline, lambda: current[-1] if current else None) as watch:
        for address in target.addresses:
            if watch.expired or watch.remaining() <= 0:
                break
            try:
                sock = socket.create_connection((address, target.port), timeout=min(timeout, watch.remaining()))
            except OSError as exc:
                last_error = exc
                continue
            current.append(sock)
            try:
                if target.scheme == "https":
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
                    current.append(sock)
                connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
                connection.sock = sock  # already connected to the vetted address
                connection.request(method, target.path, body=body, headers=dict(headers or {}))
                reply = connection.getresponse()
                data = reply.read(MAX_RESPONSE_BYTES)
                return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
            except (OSError, http.client.HTTPException) as exc:
                if watch.expired:  # what the shutdown broke is not the receiver's answer
                    raise watch.error() from exc
                raise
            finally:
                sock.close()
        if watch.expired:
            raise watch.error()
    raise ConnectionError(f"cannot connect ({last_error})")
