"""Stateful property test: random commands across accounts and markets, invariants after each.

After every step: the book is never crossed; cash (collateral - position cost) plus fees is
conserved to the unit; positions net to zero per market; no resting quantity is zero or
negative and the book agrees with the accounts' order aggregates and margin reserves; reduce-only
orders never exceed the position they reduce; every stream's sequence numbers are gapless; and a
rejected command changes no state at all.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from perpbot.risk.margin import MONEY_SCALE
from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    Event,
    Exchange,
    ExchangeConfig,
    Instrument,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    SelfTradePrevention,
    SequencedEvent,
    SetLeverage,
    SetMarkPrice,
    Side,
    TimeInForce,
    Withdraw,
)
from sandbox.engine.accounts import order_reserve

INSTRUMENTS = (
    Instrument.create(
        "BTC-PERP",
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="0.08",
        market_max_qty="0.05",
        min_notional="5",
        initial_price="60000",
    ),
    Instrument.create(
        "ETH-PERP",
        tick_size="0.01",
        lot_size="0.01",
        min_qty="0.01",
        max_qty="2",
        market_max_qty="1",
        min_notional="5",
        initial_price="3000",
        maker_fee="-0.0001",  # a rebate: exercises the other rounding direction
        taker_fee="0.0007",
    ),
)
MARKETS = tuple(i.symbol for i in INSTRUMENTS)
ACCOUNTS = ("alice", "bob", "carol")
CLIENT_IDS = (None, None, None, "c0", "c1", "c2", "c3")
KINDS = (
    (OrderType.LIMIT, TimeInForce.GTC),
    (OrderType.LIMIT, TimeInForce.GTC),
    (OrderType.LIMIT, TimeInForce.IOC),
    (OrderType.LIMIT, TimeInForce.FOK),
    (OrderType.LIMIT, TimeInForce.POST_ONLY),
    (OrderType.MARKET, TimeInForce.IOC),
    (OrderType.MARKET, TimeInForce.FOK),
)


def _note(label: str) -> None:
    """Count outcomes for --hypothesis-show-statistics (only inside a hypothesis test)."""
    if currently_in_test_context():
        hypothesis_event(label)


def snapshot(ex: Exchange) -> Any:
    """Everything that makes up the exchange's state, as comparable plain data."""
    accounts = {}
    for acc in ex.accounts.values():
        accounts[acc.id] = (
            acc.collateral,
            acc.reserve,
            {
                sym: (
                    p.size,
                    p.cost,
                    p.realized_pnl,
                    p.leverage,
                    p.max_exposure,
                    p.buy_qty,
                    p.buy_value,
                    p.sell_qty,
                    p.sell_value,
                    p.reserve,
                    p.open_orders,
                    p.reduce_only_orders,
                )
                for sym, p in acc.positions.items()
            },
            [(o.id, o.price, o.qty, o.remaining, o.status) for o in acc.open_orders.values()],
            list(acc.recent),
            {cid: o.id for cid, o in acc.client_ids.items()},
        )
    markets = {
        sym: (
            m.seq,
            m.mark,
            m.last,
            m.trade_id,
            [
                (lv.price, lv.qty, [o.id for o in lv.orders if o.live])
                for lv in m.book.bids.sorted_levels()
            ],
            [
                (lv.price, lv.qty, [o.id for o in lv.orders if o.live])
                for lv in m.book.asks.sorted_levels()
            ],
        )
        for sym, m in ex.markets.items()
    }
    return (
        accounts,
        markets,
        ex.fees_collected,
        ex.total_deposits,
        ex.total_withdrawals,
        ex._next_order_id,
        ex._accounts_seq,
    )


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_700_000_000_000)
        self.ex = Exchange(
            INSTRUMENTS,
            clock=self.clock,
            config=ExchangeConfig(recent_orders=4, recent_order_ttl_ms=60_000, max_open_orders=6),
        )
        self.last_seq: dict[str, int] = {}
        for account in ACCOUNTS:
            self.submit(Deposit(account, 3_000 * MONEY_SCALE))

    def submit(self, command: Command) -> list[Event]:
        before = snapshot(self.ex)
        events = self.ex.submit(command)
        if len(events) == 1 and isinstance(events[0], Rejected):
            _note(f"rejected {events[0].code}")
            assert snapshot(self.ex) == before, f"rejected {command} changed state"
            return events
        for event in events:
            assert isinstance(event, SequencedEvent), event
            _note(type(event).__name__)
            assert event.seq == self.last_seq.get(event.stream, 0) + 1, "sequence gap"
            self.last_seq[event.stream] = event.seq
        return events

    @initialize(spread=st.integers(1, 5))
    def seed_books(self, spread: int) -> None:
        """Start from books with depth on both sides so that most runs trade."""
        for i, account in enumerate(ACCOUNTS):
            for market in MARKETS:
                mark = self.ex.markets[market].mark
                for level in range(1, 3):
                    gap = (spread + level + i) * 10
                    self.submit(PlaceOrder(account, market, Side.BUY, 5 + i, price=mark - gap))
                    self.submit(PlaceOrder(account, market, Side.SELL, 5 + i, price=mark + gap))

    def _open_ids(self, account: str, market: str) -> list[int]:
        return sorted(o.id for o in self.ex.open_orders(account, market))

    # -- rules ------------------------------------------------------------------------------
    @rule(
        account=st.sampled_from(ACCOUNTS),
        market=st.sampled_from(MARKETS),
        side=st.sampled_from((Side.BUY, Side.SELL)),
        qty=st.integers(1, 60),
        offset=st.integers(-30, 30),
        kind=st.sampled_from(KINDS),
        reduce_only=st.sampled_from((False, False, False, True)),
        client_id=st.sampled_from(CLIENT_IDS),
        stp=st.sampled_from((None, *SelfTradePrevention)),
    )
    def place(
        self,
        account: str,
        market: str,
        side: Side,
        qty: int,
        offset: int,
        kind: tuple[OrderType, TimeInForce],
        reduce_only: bool,
        client_id: str | None,
        stp: SelfTradePrevention | None,
    ) -> None:
        order_type, tif = kind
        m = self.ex.markets[market]
        price = None if order_type is OrderType.MARKET else m.mark + offset * 10
        self.submit(
            PlaceOrder(
                account,
                market,
                side,
                qty,
                price=price,
                order_type=order_type,
                tif=tif,
                reduce_only=reduce_only,
                client_id=client_id,
                stp=stp,
            )
        )

    @rule(
        account=st.sampled_from(ACCOUNTS),
        market=st.sampled_from(MARKETS),
        side=st.sampled_from((Side.BUY, Side.SELL)),
        qty=st.integers(1, 40),
        depth=st.integers(0, 3),
        tif=st.sampled_from((TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)),
        reduce_only=st.sampled_from((False, False, True)),
    )
    def take(
        self,
        account: str,
        market: str,
        side: Side,
        qty: int,
        depth: int,
        tif: TimeInForce,
        reduce_only: bool,
    ) -> None:
        """A limit order priced through the opposite best level: most of these trade."""
        book = self.ex.markets[market].book
        best = book.best_ask() if side > 0 else book.best_bid()
        if best is None:
            return
        price = best + side * depth * 10
        self.submit(
            PlaceOrder(account, market, side, qty, price=price, tif=tif, reduce_only=reduce_only)
        )

    @rule(
        account=st.sampled_from(ACCOUNTS),
        market=st.sampled_from(MARKETS),
        pick=st.integers(0, 10),
        by_client_id=st.booleans(),
    )
    def cancel(self, account: str, market: str, pick: int, by_client_id: bool) -> None:
        if by_client_id:
            self.submit(CancelOrder(account, market, client_id=CLIENT_IDS[3 + pick % 4]))
            return
        ids = self._open_ids(account, market)
        order_id = ids[pick % len(ids)] if ids and pick < 8 else pick + 10_000
        self.submit(CancelOrder(account, market, order_id=order_id))

    @rule(account=st.sampled_from(ACCOUNTS), market=st.sampled_from((None, *MARKETS)))
    def cancel_all(self, account: str, market: str | None) -> None:
        self.submit(CancelAll(account, market))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        market=st.sampled_from(MARKETS),
        pick=st.integers(0, 10),
        offset=st.one_of(st.none(), st.integers(-30, 30)),
        qty_delta=st.one_of(st.none(), st.integers(-20, 20)),
    )
    def amend(
        self, account: str, market: str, pick: int, offset: int | None, qty_delta: int | None
    ) -> None:
        ids = self._open_ids(account, market)
        if not ids:
            return
        order = self.ex.get_order(account, order_id=ids[pick % len(ids)])
        assert order is not None
        price = None if offset is None else self.ex.markets[market].mark + offset * 10
        qty = None if qty_delta is None else order.qty + qty_delta
        self.submit(AmendOrder(account, market, order_id=order.id, price=price, qty=qty))

    @rule(market=st.sampled_from(MARKETS), offset=st.integers(-400, 400))
    def move_mark(self, market: str, offset: int) -> None:
        self.submit(SetMarkPrice(market, self.ex.markets[market].mark + offset))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        market=st.sampled_from(MARKETS),
        leverage=st.sampled_from((0, 1, 2, 5, 20, 50, 125, 126)),
    )
    def set_leverage(self, account: str, market: str, leverage: int) -> None:
        self.submit(SetLeverage(account, market, leverage))

    @rule(account=st.sampled_from((*ACCOUNTS, "dave")), usdt=st.integers(-5, 2_000))
    def withdraw(self, account: str, usdt: int) -> None:
        self.submit(Withdraw(account, usdt * MONEY_SCALE))

    @rule(account=st.sampled_from((*ACCOUNTS, "dave")), usdt=st.integers(-5, 2_000))
    def deposit(self, account: str, usdt: int) -> None:
        self.submit(Deposit(account, usdt * MONEY_SCALE))

    @rule(ms=st.integers(0, 90_000))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(
        bad=st.sampled_from(
            (
                PlaceOrder("alice", "BTC-PERP", Side.BUY, 0, price=600000),
                PlaceOrder("alice", "BTC-PERP", Side.BUY, 1.5, price=600000),  # type: ignore[arg-type]
                PlaceOrder("alice", "DOGE-PERP", Side.BUY, 1, price=600000),
                PlaceOrder("alice", "BTC-PERP", Side.BUY, 1, price=None),
                PlaceOrder("nobody", "BTC-PERP", Side.BUY, 1, price=600000),
                PlaceOrder("alice", "BTC-PERP", Side.BUY, 10**30, price=600000),
                CancelOrder("alice", "BTC-PERP"),
            )
        )
    )
    def garbage(self, bad: Command) -> None:
        events = self.submit(bad)
        assert isinstance(events[0], Rejected)

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def book_never_crossed(self) -> None:
        for m in self.ex.markets.values():
            bid, ask = m.book.best_bid(), m.book.best_ask()
            assert bid is None or ask is None or bid < ask, (m.symbol, bid, ask)

    @invariant()
    def cash_is_conserved(self) -> None:
        cash = sum(
            acc.collateral - sum(p.cost for p in acc.positions.values())
            for acc in self.ex.accounts.values()
        )
        expected = self.ex.total_deposits - self.ex.total_withdrawals
        assert cash + self.ex.fees_collected == expected

    @invariant()
    def positions_net_to_zero(self) -> None:
        for symbol in MARKETS:
            net = sum(
                acc.positions[symbol].size
                for acc in self.ex.accounts.values()
                if symbol in acc.positions
            )
            assert net == 0, symbol

    @invariant()
    def book_matches_accounts(self) -> None:
        live: dict[int, Any] = {}
        for m in self.ex.markets.values():
            for side in (m.book.bids, m.book.asks):
                for level in side.levels.values():
                    orders = [o for o in level.orders if o.live]
                    assert orders and level.live == len(orders)
                    assert level.qty == sum(o.remaining for o in orders) > 0
                    for o in orders:
                        assert o.remaining > 0 and o.price == level.price
                        live[o.id] = o
        assert set(live) == set(self.ex._open)
        for acc in self.ex.accounts.values():
            reserve_total = 0
            for symbol, pos in acc.positions.items():
                mine = [o for o in acc.open_orders.values() if o.market == symbol]
                assert all(o.id in live for o in mine)
                normal = [o for o in mine if not o.reduce_only]
                buys = [o for o in normal if o.side > 0]
                sells = [o for o in normal if o.side < 0]
                assert pos.buy_qty == sum(o.remaining for o in buys)
                assert pos.buy_value == sum(o.remaining * o.price for o in buys)
                assert pos.sell_qty == sum(o.remaining for o in sells)
                assert pos.sell_value == sum(o.remaining * o.price for o in sells)
                assert pos.open_orders == len(mine)
                factor = self.ex.markets[symbol].factor
                assert pos.reserve == order_reserve(
                    pos.size,
                    pos.buy_qty,
                    pos.buy_value,
                    pos.sell_qty,
                    pos.sell_value,
                    pos.leverage,
                    factor,
                )
                reserve_total += pos.reserve
                for o in mine:
                    if o.reduce_only:
                        assert pos.size != 0 and (pos.size > 0) != (o.side > 0)
                        assert o.remaining <= abs(pos.size)
            assert acc.reserve == reserve_total


