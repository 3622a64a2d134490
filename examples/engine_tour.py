"""In-process demo of the exchange engine: two accounts trade and we print what happened.

Run with ``python -m examples.engine_tour``. A market maker quotes a ladder, a
taker lifts it with a market order, the mark moves, and the taker closes with a reduce-only
order. Every number comes from the engine; nothing here is faked.
"""

from __future__ import annotations

from decimal import Decimal

from perpbot.risk.margin import money_to_decimal
from sandbox.engine import (
    CancelAll,
    Deposit,
    Deposited,
    Event,
    Exchange,
    Instrument,
    LiquidationFill,
    LiquidationFinished,
    LiquidationStarted,
    ManualClock,
    MarginCall,
    MarkPriceSet,
    OrderAccepted,
    OrderCanceled,
    OrderType,
    PlaceOrder,
    Rejected,
    SetLeverage,
    SetMarkPrice,
    Side,
    Tick,
    TimeInForce,
    Trade,
    UpdateIndexSource,
    default_instruments,
    money_units,
)

SYMBOL = "BTC-PERP"


def usdt(units: int) -> str:
    """Exact USDT with thousands separators and no trailing zeros beyond the cents."""
    text = f"{money_to_decimal(units):,f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def describe(event: Event, inst: Instrument) -> str:
    if isinstance(event, Rejected):
        return f"  REJECTED {event.code}: {event.message}"
    if isinstance(event, Deposited):
        return f"  #{event.seq:<3} deposit   {event.account:<6} {usdt(event.amount)} USDT"
    if isinstance(event, MarkPriceSet):
        return f"  #{event.seq:<3} mark      {inst.price_to_decimal(event.price)}"
    if isinstance(event, OrderAccepted):
        side = "BUY " if event.side > 0 else "SELL"
        return (
            f"  #{event.seq:<3} accepted  {event.account:<6} {side} "
            f"{inst.qty_to_decimal(event.qty)} @ {inst.price_to_decimal(event.price)} "
            f"({event.order_type} {event.tif}{' reduce-only' if event.reduce_only else ''})"
        )
    if isinstance(event, Trade):
        return (
            f"  #{event.seq:<3} TRADE     {inst.qty_to_decimal(event.qty)} @ "
            f"{inst.price_to_decimal(event.price)}  maker {event.maker_account} "
            f"fee {usdt(event.maker_fee)}, taker {event.taker_account} fee "
            f"{usdt(event.taker_fee)}, taker realized {usdt(event.taker_realized)}"
        )
    if isinstance(event, OrderCanceled):
        return (
            f"  #{event.seq:<3} canceled  order {event.order_id} "
            f"({inst.qty_to_decimal(event.remaining)} left, {event.reason})"
        )
    return f"  #{getattr(event, 'seq', '-'):<3} {type(event).__name__}"


def print_book(ex: Exchange, inst: Instrument) -> None:
    snap = ex.book_snapshot(SYMBOL, depth=5)
    print(f"\n  {SYMBOL} book at seq {snap.seq}")
    print(f"  {'bid qty':>10} {'price':>10} {'ask qty':>10}")
    for price, qty in reversed(snap.asks):
        print(f"  {'':>10} {inst.price_to_decimal(price):>10} {inst.qty_to_decimal(qty):>10}")
    for price, qty in snap.bids:
        print(f"  {inst.qty_to_decimal(qty):>10} {inst.price_to_decimal(price):>10}")


def print_accounts(ex: Exchange, inst: Instrument) -> None:
    mark = inst.price_to_decimal(ex.markets[SYMBOL].mark)
    print(f"\n  accounts at mark {mark}")
    print(
        f"  {'account':<7} {'collateral':>14} {'uPnL':>10} {'equity':>14} "
        f"{'pos IM':>10} {'order IM':>10} {'available':>14} {'MM':>8} {'position':>10}"
    )
    for name in ("maker", "taker"):
        v = ex.account_view(name)
        size = sum(p.size for p in v.positions)
        print(
            f"  {name:<7} {usdt(v.collateral):>14} {usdt(v.unrealized_pnl):>10} "
            f"{usdt(v.equity):>14} {usdt(v.position_margin):>10} {usdt(v.order_margin):>10} "
            f"{usdt(v.available):>14} {usdt(v.maintenance_margin):>8} "
            f"{inst.qty_to_decimal(size):>10}"
        )


