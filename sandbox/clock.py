"""Simulated clocks for the server: real time, accelerated (xN), paused, or stepped by hand.

The pure engine reads time only through ``Clock.now_ms()``; this module is where wall time enters
the sandbox. The wall-time source is injectable, so tests drive a ``SimClock`` deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction


class SimClock:
    """Simulated milliseconds that run at ``speed`` x real time (0 = paused).

    Time never goes backwards: changing speed re-anchors at the current simulated instant, and
    ``advance`` only moves forward. ``source`` returns real seconds (monotonic) and is injectable.
    """

    __slots__ = ("_anchor_real", "_anchor_sim", "_ms_per_real_s", "_source", "_speed")

    def __init__(
        self,
        *,
        start_ms: int | None = None,
        speed: int | Fraction = 1,
        source: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check_speed(speed)
        self._source = source
        self._speed = Fraction(speed)
        self._ms_per_real_s = float(self._speed * 1000)
        self._anchor_real = source()
        self._anchor_sim = int(time.time() * 1000) if start_ms is None else start_ms

    @staticmethod
    def _check_speed(speed: int | Fraction) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | Fraction) or speed < 0:
            raise ValueError(f"speed must be a non-negative int or Fraction, got {speed!r}")

    @property
    def speed(self) -> Fraction:
        """Simulated seconds per real second (0 while paused)."""
        return self._speed

    def now_ms(self) -> int:
        """The simulated time in whole milliseconds since the epoch."""
        # Float arithmetic (one multiplication by a constant) is monotonic and exact to well
        # under a millisecond; it is called on every command, so it must be cheap.
        if not self._ms_per_real_s:
            return self._anchor_sim
        return self._anchor_sim + int((self._source() - self._anchor_real) * self._ms_per_real_s)

    def set_speed(self, speed: int | Fraction) -> None:
        """Run at ``speed`` x real time from now on (0 pauses)."""
        self._check_speed(speed)
        self._anchor_sim = self.now_ms()
        self._anchor_real = self._source()
        self._speed = Fraction(speed)
        self._ms_per_real_s = float(self._speed * 1000)

    def pause(self) -> None:
        """Stop simulated time (``advance`` still moves it)."""
        self.set_speed(0)

    def advance(self, ms: int) -> int:
        """Jump forward by ``ms`` >= 0 simulated milliseconds; return the new time."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError("a clock only moves forward by a whole number of milliseconds")
        self._anchor_sim = self.now_ms() + ms
        self._anchor_real = self._source()
        return self._anchor_sim