TestExchangeInvariants = ExchangeMachine.TestCase


def _random_walk(seed: int, steps: int) -> None:
    """Drive the same machine with a seeded RNG for long runs (deterministic, no shrinking)."""
    rng = random.Random(seed)
    machine = ExchangeMachine()
    machine.seed_books(spread=rng.randint(1, 5))
    actions = [
        lambda: machine.place(
            rng.choice(ACCOUNTS),
            rng.choice(MARKETS),
            rng.choice((Side.BUY, Side.SELL)),
            rng.randint(1, 60),
            rng.randint(-30, 30),
            rng.choice(KINDS),
            rng.random() < 0.2,
            rng.choice(CLIENT_IDS),
            rng.choice((None, *SelfTradePrevention)),
        ),
        lambda: machine.take(
            rng.choice(ACCOUNTS),
            rng.choice(MARKETS),
            rng.choice((Side.BUY, Side.SELL)),
            rng.randint(1, 40),
            rng.randint(0, 3),
            rng.choice((TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)),
            rng.random() < 0.3,
        ),
        lambda: machine.cancel(
            rng.choice(ACCOUNTS), rng.choice(MARKETS), rng.randint(0, 10), rng.random() < 0.3
        ),
        lambda: machine.amend(
            rng.choice(ACCOUNTS),
            rng.choice(MARKETS),
            rng.randint(0, 10),
            rng.choice((None, rng.randint(-30, 30))),
            rng.choice((None, rng.randint(-20, 20))),
        ),
        lambda: machine.move_mark(rng.choice(MARKETS), rng.randint(-400, 400)),
        lambda: machine.set_leverage(
            rng.choice(ACCOUNTS), rng.choice(MARKETS), rng.choice((1, 2, 5, 20, 50, 125))
        ),
        lambda: machine.withdraw(rng.choice(ACCOUNTS), rng.randint(1, 500)),
        lambda: machine.deposit(rng.choice(ACCOUNTS), rng.randint(1, 500)),
        lambda: machine.advance_clock(rng.randint(0, 30_000)),
        lambda: machine.cancel_all(rng.choice(ACCOUNTS), rng.choice((None, *MARKETS))),
    ]
    weights = [30, 30, 12, 8, 5, 3, 3, 3, 4, 2]
    for _ in range(steps):
        rng.choices(actions, weights)[0]()
        machine.book_never_crossed()
        machine.cash_is_conserved()
        machine.positions_net_to_zero()
        machine.book_matches_accounts()
    trades = sum(m.trade_id for m in machine.ex.markets.values())
    assert trades > steps // 20, "the walk should trade a lot"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_random_walk(seed: int) -> None:
    _random_walk(seed, steps=3000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 30))
def test_seeded_random_walk_long(seed: int) -> None:
    _random_walk(seed, steps=20_000)