def main() -> None:
    clock = ManualClock(1_767_225_600_000)  # 2026-01-01T00:00:00Z
    ex = Exchange(default_instruments(), clock=clock)
    inst = ex.markets[SYMBOL].instrument

    def run(title: str, *commands: object) -> None:
        print(f"\n== {title}")
        for command in commands:
            for event in ex.submit(command):  # type: ignore[arg-type]
                print(describe(event, inst))
            clock.advance(250)

    run(
        "Two accounts deposit USDT",
        Deposit("maker", money_units("250000")),
        Deposit("taker", money_units("20000")),
    )
    ladder = []
    for i in range(1, 4):
        for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
            price = inst.price_to_ticks(Decimal(60000) + sign * Decimal(5) * i)
            qty = inst.qty_to_lots(Decimal("0.05") * i)
            ladder.append(
                PlaceOrder("maker", SYMBOL, side, qty, price=price, client_id=f"mm-{side.name}-{i}")
            )
    run("The maker quotes a ladder around 60,000", *ladder)
    print_book(ex, inst)
    run(
        "The taker buys 0.2 BTC at market (sweeps two levels)",
        PlaceOrder("taker", SYMBOL, Side.BUY, inst.qty_to_lots("0.2"), order_type=OrderType.MARKET),
    )
    print_book(ex, inst)
    print_accounts(ex, inst)
    run("The mark rises to 60,600", SetMarkPrice(SYMBOL, inst.price_to_ticks("60600")))
    print_accounts(ex, inst)
    run(
        "A post-only order that would take is refused, and changes nothing",
        PlaceOrder(
            "taker",
            SYMBOL,
            Side.BUY,
            inst.qty_to_lots("0.01"),
            price=inst.price_to_ticks("60015"),
            tif=TimeInForce.POST_ONLY,
        ),
    )
    run(
        "The taker closes with a reduce-only IOC sell of 1 BTC (clipped to the 0.2 held)",
        PlaceOrder(
            "taker",
            SYMBOL,
            Side.SELL,
            inst.qty_to_lots("1"),
            price=inst.price_to_ticks("59900"),
            tif=TimeInForce.IOC,
            reduce_only=True,
        ),
    )
    print_book(ex, inst)
    print_accounts(ex, inst)
    print(f"\n  fees collected by the exchange: {usdt(ex.fees_collected)} USDT")
    liquidation_story(ex, clock, inst)


def quote_ladder(ex: Exchange, inst: Instrument, center: Decimal) -> None:
    """The maker re-centres a ladder of bids and asks on the index."""
    ex.submit(CancelAll("maker", SYMBOL))
    for i in range(1, 6):
        for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
            price = inst.price_to_ticks(center + sign * Decimal(10) * i)
            ex.submit(PlaceOrder("maker", SYMBOL, side, inst.qty_to_lots("0.5"), price=price))


def liquidation_story(ex: Exchange, clock: ManualClock, inst: Instrument) -> None:
    """A 50x long meets a falling index: margin call, 20% liquidation steps, finish."""
    print("\n== A trader goes 2 BTC long at 50x with 3,000 USDT; then the index slides")
    ex.submit(Deposit("degen", money_units("3000")))
    ex.submit(SetLeverage("degen", SYMBOL, 50))
    price = Decimal(60000)
    for source in ("spot-a", "spot-b", "spot-c"):
        ex.submit(UpdateIndexSource(SYMBOL, source, inst.price_to_ticks(price)))
    quote_ladder(ex, inst, price)
    ex.submit(Tick())
    for event in ex.submit(
        PlaceOrder("degen", SYMBOL, Side.BUY, inst.qty_to_lots("2"), order_type=OrderType.MARKET)
    ):
        if isinstance(event, Trade):
            print(describe(event, inst))
    shown = (MarginCall, LiquidationStarted, LiquidationFill, LiquidationFinished)
    while price > Decimal(58500):
        price -= Decimal(50)
        clock.advance(10_000)
        for source in ("spot-a", "spot-b", "spot-c"):
            ex.submit(UpdateIndexSource(SYMBOL, source, inst.price_to_ticks(price)))
        quote_ladder(ex, inst, price)
        events = ex.submit(Tick())
        view = ex.account_view("degen")
        ratio = "-" if view.margin_ratio is None else f"{view.margin_ratio / 10**6:.1f}%"
        size = sum(p.size for p in view.positions)
        notable = [e for e in events if isinstance(e, shown)]
        if not notable and price % 250 and not view.in_liquidation:
            continue
        print(
            f"  index {price}  mark {inst.price_to_decimal(ex.markets[SYMBOL].mark)}  "
            f"equity {usdt(view.equity):>10}  MM {usdt(view.maintenance_margin):>8}  "
            f"ratio {ratio:>7}  position {inst.qty_to_decimal(size)}"
        )
        for event in notable:
            print("     " + describe_risk(event, inst))
    fund = ex.account_view(ex.markets[SYMBOL].insurance)
    print(f"\n  insurance fund balance: {usdt(fund.collateral)} USDT")


def describe_risk(event: Event, inst: Instrument) -> str:
    if isinstance(event, MarginCall):
        return f"MARGIN CALL  equity {usdt(event.equity)}  MM {usdt(event.maintenance_margin)}"
    if isinstance(event, LiquidationStarted):
        return (
            f"LIQUIDATION STARTED  equity {usdt(event.equity)} <= MM "
            f"{usdt(event.maintenance_margin)}; {event.orders_cancelled} orders cancelled"
        )
    if isinstance(event, LiquidationFill):
        return (
            f"liquidation step ({event.mode}): closed {inst.qty_to_decimal(event.qty)} "
            f"(book {inst.qty_to_decimal(event.book_qty)}, insurance fund "
            f"{inst.qty_to_decimal(event.takeover_qty)}, ADL {inst.qty_to_decimal(event.adl_qty)})"
            f", bankruptcy price {inst.price_to_decimal(event.bankruptcy_price)}, "
            f"fee {usdt(event.fee)} to the insurance fund"
        )
    assert isinstance(event, LiquidationFinished)
    return f"LIQUIDATION FINISHED  equity {usdt(event.equity)}  MM {usdt(event.maintenance_margin)}"


if __name__ == "__main__":
    main()
