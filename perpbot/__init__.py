"""perpbot: an async trading-bot SDK for perpetual futures.

::

    import perpbot

    async with perpbot.AsyncClient(api_key="demo-key", api_secret="demo-secret-0123456789") as ex:
        print(await ex.ticker("BTC-PERP"))

:class:`AsyncClient` (and the blocking :class:`Client`) cover the REST API; the errors are in
:mod:`perpbot.errors`, the wire models in :mod:`perpbot.models`, retries in :mod:`perpbot.retry`;
:class:`Guard` wraps order entry with size limits, the pre-trade risk check of
:mod:`perpbot.risk` and a kill switch.
The SDK never imports the sandbox; the shared margin arithmetic lives in :mod:`perpbot.risk.margin`
so that the sandbox exchange and the pre-trade checker compute identical numbers.
"""

__version__ = "0.1.0"

# First: installs the finder that picks compiled or source engine modules (perpbot/_native.py).
from . import _native  # noqa: F401
from .client import AsyncClient, Client
from .errors import (
    APIError,
    AuthError,
    Banned,
    DuplicateOrder,
    InsufficientMargin,
    InvalidOrder,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    PerpbotError,
    RateLimited,
    RequestTimeout,
    RiskRejected,
    ServerError,
    TransportError,
    UnknownOrder,
)
from .guard import CcxtGuard, Guard, GuardPolicy, KillSwitchTripped
from .retry import RetryPolicy

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthError",
    "Banned",
    "CcxtGuard",
    "Client",
    "DuplicateOrder",
    "Guard",
    "GuardPolicy",
    "InsufficientMargin",
    "InvalidOrder",
    "InvalidRequest",
    "KillSwitchTripped",
    "LimitExceeded",
    "NotFound",
    "PerpbotError",
    "RateLimited",
    "RequestTimeout",
    "RetryPolicy",
    "RiskRejected",
    "ServerError",
    "TransportError",
    "UnknownOrder",
    "__version__",
]
