"""Request signing shared by the SDK client and the sandbox server (HMAC-SHA256, hex).

A signed request carries three headers: the API key, the timestamp in epoch milliseconds and
``hex(HMAC-SHA256(secret, payload))`` where the payload is the ASCII of
``str(timestamp) + METHOD + path`` followed by the raw body bytes. ``path`` includes the query
string exactly as sent (``/v1/orders?market=BTC-PERP``). A WebSocket login signs
``timestamp + "GET" + "/v1/ws"`` with an empty body.
"""

from __future__ import annotations

import hashlib
import hmac

API_KEY_HEADER = "X-PB-APIKEY"
TIMESTAMP_HEADER = "X-PB-TIMESTAMP"
SIGNATURE_HEADER = "X-PB-SIGNATURE"

WS_LOGIN_METHOD = "GET"
WS_LOGIN_PATH = "/v1/ws"


def signature_payload(timestamp_ms: int | str, method: str, path: str, body: bytes) -> bytes:
    """The bytes that are signed; raises ``UnicodeEncodeError`` (a ``ValueError``) on non-ASCII."""
    return (str(timestamp_ms) + method.upper() + path).encode("ascii") + body


_BLOCK = 64  # SHA-256 block size
_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


class HmacSha256:
    """HMAC-SHA256 under one fixed secret, for verifying many messages (the server side).

    The padded-key hash states of RFC 2104 are computed once, so each message costs two hash
    copies instead of a full ``hmac.new`` (about twice as fast). Same output as :func:`hmac.new`.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        if len(secret) > _BLOCK:
            secret = hashlib.sha256(secret).digest()
        secret = secret.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(secret.translate(_TRANS_36))
        self._outer = hashlib.sha256(secret.translate(_TRANS_5C))

    def hexdigest(self, payload: bytes) -> str:
        """Lowercase hex HMAC-SHA256 of ``payload``."""
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def sign(secret: str, timestamp_ms: int | str, method: str, path: str, body: bytes) -> str:
    """The lowercase hex signature of one request."""
    payload = signature_payload(timestamp_ms, method, path, body)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign_ws_login(secret: str, timestamp_ms: int | str) -> str:
    """The signature of a WebSocket login at ``timestamp_ms``."""
    return sign(secret, timestamp_ms, WS_LOGIN_METHOD, WS_LOGIN_PATH, b"")


def signed_headers(
    key: str, secret: str, method: str, path: str, body: bytes, timestamp_ms: int
) -> dict[str, str]:
    """The three authentication headers of one request."""
    return {
        API_KEY_HEADER: key,
        TIMESTAMP_HEADER: str(timestamp_ms),
        SIGNATURE_HEADER: sign(secret, timestamp_ms, method, path, body),
    }
