"""API-key authentication of signed requests: HMAC-SHA256, a timestamp window, replay protection.

Pure: time enters only through the injected ``now_ms`` (epoch milliseconds). The signing rules
live in :mod:`perpbot.signing`, shared with the SDK client. Checks run in a fixed order, so a
request with several faults always reports the same code: key present, key known, timestamp
present, an integer, inside the window, signature present, valid, and not seen before.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from perpbot.signing import WS_LOGIN_METHOD, WS_LOGIN_PATH, HmacSha256, signature_payload

# Longest timestamp string parsed as an integer (longer ones are INVALID_TIMESTAMP).
_MAX_TIMESTAMP_DIGITS = 32


class AuthCode(StrEnum):
    """Why a request was not authenticated (HTTP 401). The values are part of the public API."""

    MISSING_API_KEY = "MISSING_API_KEY"
    UNKNOWN_API_KEY = "UNKNOWN_API_KEY"
    MISSING_TIMESTAMP = "MISSING_TIMESTAMP"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TIMESTAMP_OUTSIDE_WINDOW = "TIMESTAMP_OUTSIDE_WINDOW"
    MISSING_SIGNATURE = "MISSING_SIGNATURE"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    REPLAYED_REQUEST = "REPLAYED_REQUEST"


class AuthError(Exception):
    """An authentication failure: a stable ``code`` and a human-readable ``message``."""

    status_code = 401
    code: AuthCode
    message: str

    def __init__(self, code: AuthCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _check_text(what: str, value: object, *, visible_ascii: bool = False) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if not value.isprintable() or (visible_ascii and (not value.isascii() or " " in value)):
        kind = "visible ASCII (no spaces or control characters)" if visible_ascii else "printable"
        raise ValueError(f"{what} must be {kind}, got {value!r}")


class KeyStore:
    """API keys -> (secret, account id). Keys are visible ASCII (they travel in a header)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # key -> (precomputed HMAC of the UTF-8 secret, secret, account id)
        self._entries: dict[str, tuple[HmacSha256, str, str]] = {}

    def add(self, key: str, secret: str, account: str) -> None:
        """Register ``key``; ValueError if it is already known, empty or not printable."""
        _check_text("api key", key, visible_ascii=True)
        _check_text("secret", secret)
        _check_text("account id", account)
        if key in self._entries:
            raise ValueError(f"api key {key!r} is already registered")
        self._entries[key] = (HmacSha256(secret.encode()), secret, account)

    def remove(self, key: str) -> bool:
        """Revoke ``key``; True if it was known."""
        return self._entries.pop(key, None) is not None

    def get(self, key: str) -> tuple[str, str] | None:
        """``(secret, account_id)`` of ``key``, or None if unknown."""
        entry = self._entries.get(key)
        return None if entry is None else (entry[1], entry[2])

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _parse_timestamp(raw: str) -> int:
    digits = raw[1:] if raw[0] == "-" else raw
    if not (0 < len(digits) <= _MAX_TIMESTAMP_DIGITS and digits.isascii() and digits.isdigit()):
        raise AuthError(
            AuthCode.INVALID_TIMESTAMP,
            f"timestamp must be an integer of epoch milliseconds, got {raw[:40]!r}",
        )
    return int(raw)


class Authenticator:
    """Verifies signed requests against a :class:`KeyStore`.

    A timestamp is accepted when ``|now - timestamp| <= window_ms`` (both edges inclusive). An
    accepted signature is remembered (per key) until its timestamp leaves the window, so a
    replay inside the window is refused and one outside it fails the window check.
    """

    __slots__ = ("_expiries", "_now_ms", "_seen", "_store", "_window_ms")

    def __init__(
        self, store: KeyStore, *, now_ms: Callable[[], int], window_ms: int = 5000
    ) -> None:
        if isinstance(window_ms, bool) or not isinstance(window_ms, int) or window_ms <= 0:
            raise ValueError(f"window_ms must be a positive int, got {window_ms!r}")
        self._store = store
        self._now_ms = now_ms
        self._window_ms = window_ms
        self._seen: set[tuple[str, str]] = set()
        # (expiry ms, token) in acceptance order; expiries are only roughly ordered (timestamps
        # may differ from now by up to the window), which bounds memory to ~2 windows of traffic.
        self._expiries: deque[tuple[int, tuple[str, str]]] = deque()

    @property
    def window_ms(self) -> int:
        """The accepted clock skew either side of server time, in milliseconds."""
        return self._window_ms

    @property
    def remembered(self) -> int:
        """How many accepted signatures are held for replay detection."""
        return len(self._seen)

    def verify(
        self,
        api_key: str | None,
        timestamp: str | None,
        signature: str | None,
        method: str,
        path: str,
        body: bytes,
    ) -> str:
        """The account id of a correctly signed, fresh request; raises :class:`AuthError`."""
        if not api_key:
            raise AuthError(AuthCode.MISSING_API_KEY, "the X-PB-APIKEY header is required")
        entry = self._store._entries.get(api_key)
        if entry is None:
            raise AuthError(AuthCode.UNKNOWN_API_KEY, "the api key is not registered")
        if not timestamp:
            raise AuthError(AuthCode.MISSING_TIMESTAMP, "the X-PB-TIMESTAMP header is required")
        if len(timestamp) <= _MAX_TIMESTAMP_DIGITS and timestamp.isdigit() and timestamp.isascii():
            ts = int(timestamp)  # the common case, inline
        else:
            ts = _parse_timestamp(timestamp)
        now = self._now_ms()
        window = self._window_ms
        skew = now - ts
        if skew > window or skew < -window:
            where = "behind" if skew > 0 else "ahead of"
            raise AuthError(
                AuthCode.TIMESTAMP_OUTSIDE_WINDOW,
                f"timestamp is {abs(skew)} ms {where} server time {now}; "
                f"the window is ±{window} ms",
            )
        if not signature:
            raise AuthError(AuthCode.MISSING_SIGNATURE, "the X-PB-SIGNATURE header is required")
        try:
            payload = signature_payload(timestamp, method, path, body)
        except UnicodeEncodeError:
            raise AuthError(AuthCode.INVALID_SIGNATURE, "the request path is not ASCII") from None
        expected = entry[0].hexdigest(payload)
        if not (signature.isascii() and hmac.compare_digest(expected, signature)):
            raise AuthError(AuthCode.INVALID_SIGNATURE, "the signature does not match the request")
        expiries = self._expiries
        seen = self._seen
        while expiries and expiries[0][0] < now:
            seen.discard(expiries.popleft()[1])
        token = (api_key, signature)
        if token in seen:
            raise AuthError(AuthCode.REPLAYED_REQUEST, "this signature was already used")
        seen.add(token)
        expiries.append((ts + window, token))
        return entry[2]

    def verify_ws_login(
        self, api_key: str | None, timestamp: str | None, signature: str | None
    ) -> str:
        """The account id of a WebSocket login (signs ``timestamp + "GET" + "/v1/ws"``)."""
        return self.verify(api_key, timestamp, signature, WS_LOGIN_METHOD, WS_LOGIN_PATH, b"")
