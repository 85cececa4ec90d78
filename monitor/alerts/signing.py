"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated when several), with a
`whsec_<base64>` secret. A retry keeps the id and signs a fresh timestamp.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

PREFIX = "whsec_"


class SignatureError(ValueError):
    """A secret or signature header that cannot be used."""


def decode_secret(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the signing secret must be whsec_ followed by base64") from exc
    if len(key) < 16:
        raise SignatureError("the signing secret is shorter than 16 bytes")
    return key


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(decode_secret(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(secret: str, received: dict[str, str], body: bytes, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: any `v1` signature matches (constant time) and the timestamp is fresh."""
    lower = {k.lower(): v for k, v in received.items()}
    try:
        message_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        offered = lower["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, message_id, timestamp, body).encode()
    return any(hmac.compare_digest(candidate.encode(), expected) for candidate in offered
               if candidate.startswith("v1,"))
