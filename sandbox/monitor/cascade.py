"""Cascade simulation: how a price shock propagates through liquidations.

A graph problem on a copy of the exchange's state (:func:`take_snapshot`; the live exchange is
never touched). Nodes are accounts and markets; edges are the ways one liquidation causes the
next:

* **shock -> index**: the shocked market's index moves by ``shock``; each correlated market's
  index follows ``beta`` times the shocked market's total mark move (shock plus cascade);
* **index/book -> mark**: each simulated second the mark is recomputed with the engine's own
  :class:`~sandbox.engine.pricing.MarkCalculator` (a copy): ``median(P1, P2, last)``, with a new
  basis sample ``mid - index`` from the model's book, so consumed depth drags the mark;
* **mark -> account**: an account whose equity at the marks falls to its maintenance margin is
  liquidated, closest to its liquidation price first (longs, then shorts, per market);
* **account -> book**: each liquidation step (docs/mechanics.md §14: step size, bankruptcy
  limit, liquidation fee, insurance-fund takeover, ADL) consumes resting orders, moving the
  last price and the makers' positions (which may in turn be liquidated).

The output is the chain of steps (who, in which order, how much, at what prices), the mark path
and the insurance fund's change. Not modelled: auctions (AUCTION mode goes straight to the
book), the insurance fund selling taken-over positions back into the book, funding settlements
and premium samples during the horizon, and any new orders from other traders.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from perpbot.risk.margin import (
    RATE_SCALE,
    Bracket,
    apply_fill,
    bankruptcy_price,
    liquidation_price,
    maintenance_margin,
    mul_rate_ceil,
)
from sandbox.engine import Exchange, Instrument, LiquidationConfig, LiquidationMode
from sandbox.engine.liquidation import steps_for
from sandbox.engine.pricing import MarkCalculator, mid_ticks
from sandbox.server import wire


@dataclass(slots=True)
class _Pos:
    size: int
    cost: int


@dataclass(slots=True)
class _Account:
    id: str
    collateral: int
    positions: dict[str, _Pos]
    liquidating: bool = False
    next_step_ts: int = 0


@dataclass(slots=True)
class _Order:
    account: str
    price: int
    qty: int


@dataclass(slots=True)
class _Market:
    symbol: str
    factor: int
    brackets: tuple[Bracket, ...]
    liq: LiquidationConfig
    maker_fee: int
    taker_fee: int
    market_band: int
    market_max_qty: int
    mark: int
    index: int
    last: int | None
    bids: list[_Order]  # priority order: best price first, then time
    asks: list[_Order]
    mark_calc: MarkCalculator
    funding_rate: int
    next_funding_ts: int
    funding_interval_ms: int
    mark_interval_ms: int
    insurance: str


@dataclass(slots=True)
class Snapshot:
    """A self-contained copy of what the cascade needs (engine units)."""

    ts: int
    markets: dict[str, _Market]
    accounts: dict[str, _Account]
    funds: dict[str, str] = field(default_factory=dict)  # fund account -> market


def take_snapshot(exchange: Exchange, ts: int) -> Snapshot:
    """Copy the exchange's accounts, books and price state at ``ts``. Read-only."""
    markets: dict[str, _Market] = {}
    for sym, m in exchange.markets.items():
        inst = m.instrument

        def side(levels: Any) -> list[_Order]:
            return [
                _Order(o.account, o.price, o.remaining)
                for lv in levels
                for o in lv.orders
                if o.live and o.remaining
            ]

        markets[sym] = _Market(
            sym,
            m.factor,
            tuple(inst.brackets),
            inst.mechanics.liquidation,
            inst.maker_fee,
            inst.taker_fee,
            inst.market_band,
            inst.market_max_qty,
            m.mark,
            m.index,
            m.last,
            side(m.book.bids.sorted_levels()),
            side(m.book.asks.sorted_levels()),
            copy.deepcopy(m.mark_calc),
            m.funding.predicted_rate(),
            m.next_funding_ts,
            inst.mechanics.funding.interval_ms,
            inst.mechanics.mark_interval_ms,
            m.insurance,
        )
    liquidating: dict[str, Any] = getattr(exchange, "_liquidating", {})
    accounts: dict[str, _Account] = {}
    for acct in exchange.accounts.values():
        state = liquidating.get(acct.id)
        accounts[acct.id] = _Account(
            acct.id,
            acct.collateral,
            {s: _Pos(p.size, p.cost) for s, p in acct.positions.items()},
            state is not None,
            state.next_step_ts if state is not None else 0,
        )
    return Snapshot(ts, markets, accounts, dict(exchange.insurance_funds))


