"""Fault injection: make the bad days reproducible (docs/scenarios.md#faults).

Two mechanisms live here:

* :class:`Faults` - the original quick switch (``POST /v1/admin/faults``): latency, a share of
  ``503 FAULT_INJECTED`` and a share of dropped responses on every throttled ``/v1`` route, for a
  span of *wall* time. Unchanged in behaviour.
* :class:`FaultPlan` - a list of :class:`FaultSpec` s, each a kind with its parameters and a
  window in *simulated* time (``start_ms``/``end_ms`` relative to when the plan was loaded, or
  absolute exchange ms). Loaded with ``POST /v1/admin/fault-plan`` or a ``[[faults]]`` TOML
  section. Every spec draws from its own ``random.Random`` seeded from the plan seed and its
  position, so the same seed and the same request/message sequence give the same faults.

Kinds (parameters in brackets; ``rate`` is a share in [0, 1]):

========================  =====================================================================
``latency``               add ``latency_ms`` plus uniform ``[0, jitter_ms]`` to matching requests
``http_error``            answer a ``rate`` of matching requests ``status`` 500 or 503,
                          code ``FAULT_INJECTED`` (never applied)
``drop_response``         apply a ``rate`` of matching requests, hold the answer ``hold_ms``,
                          then ``504 RESPONSE_DROPPED`` (an ambiguous outcome)
``ws_disconnect``         close a ``fraction`` of sockets when the window opens, and each socket
                          with probability ``rate`` per data message inside it (code 4009)
``ws_drop``               drop a ``rate`` of data messages (the ``seq`` gap shows it); the WS kinds
                          act on /v1/ws and on the Binance-style /fstream alike
``ws_reorder``            hold a ``rate`` of data messages back behind the next one (a swap)
``stale_index_source``    ``market``/``source`` stops updating (its last value freezes; after
                          the engine's ``stale_after`` the index drops it)
``outlier_index_source``  ``market``/``source`` quotes ``pct`` percent off (signed)
``mark_divergence``       the liquidity agents of ``market`` centre their quotes ``bps`` away
                          from the index, so mid, last trades and with them the mark move away
``tighten_limits``        the throttle settings in ``limits`` apply inside the window only
``thin_book``             the liquidity agents' level sizes (``market``, or all) times ``factor``
========================  =====================================================================

HTTP kinds match requests by ``route`` (a glob on the path, e.g. ``/v1/orders*``) and
``methods``; only throttled ``/v1`` routes are touched (never the admin API).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field

from .hub import Hub
from .throttle import Throttle, ThrottleConfig

__all__ = [
    "FAULT_CLOSE_CODE",
    "FAULT_KINDS",
    "FaultEvent",
    "FaultPlan",
    "FaultPlanRequest",
    "FaultSpec",
    "FaultSpecModel",
    "Faults",
    "HttpFault",
    "spec_from_model",
]

FAULT_CLOSE_CODE = 4009
"""WebSocket close code of an injected disconnect."""

FaultKind = Literal[
    "latency",
    "http_error",
    "drop_response",
    "ws_disconnect",
    "ws_drop",
    "ws_reorder",
    "stale_index_source",
    "outlier_index_source",
    "mark_divergence",
    "tighten_limits",
    "thin_book",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_HTTP_KINDS = frozenset({"latency", "http_error", "drop_response"})
_WS_KINDS = frozenset({"ws_disconnect", "ws_drop", "ws_reorder"})
_SOURCE_KINDS = frozenset({"stale_index_source", "outlier_index_source"})
_WINDOW_KINDS = frozenset({"ws_disconnect", "mark_divergence", "tighten_limits", "thin_book"})
_LIMIT_KEYS = frozenset(f.name for f in fields(ThrottleConfig))
MAX_EVENTS = 10_000


@dataclass(slots=True)
class Faults:
    """The quick switch of ``POST /v1/admin/faults``: active until ``until_ms`` (wall time)."""

    latency_ms: int = 0
    error_rate: Fraction = Fraction(0)
    drop_rate: Fraction = Fraction(0)
    until_ms: int = 0
    drop_hold_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One scheduled fault (validated; see the module doc for the kinds' parameters).

    The window is ``[start_ms, end_ms)``; ``end_ms`` None means open-ended. With ``absolute``
    False both are relative to the plan's load time (simulated ms).
    """

    kind: str
    start_ms: int = 0
    end_ms: int | None = None
    absolute: bool = False
    route: str = "/v1/*"
    methods: tuple[str, ...] = ()
    rate: Fraction = Fraction(1)
    latency_ms: int = 0
    jitter_ms: int = 0
    status: int = 503
    hold_ms: int = 30_000
    market: str = ""
    source: str = ""
    pct: Decimal = Decimal(0)
    bps: int = 0
    factor: Fraction = Fraction(1)
    fraction: Fraction = Fraction(1)
    limits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if self.start_ms < 0 and not self.absolute:
            raise ValueError("start_ms must be >= 0")
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        for name in ("rate", "fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hold_ms < 0:
            raise ValueError("latency_ms, jitter_ms and hold_ms must be >= 0")
        if self.latency_ms > 60_000 or self.jitter_ms > 60_000 or self.hold_ms > 600_000:
            raise ValueError("latency and jitter are at most 60 s, hold_ms at most 600 s")
        if self.kind == "http_error" and self.status not in (500, 503):
            raise ValueError("http_error status must be 500 or 503")
        if self.kind in _SOURCE_KINDS and not (self.market and self.source):
            raise ValueError(f"{self.kind} needs market and source")
        if self.kind == "outlier_index_source" and not -90 <= self.pct <= 1000:
            raise ValueError("pct must be in [-90, 1000]")
        if self.kind == "mark_divergence" and (not self.market or not -2000 <= self.bps <= 2000):
            raise ValueError("mark_divergence needs market and bps in [-2000, 2000]")
        if self.kind == "thin_book" and not 0 < self.factor <= 1:
            raise ValueError("thin_book factor must be in (0, 1]")
        if self.kind == "tighten_limits":
            unknown = set(self.limits) - _LIMIT_KEYS
            if not self.limits or unknown:
                raise ValueError(
                    f"tighten_limits needs limits among {sorted(_LIMIT_KEYS)}"
                    + (f"; unknown {sorted(unknown)}" if unknown else "")
                )
            if any(
                isinstance(v, bool) or not isinstance(v, int) or v <= 0
                for v in self.limits.values()
            ):
                raise ValueError("limits must be positive integers")
            ThrottleConfig(**dict(self.limits))  # consistent with the defaults (ban max >= base)


class FaultSpecModel(BaseModel):
    """Wire/TOML form of a :class:`FaultSpec` (decimals as strings, unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    start_ms: int = Field(default=0, ge=-(2**53), le=2**53)
    end_ms: int | None = Field(default=None, ge=-(2**53), le=2**53)
    absolute: bool = False
    route: str = Field(default="/v1/*", max_length=200)
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE"]] = Field(
        default_factory=list, max_length=5
    )
    rate: str = Field(default="1", max_length=32)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    jitter_ms: int = Field(default=0, ge=0, le=60_000)
    status: int = Field(default=503, ge=500, le=503)
    hold_ms: int = Field(default=30_000, ge=0, le=600_000)
    market: str = Field(default="", max_length=32)
    source: str = Field(default="", max_length=32)
    pct: str = Field(default="0", max_length=32)
    bps: int = Field(default=0, ge=-2000, le=2000)
    factor: str = Field(default="1", max_length=32)
    fraction: str = Field(default="1", max_length=32)
    limits: dict[str, int] = Field(default_factory=dict, max_length=16)


class FaultPlanRequest(BaseModel):
    """``POST /v1/admin/fault-plan``: the plan (replaces any loaded one; ``[]`` clears it) and an
    optional seed (default: the sandbox seed)."""

    model_config = ConfigDict(extra="forbid")

    faults: list[FaultSpecModel] = Field(max_length=100)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal string, got {text!r}") from None
    if not value.is_finite() or "e" in text.lower():
        raise ValueError(f"{name} must be a plain decimal string, got {text!r}")
    return value


def spec_from_model(model: FaultSpecModel) -> FaultSpec:
    """Convert and validate (raises ``ValueError`` with a readable message)."""
    return FaultSpec(
        kind=model.kind,
        start_ms=model.start_ms,
        end_ms=model.end_ms,
        absolute=model.absolute,
        route=model.route,
        methods=tuple(model.methods),
        rate=Fraction(_decimal(model.rate, "rate")),
        latency_ms=model.latency_ms,
        jitter_ms=model.jitter_ms,
        status=model.status,
        hold_ms=model.hold_ms,
        market=model.market,
        source=model.source,
        pct=_decimal(model.pct, "pct"),
        bps=model.bps,
        factor=Fraction(_decimal(model.factor, "factor")),
        fraction=Fraction(_decimal(model.fraction, "fraction")),
        limits=dict(model.limits),
    )


@dataclass(frozen=True, slots=True)
class HttpFault:
    """What to do to one request: wait ``delay_ms`` (wall), then answer ``status`` (an injected
    error) or apply it and drop the answer (``drop``), or just go on."""

    delay_ms: int = 0
    status: int = 0
    drop: bool = False
    hold_ms: int = 0
    kind: str = ""


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault that fired: exchange ms, the spec's position in the plan, kind, what happened."""

    ts: int
    index: int
    kind: str
    what: str


class Agent(Protocol):
    """What ``thin_book``/``mark_divergence`` need of a liquidity agent."""

    sizes: list[int]
    centre_shift_bps: float


WsFault = Callable[[int, str | bytes], list[str | bytes] | None]


class WsFaultTarget(Protocol):
    """A WebSocket server other than the hub that WS faults act on (the Binance-style
    ``/fstream`` streams): it consults ``fault`` for each data message, and closes the
    connections ``disconnect`` picks. Its connection ids must not collide with the hub's."""

    fault: WsFault | None

    def disconnect(self, choose: Callable[[Any], bool], code: int, reason: str) -> int: ...


class FaultHost(Protocol):
    """The parts of the sandbox a plan acts on (``SandboxState`` satisfies it)."""

    @property
    def throttle(self) -> Throttle: ...

    @property
    def hub(self) -> Hub: ...

    def fault_agents(self, market: str) -> Sequence[Agent]: ...


class FaultPlan:
    """The loaded plan and its runtime state; see the module doc.

    ``clock`` gives exchange ms (windows are in simulated time). Hooks: :meth:`http` (the HTTP
    middleware), :meth:`source_price` (each index-source update), :meth:`ws_message` (each
    WebSocket data message, installed on the hub while a WS fault is planned) and
    :meth:`on_step` (each market step: opens and closes the windowed kinds).
    """

    def __init__(self, clock: Callable[[], int], seed: int = 0) -> None:
        self.clock = clock
        self.seed = seed
        self.specs: tuple[FaultSpec, ...] = ()
        self.origin_ms = 0
        self.events: list[FaultEvent] = []
        self.fired: list[int] = []
        self._rngs: list[random.Random] = []
        self._open: dict[int, Any] = {}  # windowed spec index -> what to restore
        self._held: dict[tuple[int, int], str | bytes] = {}  # (spec, client id) -> message
        self._host: FaultHost | None = None
        self._ws_targets: list[WsFaultTarget] = []

    def add_ws_target(self, target: WsFaultTarget) -> None:
        """Let WS faults act on ``target`` too (now and for every plan loaded later)."""
        self._ws_targets.append(target)
        target.fault = self._ws_hook()

    def _ws_hook(self) -> WsFault | None:
        return self.ws_message if any(s.kind in _WS_KINDS for s in self.specs) else None

    # -- loading ---------------------------------------------------------------------------------
    def load(self, host: FaultHost, specs: Sequence[FaultSpec], seed: int | None = None) -> None:
        """Replace the plan (closing the windows of the old one) and start it now."""
        self.clear()
        self._host = host
        if seed is not None:
            self.seed = seed
        self.specs = tuple(specs)
        self.origin_ms = self.clock()
        self._rngs = [random.Random(self.seed * 1_000_003 + i) for i in range(len(self.specs))]
        self.fired = [0] * len(self.specs)
        self.events = []
        host.hub.fault = hook = self._ws_hook()
        for target in self._ws_targets:
            target.fault = hook
        self.on_step()

    def clear(self) -> None:
        """Drop the plan, restoring whatever the open windows changed."""
        host = self._host
        if host is not None:
            for index in sorted(self._open):
                self._close(host, index)
            host.hub.fault = None
        for target in self._ws_targets:
            target.fault = None
        self._open.clear()
        self._held.clear()
        self.specs = ()
        self._rngs = []

    # -- windows ---------------------------------------------------------------------------------
    def window(self, index: int) -> tuple[int, int | None]:
        """Absolute exchange-ms window of spec ``index``."""
        spec = self.specs[index]
        base = 0 if spec.absolute else self.origin_ms
        return base + spec.start_ms, None if spec.end_ms is None else base + spec.end_ms

    def active(self, index: int, now: int | None = None) -> bool:
        start, end = self.window(index)
        t = self.clock() if now is None else now
        return start <= t and (end is None or t < end)

    def _fire(self, index: int, what: str, now: int | None = None) -> None:
        self.fired[index] += 1
        if len(self.events) < MAX_EVENTS:
            ts = self.clock() if now is None else now
            self.events.append(FaultEvent(ts, index, self.specs[index].kind, what))

    def status(self) -> dict[str, Any]:
        """The plan as plain data: each spec's window, whether it is active, how often it fired."""
        now = self.clock()
        out = []
        for i, spec in enumerate(self.specs):
            start, end = self.window(i)
            out.append(
                {
                    "index": i,
                    "kind": spec.kind,
                    "start_ts": start,
                    "end_ts": end,
                    "active": self.active(i, now),
                    "fired": self.fired[i],
                }
            )
        return {"seed": self.seed, "origin_ts": self.origin_ms, "now": now, "faults": out}

    # -- hooks -----------------------------------------------------------------------------------
    def on_step(self) -> None:
        """Open the windowed faults whose window began, close those whose window ended."""
        host = self._host
        if host is None or not self.specs:
            return
        now = self.clock()
        for i, spec in enumerate(self.specs):
            if spec.kind not in _WINDOW_KINDS:
                continue
            on = self.active(i, now)
            if on and i not in self._open:
                self._open_window(host, i, now)
            elif not on and i in self._open:
                self._close(host, i)

    def _open_window(self, host: FaultHost, index: int, now: int) -> None:
        spec = self.specs[index]
        if spec.kind == "tighten_limits":
            saved = host.throttle.config
            try:
                host.throttle.set_config(replace(saved, **dict(spec.limits)))
            except ValueError as exc:  # inconsistent with the limits in force now: skip it
                self._open[index] = None
                self._fire(index, f"limits refused: {exc}", now)
                return
            self._open[index] = saved
            self._fire(index, f"limits {dict(spec.limits)}", now)
        elif spec.kind == "thin_book":
            agents = list(host.fault_agents(spec.market))
            self._open[index] = [(a, list(a.sizes)) for a in agents]
            for agent in agents:
                agent.sizes = [max(1, int(size * spec.factor)) for size in agent.sizes]
            self._fire(index, f"depth x{float(spec.factor):g} on {len(agents)} agents", now)
        elif spec.kind == "mark_divergence":
            agents = list(host.fault_agents(spec.market))
            self._open[index] = [(a, a.centre_shift_bps) for a in agents]
            for agent in agents:
                agent.centre_shift_bps = agent.centre_shift_bps + spec.bps
            self._fire(index, f"quotes centred {spec.bps} bps off the index", now)
        elif spec.kind == "ws_disconnect":
            self._open[index] = None
            rng = self._rngs[index]
            closed = 0
            for server in (host.hub, *self._ws_targets):
                closed += server.disconnect(
                    lambda _: rng.random() < spec.fraction,
                    FAULT_CLOSE_CODE,
                    "injected fault: disconnect",
                )
            self._fire(index, f"closed {closed} sockets", now)

    def _close(self, host: FaultHost, index: int) -> None:
        spec = self.specs[index]
        saved = self._open.pop(index)
        if spec.kind == "tighten_limits" and saved is not None:
            host.throttle.set_config(saved)
        elif spec.kind == "thin_book":
            for agent, sizes in saved:
                agent.sizes = sizes
        elif spec.kind == "mark_divergence":
            for agent, shift in saved:
                agent.centre_shift_bps = shift

    def http(self, method: str, path: str) -> HttpFault | None:
        """The fault for one throttled request, or None. Draws once per matching spec."""
        if not self.specs:
            return None
        now = self.clock()
        delay = 0
        for i, spec in enumerate(self.specs):
            if spec.kind not in _HTTP_KINDS or not self.active(i, now):
                continue
            if spec.methods and method not in spec.methods:
                continue
            if not fnmatch.fnmatchcase(path, spec.route):
                continue
            rng = self._rngs[i]
            if spec.kind == "latency":
                extra = rng.randint(0, spec.jitter_ms) if spec.jitter_ms else 0
                delay += spec.latency_ms + extra
                self._fire(i, f"{method} {path} +{spec.latency_ms + extra} ms", now)
            elif rng.random() < spec.rate:
                self._fire(i, f"{method} {path}", now)
                if spec.kind == "http_error":
                    return HttpFault(delay, status=spec.status, kind=spec.kind)
                return HttpFault(delay, drop=True, hold_ms=spec.hold_ms, kind=spec.kind)
        return HttpFault(delay, kind="latency") if delay else None

    def source_price(self, market: str, source: str, ticks: int) -> int | None:
        """The price an index-source update should carry (None: skip it, the source is stale)."""
        if not self.specs:
            return ticks
        now = self.clock()
        for i, spec in enumerate(self.specs):
            if spec.kind not in _SOURCE_KINDS or spec.market != market or spec.source != source:
                continue
            if not self.active(i, now):
                continue
            if spec.kind == "stale_index_source":
                self._fire(i, f"{market}/{source} update withheld", now)
                return None
            shifted = max(1, int(Decimal(ticks) * (1 + spec.pct / 100)))
            self._fire(i, f"{market}/{source} {ticks} -> {shifted}", now)
            ticks = shifted
        return ticks

    def ws_message(self, client_id: int, payload: str | bytes) -> list[str | bytes] | None:
        """What one client receives instead of ``payload`` (None: disconnect it)."""
        now = self.clock()
        out: list[str | bytes] = [payload]
        for i, spec in enumerate(self.specs):
            if spec.kind not in _WS_KINDS:
                continue
            held = self._held.pop((i, client_id), None)
            on = self.active(i, now)
            if on:
                rng = self._rngs[i]
                if spec.kind == "ws_disconnect" and rng.random() < spec.rate:
                    self._fire(i, f"client {client_id} disconnected", now)
                    return None
                if spec.kind == "ws_drop" and out and rng.random() < spec.rate:
                    self._fire(i, f"client {client_id} message dropped", now)
                    out = []
                elif (
                    spec.kind == "ws_reorder"
                    and held is None
                    and len(out) == 1
                    and rng.random() < spec.rate
                ):
                    self._held[(i, client_id)] = out[0]
                    self._fire(i, f"client {client_id} message held back", now)
                    out = []
            if held is not None:
                out.append(held)  # the held message goes out after the newer one: a swap
        return out


def load_specs(raw: Sequence[Mapping[str, Any]]) -> list[FaultSpec]:
    """Specs from plain data (a TOML ``[[faults]]`` list); raises ``ValueError``."""
    from pydantic import ValidationError

    out: list[FaultSpec] = []
    for i, item in enumerate(raw):
        try:
            out.append(spec_from_model(FaultSpecModel.model_validate(dict(item))))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ValueError(f"faults[{i}].{where}: {first.get('msg', 'invalid')}") from None
        except ValueError as exc:
            raise ValueError(f"faults[{i}]: {exc}") from None
    return out
