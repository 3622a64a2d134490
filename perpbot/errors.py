"""Every error the SDK raises, as one tree. Catch by meaning:

    PerpbotError
    ├── TransportError              the request may or may not have reached the exchange
    │   └── RequestTimeout          (retry reads; look orders up by client id before resending)
    ├── APIError                    the exchange answered with an error: status, code, details
    │   ├── AuthError               401: key, timestamp window, signature, replay
    │   ├── RateLimited             429: over a budget; ``retry_after`` seconds
    │   │   └── Banned              418: kept going while throttled; wait ``retry_after``
    │   ├── NotFound                404: unknown route, market or order (or not yours)
    │   │   └── UnknownOrder
    │   ├── InvalidOrder            400/409: fix the order, do not retry it
    │   │   ├── InsufficientMargin
    │   │   └── DuplicateOrder      409: the client order id is taken; ``existing_order``
    │   ├── InvalidRequest          400/405/413/422 that is not about an order's content
    │   └── ServerError             5xx (and injected faults): ambiguous for writes
    └── RiskRejected                refused on this side, before anything was sent
        └── LimitExceeded           a client-side size or rate limit

``retryable`` on each tells whether trying the same request again can help.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthError",
    "Banned",
    "DuplicateOrder",
    "InsufficientMargin",
    "InvalidOrder",
    "InvalidRequest",
    "LimitExceeded",
    "NotFound",
    "PerpbotError",
    "RateLimited",
    "RequestTimeout",
    "RiskRejected",
    "ServerError",
    "TransportError",
    "UnknownOrder",
    "error_from_response",
]


class PerpbotError(Exception):
    """Base of every SDK error."""

    retryable = False


class TransportError(PerpbotError):
    """No answer: connection refused or dropped, or a timeout. A write may have happened."""

    retryable = True

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class RequestTimeout(TransportError):
    """The exchange did not answer in time."""


class APIError(PerpbotError):
    """The exchange refused the request: HTTP ``status``, stable ``code``, ``details``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.method = method
        self.path = path
        self.retry_after = retry_after


class AuthError(APIError):
    """401: check the key and secret, the machine's clock, and never resend a signed request."""


class RateLimited(APIError):
    """429: wait ``retry_after`` seconds; requests in the meantime count as strikes."""

    retryable = True


class Banned(RateLimited):
    """418: banned until ``retry_after`` seconds from now; do not retry before."""

    retryable = False


class NotFound(APIError):
    """404: no such route, market or order (another account's order looks the same)."""


class UnknownOrder(NotFound):
    """404 UNKNOWN_ORDER."""


class InvalidOrder(APIError):
    """The order itself is refused (filters, band, margin, duplicate id, post-only, ...)."""


class InsufficientMargin(InvalidOrder):
    """400 INSUFFICIENT_MARGIN: ``details`` has ``required`` and ``available``."""


class DuplicateOrder(InvalidOrder):
    """409 DUPLICATE_CLIENT_ORDER_ID: ``existing_order`` is the order that has the id."""

    @property
    def existing_order(self) -> dict[str, Any] | None:
        value = self.details.get("existing_order")
        return value if isinstance(value, dict) else None


class InvalidRequest(APIError):
    """A malformed or unacceptable request that is not about an order's trading content."""


class ServerError(APIError):
    """5xx: the exchange failed. A write's outcome is unknown until looked up."""

    retryable = True


class RiskRejected(PerpbotError):
    """Refused by the SDK's own checks before sending; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.details = details


class LimitExceeded(RiskRejected):
    """A client-side size or rate limit would be exceeded."""


_ORDER_CODES = frozenset(
    {
        "INVALID_ORDER",
        "INVALID_QUANTITY",
        "INVALID_PRICE",
        "INVALID_CLIENT_ORDER_ID",
        "INVALID_LEVERAGE",
        "QTY_BELOW_MIN",
        "QTY_ABOVE_MAX",
        "NOTIONAL_BELOW_MIN",
        "PRICE_OUT_OF_BAND",
        "MAX_POSITION_EXCEEDED",
        "TOO_MANY_OPEN_ORDERS",
        "POST_ONLY_WOULD_TAKE",
        "FOK_NOT_FILLABLE",
        "REDUCE_ONLY_WOULD_INCREASE",
        "AMEND_NO_CHANGE",
        "ACCOUNT_IN_LIQUIDATION",
        "ORDER_NOT_OPEN",
    }
)


def error_from_response(
    status: int,
    body: Any,
    *,
    retry_after: str | None = None,
    method: str = "",
    path: str = "",
) -> APIError:
    """The typed exception for an error response (``body`` is the decoded JSON, or anything)."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = str(body.get("message", ""))
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
    else:
        code, message, details = f"HTTP_{status}", str(body)[:200], {}
    wait: float | None = None
    if retry_after is not None:
        try:
            wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
    cls: type[APIError]
    if status == 401:
        cls = AuthError
    elif status == 418:
        cls = Banned
    elif status == 429:
        cls = RateLimited
    elif status == 404:
        cls = UnknownOrder if code == "UNKNOWN_ORDER" else NotFound
    elif status >= 500:
        cls = ServerError
    elif code == "INSUFFICIENT_MARGIN":
        cls = InsufficientMargin
    elif code == "DUPLICATE_CLIENT_ORDER_ID":
        cls = DuplicateOrder
    elif code in _ORDER_CODES:
        cls = InvalidOrder
    else:
        cls = InvalidRequest
    return cls(status, code, message, details, method=method, path=path, retry_after=wait)