@dataclass(frozen=True, slots=True)
class CascadeStep:
    """One liquidation step. ``side`` is the closing side (-1 sells a long); ``notional`` is
    what filled in the book (money units), ``avg_price`` its average (ticks, rounded down)."""

    round: int
    ts: int
    account: str
    market: str
    side: int
    qty: int
    book_qty: int
    takeover_qty: int
    adl_qty: int
    notional: int
    avg_price: int | None
    mark: int
    bankruptcy_price: int
    last: int | None
    fee: int
    fund_used: int
    deep: bool


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """The predicted chain and its effect on prices and the insurance funds."""

    market: str
    shock: int  # rate units
    start_ts: int
    rounds: int
    steps: tuple[CascadeStep, ...]
    accounts: tuple[str, ...]  # in the order their liquidation started
    mark_before: dict[str, int]
    mark_after: dict[str, int]
    mark_path: dict[str, tuple[int, ...]]  # the mark after each round
    last_after: dict[str, int | None]
    insurance_before: dict[str, int]
    insurance_after: dict[str, int]
    fund_used: int

    @property
    def forced_notional(self) -> int:
        return sum(s.notional for s in self.steps)


def shocked(price: int, shock: int) -> int:
    """``price * (1 + shock)`` in ticks (rounded down, at least one tick)."""
    return max(1, price + price * shock // RATE_SCALE)


class _Sim:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.m = snap.markets
        self.a = snap.accounts
        self.steps: list[CascadeStep] = []
        self.started: list[str] = []
        self.fund_used = 0
        self.round = 0
        self.queue: dict[str, None] = {}

    # -- margin ------------------------------------------------------------------------------
    def margin(self, acct: _Account) -> tuple[int, int, list[tuple[int, str]]]:
        equity, total, contrib = acct.collateral, 0, []
        for sym, pos in acct.positions.items():
            if pos.size:
                m = self.m[sym]
                value = pos.size * m.mark * m.factor
                equity += value - pos.cost
                mm = maintenance_margin(m.brackets, abs(value))
                total += mm
                contrib.append((mm, sym))
        return equity, total, contrib

    def liq_price(self, acct: _Account, sym: str) -> int | None:
        m = self.m[sym]
        pos = acct.positions[sym]
        equity, mm, _ = self.margin(acct)
        value = pos.size * m.mark * m.factor
        return liquidation_price(
            pos.size,
            pos.cost,
            m.factor,
            m.brackets,
            equity - (value - pos.cost),
            mm - maintenance_margin(m.brackets, abs(value)),
            m.mark,
        )

    @staticmethod
    def lead(contrib: list[tuple[int, str]]) -> str:
        return contrib[0][1] if len(contrib) == 1 else max(contrib, key=lambda c: c[0])[1]

    def restored(self, equity: int, mm: int, contrib: list[tuple[int, str]]) -> bool:
        if not contrib:
            return True
        return mm * RATE_SCALE <= self.m[self.lead(contrib)].liq.target_ratio * equity

    # -- fills -------------------------------------------------------------------------------
    def fill(self, acct: _Account, sym: str, side: int, price: int, qty: int) -> int:
        """Move ``qty`` lots at ``price`` into the account's position; return realized PnL."""
        pos = acct.positions.get(sym)
        if pos is None:
            pos = acct.positions[sym] = _Pos(0, 0)
        return apply_fill(pos, side, price, qty, self.m[sym].factor)

    def take_book(
        self,
        acct: _Account,
        sym: str,
        side: int,
        qty: int,
        limit: int,
        touched: dict[str, None],
        taker_fee: int = 0,
    ) -> tuple[int, int]:
        """An IOC for ``qty`` into the book, never beyond ``limit`` (a liquidation order pays
        no taker fee)."""
        m = self.m[sym]
        book = m.asks if side > 0 else m.bids
        filled = notional = 0
        while book and filled < qty:
            o = book[0]
            if (side > 0 and o.price > limit) or (side < 0 and o.price < limit):
                break
            q = min(o.qty, qty - filled)
            value = o.price * q * m.factor
            maker = self.a[o.account]
            maker.collateral += self.fill(maker, sym, -side, o.price, q) - mul_rate_ceil(
                value, m.maker_fee
            )
            acct.collateral += self.fill(acct, sym, side, o.price, q) - mul_rate_ceil(
                value, taker_fee
            )
            touched[o.account] = None
            filled, notional = filled + q, notional + value
            m.last = o.price
            o.qty -= q
            if not o.qty:
                book.pop(0)
        return filled, notional

    def transfer(self, src: _Account, dst: _Account, sym: str, qty: int, price: int) -> None:
        side = 1 if src.positions[sym].size > 0 else -1
        src.collateral += self.fill(src, sym, -side, price, qty)
        dst.collateral += self.fill(dst, sym, side, price, qty)

    # -- liquidation -------------------------------------------------------------------------
    def lots_to_restore(self, acct: _Account, m: _Market) -> int:
        equity, mm, _ = self.margin(acct)
        pos = acct.positions[m.symbol]
        held, cfg = abs(pos.size), m.liq
        pos_mm = maintenance_margin(m.brackets, held * m.mark * m.factor)

        def healthy(lots: int) -> bool:
            fee = mul_rate_ceil(lots * m.mark * m.factor, cfg.fee_rate)
            after = mm - pos_mm + maintenance_margin(m.brackets, (held - lots) * m.mark * m.factor)
            return after * RATE_SCALE <= cfg.target_ratio * (equity - fee)

        if not healthy(held):
            return held
        low, high = 1, held
        while low < high:
            mid = (low + high) // 2
            if healthy(mid):
                high = mid
            else:
                low = mid + 1
        return low

    def step(self, acct: _Account, contrib: list[tuple[int, str]], now: int) -> tuple[bool, int]:
        """One step on the largest contributor; returns (incremental mode, lots closed)."""
        touched: dict[str, None] = {}
        equity, mm, _ = self.margin(acct)
        sym = self.lead(contrib)
        m = self.m[sym]
        cfg = m.liq
        pos = acct.positions[sym]
        size, mark, factor = pos.size, m.mark, m.factor
        held, close = abs(size), (-1 if size > 0 else 1)
        deep = equity * RATE_SCALE < cfg.backstop_ratio * mm
        incremental = cfg.mode is LiquidationMode.INCREMENTAL
        if deep:
            qty = held
        elif incremental and held * mark * factor > cfg.min_step_notional:
            qty = min(steps_for(size, cfg.step_rate), self.lots_to_restore(acct, m))
        else:
            qty = held
        bk = bankruptcy_price(size, mark, equity, factor)
        book_qty = notional = fee = takeover = adl = used = 0
        if not deep:
            book_qty, notional = self.take_book(acct, sym, close, qty, bk, touched)
            after, _, _ = self.margin(acct)
            fee = min(mul_rate_ceil(notional, cfg.fee_rate), max(0, after))
            acct.collateral -= fee
            self.a[m.insurance].collateral += fee
        rest = qty - book_qty
        if rest and pos.size:
            rest = min(rest, abs(pos.size))
            eq_now, _, _ = self.margin(acct)
            price = bankruptcy_price(pos.size, mark, eq_now, factor)
            fund = self.a[m.insurance]
            fund_eq, _, _ = self.margin(fund)
            pnl = (1 if pos.size > 0 else -1) * (mark - price) * rest * factor
            if fund_eq + pnl >= 0:
                takeover = rest
                self.transfer(acct, fund, sym, rest, price)
                used = max(0, -pnl)
            else:
                adl = self.adl(acct, sym, rest, price, touched)
        self.fund_used += used
        self.steps.append(
            CascadeStep(
                self.round,
                now,
                acct.id,
                sym,
                close,
                book_qty + takeover + adl,
                book_qty,
                takeover,
                adl,
                notional,
                notional // (book_qty * factor) if book_qty else None,
                mark,
                bk,
                m.last,
                fee,
                used,
                deep,
            )
        )
        self.queue.update(touched)
        return incremental and not deep, book_qty + takeover + adl

    def adl(self, acct: _Account, sym: str, qty: int, price: int, touched: dict[str, None]) -> int:
        """Close opposing traders' positions against the account at ``price``, best score
        first (docs/mechanics.md §14, step 4)."""
        m = self.m[sym]
        sign = 1 if acct.positions[sym].size > 0 else -1
        ranked: list[tuple[Fraction, str]] = []
        for other in self.a.values():
            pos = other.positions.get(sym)
            if other.id in self.snap.funds or pos is None or pos.size * sign >= 0:
                continue
            equity, _, _ = self.margin(other)
            value = pos.size * m.mark * m.factor
            upnl = value - pos.cost
            pct = Fraction(upnl, abs(pos.cost) or 1)
            lev = Fraction(abs(value), max(equity, 1))
            score = pct * lev if upnl > 0 else pct / lev if lev else pct
            ranked.append((-score, other.id))
        done = 0
        for _, other_id in sorted(ranked):
            if done >= qty:
                break
            other = self.a[other_id]
            take = min(qty - done, abs(other.positions[sym].size))
            self.transfer(acct, other, sym, take, price)
            touched[other_id] = None
            done += take
        return done

    def evaluate(self, acct: _Account, now: int) -> None:
        if acct.id in self.snap.funds:
            return
        equity, mm, contrib = self.margin(acct)
        if not contrib:
            if acct.collateral < 0:
                fund = self.a[self.m[next(iter(acct.positions))].insurance]
                fund.collateral += acct.collateral
                self.fund_used -= acct.collateral
                acct.collateral = 0
            return
        if equity > mm and not acct.liquidating:
            return
        if acct.liquidating and equity > mm:
            if self.restored(equity, mm, contrib):
                acct.liquidating = False
                return
            if now < acct.next_step_ts:
                return
        cfg = self.m[self.lead(contrib)].liq
        deep = equity * RATE_SCALE < cfg.backstop_ratio * mm
        if acct.liquidating and now < acct.next_step_ts and not deep:
            return
        if not acct.liquidating:
            acct.liquidating = True
            self.started.append(acct.id)
            for m in self.m.values():  # step 0: the account's resting orders are cancelled
                m.bids = [o for o in m.bids if o.account != acct.id]
                m.asks = [o for o in m.asks if o.account != acct.id]
        for _ in range(4 * len(self.m) + 8):
            equity, mm, contrib = self.margin(acct)
            if not contrib:
                break
            incremental, closed = self.step(acct, contrib, now)
            if not closed:
                break
            equity, mm, contrib = self.margin(acct)
            if self.restored(equity, mm, contrib):
                break
            lead_cfg = self.m[self.lead(contrib)].liq
            if incremental and not equity * RATE_SCALE < lead_cfg.backstop_ratio * mm:
                acct.next_step_ts = now + lead_cfg.cooldown_ms
                return
        if self.restored(*self.margin(acct)):
            acct.liquidating = False

    def order_key(self, acct: _Account) -> tuple[int, int, int, str]:
        """Evaluation order: by market (configuration order), longs first, the nearest
        liquidation price first."""
        _, _, contrib = self.margin(acct)
        sym = self.lead(contrib)
        size = acct.positions[sym].size
        price = self.liq_price(acct, sym) or 0
        return (
            list(self.m).index(sym),
            0 if size > 0 else 1,
            -price if size > 0 else price,
            acct.id,
        )

    def run_round(self, now: int) -> None:
        candidates = []
        for acct in self.a.values():
            if acct.id in self.snap.funds:
                continue
            equity, mm, contrib = self.margin(acct)
            if contrib and (equity <= mm or acct.liquidating):
                candidates.append(acct)
        fresh = sorted((a for a in candidates if not a.liquidating), key=self.order_key)
        self.queue = {a.id: None for a in fresh}
        for a in candidates:
            if a.liquidating:
                self.queue[a.id] = None
        self.drain(now)
        for m in self.m.values():
            self.unwind(m, now)
            self.drain(now)

    def drain(self, now: int) -> None:
        while self.queue:
            account_id = next(iter(self.queue))
            del self.queue[account_id]
            self.evaluate(self.a[account_id], now)

    def unwind(self, m: _Market, now: int) -> None:
        """The insurance fund sells a taken-over position back with a reduce-only market
        order inside the protection band (once per mark interval)."""
        fund = self.a[m.insurance]
        pos = fund.positions.get(m.symbol)
        if pos is None or not pos.size:
            return
        side = -1 if pos.size > 0 else 1
        qty = min(abs(pos.size), m.market_max_qty)
        if side < 0:
            limit = -((-m.mark * (RATE_SCALE - m.market_band)) // RATE_SCALE)
        else:
            limit = m.mark * (RATE_SCALE + m.market_band) // RATE_SCALE
        touched: dict[str, None] = {}
        self.take_book(fund, m.symbol, side, qty, limit, touched, m.taker_fee)
        self.queue.update(touched)


def simulate(
    snap: Snapshot,
    market: str,
    shock: int,
    *,
    betas: dict[str, Fraction] | None = None,
    seconds: int = 30,
    requote: tuple[str, ...] = (),
) -> CascadeResult:
    """Apply ``shock`` (rate units, e.g. ``-10 * RATE_SCALE // 100``) to ``market``'s index at
    ``snap.ts`` and follow the cascade for ``seconds`` mark updates. ``betas``: how much each
    other market's index follows the shocked market's mark move (default 0). ``requote``:
    account-id prefixes (e.g. ``("mm:",)``) of market makers whose resting orders move with
    their market's index shock (the rest of the book stays where it is). Consumes ``snap``
    (take a fresh one per call)."""
    if market not in snap.markets:
        raise KeyError(market)
    sim = _Sim(snap)
    markets = snap.markets
    betas = betas or {}
    base_index = {s: m.index for s, m in markets.items()}
    mark_before = {s: m.mark for s, m in markets.items()}
    funds_before = {s: snap.accounts[m.insurance].collateral for s, m in markets.items()}
    path: dict[str, list[int]] = {s: [] for s in markets}
    target = markets[market]
    target.index = shocked(target.index, shock)
    if requote:
        for sym, m in markets.items():
            beta = Fraction(1) if sym == market else betas.get(sym, Fraction(0))
            delta = int(shock * beta)
            if delta:
                for o in (*m.bids, *m.asks):
                    if o.account.startswith(requote):
                        o.price = shocked(o.price, delta)
                m.bids.sort(key=lambda o: -o.price)  # stable: time priority kept per price
                m.asks.sort(key=lambda o: o.price)
    for r in range(seconds):
        sim.round = r
        now = snap.ts + (r + 1) * target.mark_interval_ms
        move = Fraction(target.mark - mark_before[market], mark_before[market])
        if r == 0:
            move = Fraction(shock, RATE_SCALE)
        for sym, m in markets.items():
            beta = betas.get(sym, Fraction(0))
            if sym != market and beta:
                m.index = max(1, int(base_index[sym] * (1 + beta * move)))
            mid = mid_ticks(
                m.bids[0].price if m.bids else None, m.asks[0].price if m.asks else None
            )
            m.mark_calc.sample_basis(mid, m.index, now)
            m.mark = m.mark_calc.compute(
                m.index,
                m.last,
                m.funding_rate,
                max(0, m.next_funding_ts - now),
                m.funding_interval_ms,
            )
        sim.run_round(now)
        for sym, m in markets.items():
            path[sym].append(m.mark)
    return CascadeResult(
        market,
        shock,
        snap.ts,
        seconds,
        tuple(sim.steps),
        tuple(sim.started),
        mark_before,
        {s: m.mark for s, m in markets.items()},
        {s: tuple(p) for s, p in path.items()},
        {s: m.last for s, m in markets.items()},
        funds_before,
        {s: snap.accounts[m.insurance].collateral for s, m in markets.items()},
        sim.fund_used,
    )


def cascade_json(instruments: dict[str, Instrument], r: CascadeResult) -> dict[str, Any]:
    """The wire form of a cascade prediction (decimal strings)."""
    inst = instruments[r.market]

    def px(sym: str, ticks: int | None) -> str | None:
        return None if ticks is None else wire.price(instruments[sym], ticks)

    return {
        "market": r.market,
        "shock": wire.rate(r.shock),
        "start_ts": r.start_ts,
        "seconds": r.rounds,
        "accounts": list(r.accounts),
        "liquidated_accounts": len(r.accounts),
        "forced_notional": wire.money(r.forced_notional),
        "mark_before": wire.price(inst, r.mark_before[r.market]),
        "mark_after": wire.price(inst, r.mark_after[r.market]),
        "min_mark": wire.price(inst, min(r.mark_path[r.market], default=r.mark_after[r.market])),
        "last_after": px(r.market, r.last_after[r.market]),
        "markets": [
            {
                "market": s,
                "mark_before": px(s, r.mark_before[s]),
                "mark_after": px(s, r.mark_after[s]),
                "insurance_before": wire.money(r.insurance_before[s]),
                "insurance_after": wire.money(r.insurance_after[s]),
            }
            for s in r.mark_before
        ],
        "insurance_fund_used": wire.money(r.fund_used),
        "steps": [
            {
                "second": s.round + 1,
                "ts": s.ts,
                "account": s.account,
                "market": s.market,
                "side": "SELL" if s.side < 0 else "BUY",
                "qty": wire.qty(instruments[s.market], s.qty),
                "book_qty": wire.qty(instruments[s.market], s.book_qty),
                "takeover_qty": wire.qty(instruments[s.market], s.takeover_qty),
                "adl_qty": wire.qty(instruments[s.market], s.adl_qty),
                "notional": wire.money(s.notional),
                "avg_price": px(s.market, s.avg_price),
                "mark": px(s.market, s.mark),
                "bankruptcy_price": px(s.market, s.bankruptcy_price),
                "last": px(s.market, s.last),
                "fee": wire.money(s.fee),
                "insurance_fund_used": wire.money(s.fund_used),
                "deep": s.deep,
            }
            for s in r.steps
        ],
    }
