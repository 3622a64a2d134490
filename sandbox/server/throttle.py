"""Request throttling modelled on Binance USDⓈ-M futures: weight and order budgets, 429, then 418.

Budgets, each in fixed windows aligned to multiples of the window length:

* ``IP_WEIGHT``: request weight per IP per ``weight_window_ms``;
* ``KEY_WEIGHT``: request weight per API key over the same window;
* ``ORDER_COUNT_10S`` / ``ORDER_COUNT_1M``: orders per key per ``order_window_ms`` and
  ``order_window_long_ms``.

A request that would exceed a budget is refused (429, ``Retry-After`` = whole seconds, rounded
up, until the exhausted window ends) and consumes nothing; the IP or key whose budget it was is
then *throttled* until that instant. Every request from a weight-throttled client (its IP, or
its key) is refused with 429 and is a *strike*; a key throttled for its *order* count refuses
(and strikes) only requests that carry orders: its cancels and reads still pass, within the
weight budgets, so a bot can always take risk off. At ``strikes_to_ban`` strikes the IP and
the key are banned (418) for ``ban_base_ms * ban_multiplier ** bans_so_far`` capped at
``ban_max_ms``, where ``bans_so_far`` restarts at 0 once a client has gone ``ban_memory_ms``
since its last ban ended. Requests during a ban get 418 and do not extend it. A client that
waits out its ``Retry-After`` starts afresh with no strikes.

Pure: time enters only through the injected ``now_ms`` (non-negative epoch milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

USED_WEIGHT_HEADER = "X-PB-Used-Weight-1m"
ORDER_COUNT_HEADER = "X-PB-Order-Count-10s"
RETRY_AFTER_HEADER = "Retry-After"

# Beyond this many bans the duration is computed as if it were this many (it is capped anyway).
_MAX_BAN_EXPONENT = 64


class ThrottleReason(StrEnum):
    """Why a request was refused. The values are part of the public API."""

    IP_WEIGHT = "IP_WEIGHT"
    KEY_WEIGHT = "KEY_WEIGHT"
    ORDER_COUNT_10S = "ORDER_COUNT_10S"
    ORDER_COUNT_1M = "ORDER_COUNT_1M"
    BANNED = "BANNED"


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """Limits (all positive ints; durations in milliseconds)."""

    weight_limit: int = 2400
    weight_window_ms: int = 60_000
    key_weight_limit: int = 2400
    order_limit: int = 300
    order_window_ms: int = 10_000
    order_limit_long: int = 1200
    order_window_long_ms: int = 60_000
    strikes_to_ban: int = 5
    ban_base_ms: int = 10_000
    ban_multiplier: int = 2
    ban_max_ms: int = 3_600_000
    ban_memory_ms: int = 600_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field.name} must be a positive int, got {value!r}")
        if self.ban_max_ms < self.ban_base_ms:
            raise ValueError(
                f"ban_max_ms ({self.ban_max_ms}) must be at least ban_base_ms ({self.ban_base_ms})"
            )


class Decision:
    """The verdict on one request: ``status`` 200, 429 or 418, and what to tell the client."""

    __slots__ = ("order_count_10s", "reason", "retry_after_s", "status", "used_weight")

    def __init__(
        self,
        status: int,
        retry_after_s: int | None,
        used_weight: int,
        order_count_10s: int | None,
        reason: ThrottleReason | None,
    ) -> None:
        self.status = status
        self.retry_after_s = retry_after_s
        self.used_weight = used_weight
        self.order_count_10s = order_count_10s
        self.reason = reason

    @property
    def allowed(self) -> bool:
        """True if the request may be served."""
        return self.status == 200

    def headers(self) -> list[tuple[str, str]]:
        """Response headers: used weight, the key's order count, and Retry-After if refused."""
        out = [(USED_WEIGHT_HEADER, str(self.used_weight))]
        if self.order_count_10s is not None:
            out.append((ORDER_COUNT_HEADER, str(self.order_count_10s)))
        if self.retry_after_s is not None:
            out.append((RETRY_AFTER_HEADER, str(self.retry_after_s)))
        return out

    def _key(self) -> tuple[object, ...]:
        return (
            self.status,
            self.retry_after_s,
            self.used_weight,
            self.order_count_10s,
            self.reason,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._key() == other._key()

    def __repr__(self) -> str:
        return (
            f"Decision(status={self.status}, retry_after_s={self.retry_after_s}, "
            f"used_weight={self.used_weight}, order_count_10s={self.order_count_10s}, "
            f"reason={self.reason!r})"
        )


class _Client:
    """Counters of one IP or one API key (keys use the order windows too)."""

    __slots__ = (
        "ban_until",
        "bans",
        "last_ban_end",
        "o_end",
        "o_used",
        "ol_end",
        "ol_used",
        "orders_reason",
        "orders_until",
        "strikes",
        "throttle_reason",
        "throttled_until",
        "w_end",
        "w_used",
    )

    def __init__(self) -> None:
        self.w_end = 0
        self.w_used = 0
        self.o_end = 0
        self.o_used = 0
        self.ol_end = 0
        self.ol_used = 0
        self.throttled_until = 0
        self.throttle_reason: ThrottleReason | None = None
        self.orders_until = 0  # order-count throttle: refuses only requests carrying orders
        self.orders_reason: ThrottleReason | None = None
        self.strikes = 0
        self.ban_until = 0
        self.bans = 0
        self.last_ban_end = 0

    def idle(self, now: int, ban_memory_ms: int) -> bool:
        """True if forgetting this client changes nothing."""
        return (
            now >= self.w_end
            and now >= self.o_end
            and now >= self.ol_end
            and now >= self.throttled_until
            and now >= self.orders_until
            and now >= self.ban_until
            and (self.bans == 0 or now - self.last_ban_end >= ban_memory_ms)
        )


def _retry_s(ms: int) -> int:
    """Whole seconds, rounded up, at least 1."""
    return max(1, -(-ms // 1000))


class Throttle:
    """Per-IP and per-key budgets with 429 throttling and escalating 418 bans (see module doc)."""

    __slots__ = (
        "_ban_base",
        "_ban_max",
        "_ban_memory",
        "_ban_mult",
        "_config",
        "_ips",
        "_key_weight_limit",
        "_keys",
        "_next_sweep",
        "_now_ms",
        "_order_limit",
        "_order_limit_long",
        "_order_window",
        "_order_window_long",
        "_strikes_to_ban",
        "_sweep_every_ms",
        "_weight_limit",
        "_weight_window",
    )

    def __init__(
        self,
        config: ThrottleConfig | None = None,
        *,
        now_ms: Callable[[], int],
        sweep_every_ms: int = 60_000,
    ) -> None:
        if isinstance(sweep_every_ms, bool) or not isinstance(sweep_every_ms, int):
            raise ValueError(f"sweep_every_ms must be a positive int, got {sweep_every_ms!r}")
        if sweep_every_ms <= 0:
            raise ValueError(f"sweep_every_ms must be a positive int, got {sweep_every_ms!r}")
        self._now_ms = now_ms
        self._sweep_every_ms = sweep_every_ms
        self._ips: dict[str, _Client] = {}
        self._keys: dict[str, _Client] = {}
        self._next_sweep = 0
        self._apply(config if config is not None else ThrottleConfig())

    def _apply(self, config: ThrottleConfig) -> None:
        self._config = config
        self._weight_limit = config.weight_limit
        self._weight_window = config.weight_window_ms
        self._key_weight_limit = config.key_weight_limit
        self._order_limit = config.order_limit
        self._order_window = config.order_window_ms
        self._order_limit_long = config.order_limit_long
        self._order_window_long = config.order_window_long_ms
        self._strikes_to_ban = config.strikes_to_ban
        self._ban_base = config.ban_base_ms
        self._ban_mult = config.ban_multiplier
        self._ban_max = config.ban_max_ms
        self._ban_memory = config.ban_memory_ms

    @property
    def config(self) -> ThrottleConfig:
        """The limits in force."""
        return self._config

    @property
    def tracked_clients(self) -> int:
        """How many IPs and keys have state held (idle ones are swept lazily)."""
        return len(self._ips) + len(self._keys)

    def set_config(self, config: ThrottleConfig) -> None:
        """Change the limits live.

        Counts in the current windows are kept and judged against the new limits; a window whose
        length changed runs to its old end, then realigns. Pending throttles (and their strikes)
        are forgiven; bans and ban history are kept.
        """
        if not isinstance(config, ThrottleConfig):
            raise TypeError(f"config must be a ThrottleConfig, got {type(config).__name__}")
        self._apply(config)
        for table in (self._ips, self._keys):
            for client in table.values():
                client.throttled_until = client.orders_until = 0
                client.strikes = 0

    def snapshot(self) -> dict[str, Any]:
        """The rules in force as plain data (for a public rate-limit rules endpoint)."""
        c = self._config
        return {
            "rate_limits": [
                {
                    "type": "REQUEST_WEIGHT",
                    "scope": "IP",
                    "window_ms": c.weight_window_ms,
                    "limit": c.weight_limit,
                },
                {
                    "type": "REQUEST_WEIGHT",
                    "scope": "API_KEY",
                    "window_ms": c.weight_window_ms,
                    "limit": c.key_weight_limit,
                },
                {
                    "type": "ORDERS",
                    "scope": "API_KEY",
                    "window_ms": c.order_window_ms,
                    "limit": c.order_limit,
                },
                {
                    "type": "ORDERS",
                    "scope": "API_KEY",
                    "window_ms": c.order_window_long_ms,
                    "limit": c.order_limit_long,
                },
            ],
            "bans": {
                "strikes_to_ban": c.strikes_to_ban,
                "base_ms": c.ban_base_ms,
                "multiplier": c.ban_multiplier,
                "max_ms": c.ban_max_ms,
                "memory_ms": c.ban_memory_ms,
            },
            "config": asdict(c),
        }

    def reset(self) -> None:
        """Forget all counters, throttles and bans."""
        self._ips.clear()
        self._keys.clear()

    def ban_duration_ms(self, bans_so_far: int) -> int:
        """How long the ban after ``bans_so_far`` remembered bans lasts."""
        n = min(bans_so_far, _MAX_BAN_EXPONENT)
        return min(self._ban_base * int(self._ban_mult**n), self._ban_max)

    def check(self, ip: str, key: str | None, weight: int, orders: int) -> Decision:
        """Judge one request from ``ip`` (with API ``key`` if signed) and charge it if served."""
        if weight < 0 or orders < 0:
            raise ValueError(f"weight and orders must be >= 0, got {weight}, {orders}")
        now = self._now_ms()
        if now >= self._next_sweep:
            self._sweep(now)
        c = self._ips.get(ip)
        if c is None:
            c = self._ips[ip] = _Client()
        if now >= c.w_end:
            c.w_end = now - now % self._weight_window + self._weight_window
            c.w_used = 0
        k: _Client | None = None
        if key is not None:
            k = self._keys.get(key)
            if k is None:
                k = self._keys[key] = _Client()
            if now >= k.w_end:
                k.w_end = now - now % self._weight_window + self._weight_window
                k.w_used = 0
            if now >= k.o_end:
                k.o_end = now - now % self._order_window + self._order_window
                k.o_used = 0
            if now >= k.ol_end:
                k.ol_end = now - now % self._order_window_long + self._order_window_long
                k.ol_used = 0

        # Banned: 418 until the ban ends.
        until = c.ban_until
        if k is not None and k.ban_until > until:
            until = k.ban_until
        if until > now:
            return Decision(
                418,
                _retry_s(until - now),
                c.w_used,
                None if k is None else k.o_used,
                ThrottleReason.BANNED,
            )

        # Throttled: 429 and a strike, or a ban at the last strike.
        if c.throttled_until > now or (k is not None and k.throttled_until > now):
            return self._strike(now, c, k)
        if orders and k is not None and k.orders_until > now:
            return self._strike(now, c, k, orders=True)

        # Budgets: refuse (charging nothing) if any would be exceeded.
        reason: ThrottleReason | None = None
        end = 0
        if c.w_used + weight > self._weight_limit:
            reason = ThrottleReason.IP_WEIGHT
            end = c.throttled_until = c.w_end
            c.throttle_reason = reason
            c.strikes = 0
        if k is not None:
            k_reason: ThrottleReason | None = None
            k_end = 0
            if k.w_used + weight > self._key_weight_limit:
                k_reason = ThrottleReason.KEY_WEIGHT
                k_end = k.w_end
            if orders:
                if k.o_used + orders > self._order_limit and (k_reason is None or k.o_end > k_end):
                    k_reason = ThrottleReason.ORDER_COUNT_10S
                    k_end = k.o_end
                if k.ol_used + orders > self._order_limit_long and (
                    k_reason is None or k.ol_end > k_end
                ):
                    k_reason = ThrottleReason.ORDER_COUNT_1M
                    k_end = k.ol_end
            if k_reason is not None:
                if k_reason is ThrottleReason.KEY_WEIGHT:
                    k.throttled_until = k_end
                    k.throttle_reason = k_reason
                else:  # an order count: only further orders are refused until k_end
                    k.orders_until = k_end
                    k.orders_reason = k_reason
                k.strikes = 0
                if reason is None or k_end > end:
                    reason = k_reason
                    end = k_end
            if reason is None:
                k.w_used += weight
                if orders:
                    k.o_used += orders
                    k.ol_used += orders
        if reason is not None:
            return Decision(
                429, _retry_s(end - now), c.w_used, None if k is None else k.o_used, reason
            )
        c.w_used += weight
        return Decision(200, None, c.w_used, None if k is None else k.o_used, None)

    def _strike(self, now: int, c: _Client, k: _Client | None, *, orders: bool = False) -> Decision:
        """A request refused while throttled (``orders``: by the key's order-count throttle)."""
        ban = False
        end = 0
        reason: ThrottleReason | None = None
        for client in (c, k):
            if client is None:
                continue
            until, why = client.throttled_until, client.throttle_reason
            if orders and client is k:
                until, why = client.orders_until, client.orders_reason
            if until > now:
                client.strikes += 1
                if client.strikes >= self._strikes_to_ban:
                    ban = True
                if reason is None or until > end:
                    end = until
                    reason = why
        if ban:
            end = self._ban(now, c)
            if k is not None:
                end = max(end, self._ban(now, k))
            reason = ThrottleReason.BANNED
        return Decision(
            418 if ban else 429,
            _retry_s(end - now),
            c.w_used,
            None if k is None else k.o_used,
            reason,
        )

    def _ban(self, now: int, client: _Client) -> int:
        if client.bans and now - client.last_ban_end >= self._ban_memory:
            client.bans = 0
        client.ban_until = client.last_ban_end = now + self.ban_duration_ms(client.bans)
        client.bans += 1
        client.throttled_until = client.orders_until = 0
        client.strikes = 0
        return client.ban_until

    def _sweep(self, now: int) -> None:
        memory = self._ban_memory
        for table in (self._ips, self._keys):
            dead = [name for name, client in table.items() if client.idle(now, memory)]
            for name in dead:
                del table[name]
        self._next_sweep = now + self._sweep_every_ms
