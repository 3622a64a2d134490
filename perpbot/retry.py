"""When and how long to retry: exponential backoff with full jitter, ``Retry-After``, safety.

A failed request is tried again only when that cannot do harm:

* it is *idempotent* (reads, cancels, ``set_leverage``, and placements or amends addressed by a
  client order id, which the exchange deduplicates), and the failure is retryable: no answer
  (:class:`~perpbot.errors.TransportError`), a 5xx (:class:`~perpbot.errors.ServerError`) or a
  429 (:class:`~perpbot.errors.RateLimited`);
* or, for anything else, the exchange certainly did not act: a 429 (it consumes nothing), a
  ``REPLAYED_REQUEST`` (another client of the same key sent the identical request in the same
  millisecond; the retry is signed with a later timestamp), or a connection that was never
  established (connect error or timeout, pool timeout).

Never retried: a 418 ban (:class:`~perpbot.errors.Banned`: when to come back is the caller's
decision), and every other 4xx. The wait before attempt ``n + 1`` is uniform in
``[0, min(max_delay, base_delay * 2**(n-1))]`` (AWS "full jitter"), and at least the
``Retry-After`` of a 429. No attempt starts, and no sleep begins, that would end beyond
``max_total`` seconds after the first attempt started: the call raises its last error instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from .errors import AuthError, PerpbotError, RateLimited, ServerError, TransportError

__all__ = ["RetryPolicy", "is_ambiguous", "is_retryable", "was_not_sent"]

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def was_not_sent(exc: BaseException) -> bool:
    """True if ``exc`` is a transport failure before any byte of the request left."""
    return isinstance(exc, TransportError) and isinstance(exc.__cause__, _NOT_SENT)


def is_ambiguous(exc: BaseException) -> bool:
    """True if the exchange may have acted although we got no success answer (a lost
    response or a 5xx): a write must be looked up before it is sent again."""
    if isinstance(exc, TransportError):
        return not was_not_sent(exc)
    return isinstance(exc, ServerError)


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether sending the same request again may help and cannot do harm (see module doc)."""
    if isinstance(exc, AuthError) and exc.code == "REPLAYED_REQUEST":
        return True  # refused before anything happened; the retry is signed afresh
    if not isinstance(exc, PerpbotError) or not exc.retryable:
        return False  # includes Banned, every other 4xx, RiskRejected
    if idempotent or isinstance(exc, RateLimited):
        return True
    return was_not_sent(exc)


class RetryPolicy:
    """Retry budget and backoff: ``max_attempts`` in all (1 disables retries), full-jitter
    exponential waits from ``base_delay`` capped at ``max_delay`` (at least a 429's
    ``Retry-After``), and no retry that would end past ``max_total`` seconds.

    ``sleep`` and ``monotonic`` are injectable so tests never really sleep.
    """

    __slots__ = ("base_delay", "max_attempts", "max_delay", "max_total", "monotonic", "sleep")

    def __init__(
        self,
        max_attempts: int = 4,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        max_total: float = 20.0,
        *,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if not (0 <= base_delay <= max_delay) or max_total < 0:
            raise ValueError("need 0 <= base_delay <= max_delay and max_total >= 0")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_total = max_total
        self.sleep = sleep
        self.monotonic = monotonic

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
            f"max_delay={self.max_delay}, max_total={self.max_total})"
        )

    async def retry(
        self,
        attempt: Callable[[BaseException], Awaitable[T]],
        error: BaseException,
        *,
        started: float,
        idempotent: bool,
    ) -> T:
        """Attempts 2..``max_attempts`` of a call whose first attempt (begun at ``started`` on
        ``monotonic``) failed with ``error``. ``attempt(previous_error)`` makes one more try;
        it may resolve an ambiguous outcome (say, look an order up) before resending. Raises
        the last error when the budget runs out or an error is not retryable."""
        previous = error
        jitter = wait_random_exponential(multiplier=self.base_delay, max=self.max_delay)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            return self.monotonic() - started + state.upcoming_sleep > self.max_total

        def wait(state: RetryCallState) -> float:
            delay = jitter(state)
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                return max(delay, exc.retry_after)
            return delay

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(lambda exc: is_retryable(exc, idempotent=idempotent)),
            sleep=self.sleep,
            reraise=True,
        )
        async for trial in retrying:
            with trial:
                if trial.retry_state.attempt_number == 1:
                    raise error  # replay the first failure: tenacity owns the waits from here
                try:
                    return await attempt(previous)
                except BaseException as exc:
                    previous = exc
                    raise
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover
