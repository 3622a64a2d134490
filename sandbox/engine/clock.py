"""Time enters the engine only through an injected clock (milliseconds since the epoch)."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Anything with ``now_ms()``: a manual clock in tests, a real-time or accelerated one in
    the server (those live outside the pure engine)."""

    def now_ms(self) -> int: ...


class ManualClock:
    """A clock that moves only when told to: deterministic tests, replays and scenarios."""

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (>= 0) and return the new time."""
        if ms < 0:
            raise ValueError("a clock never goes backwards")
        self._now += ms
        return self._now

    def set(self, now_ms: int) -> None:
        """Jump to ``now_ms`` (not earlier than the current time)."""
        if now_ms < self._now:
            raise ValueError("a clock never goes backwards")
        self._now = now_ms
