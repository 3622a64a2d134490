"""Listen keys of the user-data stream: one per account, alive for 60 minutes of wall-clock time
after its last POST or PUT (the simulated clock has no say), as on Binance."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .errors import INVALID_LISTEN_KEY, BinanceError

LISTEN_KEY_TTL_MS = 60 * 60 * 1000  # a listen key lives 60 min after its last POST/PUT


class ListenKeys:
    """One listen key per account; expires ``LISTEN_KEY_TTL_MS`` of wall time after POST/PUT."""

    def __init__(self, now_ms: Callable[[], int], ttl_ms: int = LISTEN_KEY_TTL_MS) -> None:
        self.now_ms = now_ms
        self.ttl_ms = ttl_ms
        self.keys: dict[str, tuple[str, int]] = {}  # key -> (account, expires at)
        self.by_account: dict[str, str] = {}

    def create(self, account: str) -> str:
        """The account's live key (extended), or a new one."""
        key = self.by_account.get(account)
        if key is None or self.account_of(key) is None:
            key = secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")[:64]
            self.by_account[account] = key
        self.keys[key] = (account, self.now_ms() + self.ttl_ms)
        return key

    def keepalive(self, account: str, key: str | None) -> str:
        live = self.by_account.get(account)
        if live is None or self.account_of(live) is None or (key not in (None, "", live)):
            raise BinanceError(INVALID_LISTEN_KEY, "This listenKey does not exist.")
        self.keys[live] = (account, self.now_ms() + self.ttl_ms)
        return live

    def delete(self, account: str, key: str | None) -> None:
        live = self.by_account.get(account)
        if live is None or key not in (None, "", live):
            raise BinanceError(INVALID_LISTEN_KEY, "This listenKey does not exist.")
        del self.by_account[account]
        self.keys.pop(live, None)

    def account_of(self, key: str) -> str | None:
        """The account of a live key; None (and forgotten) once expired or unknown."""
        entry = self.keys.get(key)
        if entry is None:
            return None
        if entry[1] <= self.now_ms():
            del self.keys[key]
            if self.by_account.get(entry[0]) == key:
                del self.by_account[entry[0]]
            return None
        return entry[0]
