"""The guard: our client against the in-process sandbox (size limits, a fake checker, resize,
the kill switch, cancels, the cache), policies from TOML, and CcxtGuard over fake ccxt objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from perpbot import AsyncClient, InvalidOrder, LimitExceeded, RiskRejected
from perpbot.guard import CcxtGuard, Guard, GuardPolicy, KillSwitchTripped, PolicyError

BTC = "BTC-PERP"


@dataclass
class Reason:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    decision: str
    allowed_qty: Decimal
    reasons: list[Reason]


class FakeChecker:
    """Answers every check with ``decision`` (and ``allowed``), recording the calls."""

    def __init__(self, decision: str = "allow", allowed: str = "0", *reasons: Reason) -> None:
        self.decision = decision
        self.allowed = Decimal(allowed)
        self.reasons = list(reasons)
        self.calls: list[dict[str, Any]] = []

    def check(
        self,
        portfolio: Any,
        order: Any,
        *,
        marks: Any,
        books: Any = None,
        volatility: Any = None,
        funding_rates: Any = None,
        stress: bool = False,
    ) -> Report:
        self.calls.append(
            {
                "portfolio": portfolio,
                "order": order,
                "marks": marks,
                "books": books,
                "stress": stress,
            }
        )
        allowed = self.allowed if self.decision != "allow" else order.qty
        return Report(self.decision, allowed, self.reasons)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy(**fields: Any) -> GuardPolicy:
    return GuardPolicy.model_validate(fields)


async def open_qtys(client: AsyncClient) -> list[str]:
    return [o.qty for o in await client.open_orders()]


# -- policy ---------------------------------------------------------------------------------
POLICY_TOML = """
resize = "resize"
stress = true
cache_ttl_s = 1.5

[size]
max_qty = { "*" = "5", "BTC-PERP" = "1" }
max_notional = "100000"
price_band = 0.02

[risk]
max_margin_ratio = 0.5
max_leverage = 10
survive_stress = true
stress_shocks = { "BTC-PERP" = 0.15, "ETH-PERP" = "0.2" }

[kill_switch]
max_rejections = 3
window_s = 30
max_drawdown = "0.1"
"""


def test_policy_from_toml_text_and_file(tmp_path: Path) -> None:
    p = GuardPolicy.from_toml(POLICY_TOML)
    assert (p.resize, p.stress, p.cache_ttl_s) == ("resize", True, 1.5)
    assert p.size.max_qty == {"*": Decimal("5"), BTC: Decimal("1")}
    assert p.size.price_band == Decimal("0.02")
    # exact decimals from TOML floats; ints and bools kept
    assert p.risk == {
        "max_margin_ratio": Decimal("0.5"),
        "max_leverage": Decimal(10),
        "survive_stress": True,
        "stress_shocks": {BTC: Decimal("0.15"), "ETH-PERP": Decimal("0.2")},
    }
    assert (p.kill_switch.max_rejections, p.kill_switch.max_drawdown) == (3, Decimal("0.1"))
    btc, eth = p.size.for_market(BTC), p.size.for_market("ETH-PERP")
    assert (btc.max_qty, eth.max_qty, btc.max_notional) == (
        Decimal(1),
        Decimal(5),
        Decimal(100000),
    )
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    assert GuardPolicy.from_toml(path) == GuardPolicy.from_toml(str(path)) == p
    with pytest.raises(Exception, match="frozen"):
        p.stress = False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resize = \n", "not valid TOML"),
        ('resize = "maybe"', r"resize: Input should be 'reject' or 'resize'"),
        ("[size]\nmax_qtty = 1", r"size\.max_qtty: Extra inputs are not permitted"),
        ("[kill_switch]\nmax_drawdown = 2", r"kill_switch\.max_drawdown: Input should be less"),
        ('[risk]\nmax_margin_ratio = "lots"', r"risk: .*not a number"),
    ],
)
def test_bad_policy_gives_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        GuardPolicy.from_toml(text)


def test_unknown_risk_limit_is_refused_at_load() -> None:
    pytest.importorskip("perpbot.risk.checker")
    with pytest.raises(PolicyError, match=r"unknown RiskLimits field\(s\) \['max_lev'\]"):
        GuardPolicy.from_toml("[risk]\nmax_lev = 3")


def test_the_policy_in_the_docs_loads() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "risk.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    p = GuardPolicy.from_toml(block)
    assert p.kill_switch.max_drawdown == Decimal("0.05") and p.volatility[BTC] == Decimal("0.6")


def test_missing_policy_file() -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        GuardPolicy.from_toml("/nonexistent/policy.toml")


# -- our client against the sandbox ---------------------------------------------------------
async def test_allowed_order_goes_through(alice: AsyncClient) -> None:
    checker = FakeChecker()
    guard = Guard(alice, policy(stress=True), checker=checker)
    result = await guard.create_order(BTC, "buy", "0.1", "59000")
    assert (result.order.side, result.order.qty, result.order.price) == ("BUY", "0.1", "59000")
    assert await open_qtys(alice) == ["0.1"]
    [call] = checker.calls
    assert (call["order"].market, call["order"].qty, call["order"].price) == (
        BTC,
        Decimal("0.1"),
        Decimal("59000"),
    )
    assert call["marks"] == {BTC: Decimal("60000")}
    assert call["books"] is None and call["stress"] is True
    # A market order is checked with the book (expected fill).
    await guard.create_order(BTC, "SELL", "0.1", type="MARKET", tif="IOC")
    assert checker.calls[-1]["books"][BTC].bids == [("59000", "0.1")]


async def test_size_limit_breach_sends_nothing(alice: AsyncClient) -> None:
    checker = FakeChecker()
    guard = Guard(alice, policy(size={"max_qty": {"*": "1"}}), checker=checker)
    with pytest.raises(LimitExceeded) as exc:
        await guard.create_order(BTC, "BUY", "2", "59000")
    assert (exc.value.reason, exc.value.details["max_qty"]) == ("MAX_QTY", "1")
    assert checker.calls == []
    assert await open_qtys(alice) == []
    assert guard.status().rejections == 1


async def test_checker_reject_raises_with_reasons(alice: AsyncClient) -> None:
    reason = Reason(
        "MARGIN_RATIO", "margin ratio after 0.91 > 0.8", {"after": "0.91", "max": "0.8"}
    )
    guard = Guard(alice, policy(), checker=FakeChecker("reject", "0", reason))
    with pytest.raises(RiskRejected) as exc:
        await guard.create_order(BTC, "BUY", "1", "59000")
    err = exc.value
    assert (err.reason, err.message) == ("MARGIN_RATIO", "margin ratio after 0.91 > 0.8")
    assert err.details["reasons"] == [
        {
            "code": "MARGIN_RATIO",
            "message": "margin ratio after 0.91 > 0.8",
            "details": {"after": "0.91", "max": "0.8"},
        }
    ]
    assert await open_qtys(alice) == []


async def test_resize_sends_the_smaller_qty_or_rejects_per_policy(alice: AsyncClient) -> None:
    reason = Reason("AVAILABLE", "needs 3000, available 1500", {})
    checker = FakeChecker("resize", "0.4", reason)
    guard = Guard(alice, policy(resize="resize"), checker=checker)
    result = await guard.create_order(BTC, "BUY", "1", "59000")
    assert result.order.qty == "0.4"
    strict = Guard(alice, policy(resize="reject"), checker=checker)
    with pytest.raises(RiskRejected, match=r"would allow 0\.4; policy: reject") as exc:
        await strict.create_order(BTC, "BUY", "1", "59000")
    assert (exc.value.reason, exc.value.details["allowed_qty"]) == ("AVAILABLE", "0.4")
    assert await open_qtys(alice) == ["0.4"]


async def test_kill_switch_trips_after_n_rejections(alice: AsyncClient) -> None:
    clock = Clock()
    pol = policy(size={"max_qty": "1"}, kill_switch={"max_rejections": 2, "window_s": 10})
    guard = Guard(alice, pol, checker=FakeChecker(), clock=clock)
    with pytest.raises(LimitExceeded):
        await guard.create_order(BTC, "BUY", "2", "59000")
    clock.now += 11  # the first rejection leaves the window
    with pytest.raises(LimitExceeded):
        await guard.create_order(BTC, "BUY", "2", "59000")
    assert not guard.status().killed
    placed = await guard.create_order(BTC, "BUY", "0.1", "59000")
    with pytest.raises(LimitExceeded):
        await guard.create_order(BTC, "BUY", "3", "59000")
    status = guard.status()
    assert status.killed and status.rejections == 2
    assert status.why == "2 rejections within 10 s (max 2; last: MAX_QTY)"
    with pytest.raises(KillSwitchTripped, match="trading is stopped: 2 rejections") as exc:
        await guard.create_order(BTC, "BUY", "0.1", "59000")  # a fine order, refused
    assert exc.value.reason == "KILL_SWITCH" and isinstance(exc.value, RiskRejected)
    # Cancels pass while killed.
    canceled = await guard.cancel_order(placed.order.order_id)
    assert canceled.status == "CANCELED"
    with pytest.raises(KillSwitchTripped):
        await guard.create_order(BTC, "SELL", "0.1", "61000")
    guard.reset()
    assert guard.status().killed is False and guard.status().rejections == 0
    await guard.create_order(BTC, "BUY", "0.1", "59000")
    assert (await guard.cancel_all_orders(BTC)).canceled
    assert await open_qtys(alice) == []


async def test_exchange_refusals_count(alice: AsyncClient, bob: AsyncClient) -> None:
    await bob.create_order(BTC, "SELL", "0.1", "60000")
    guard = Guard(alice, policy(kill_switch={"max_rejections": 1}), checker=FakeChecker())
    with pytest.raises(InvalidOrder) as exc:
        await guard.create_order(BTC, "BUY", "0.1", "60000", tif="POST_ONLY")
    assert exc.value.code == "POST_ONLY_WOULD_TAKE"
    assert guard.status().why == "1 rejections within 60 s (max 1; last: POST_ONLY_WOULD_TAKE)"
    with pytest.raises(KillSwitchTripped):
        await guard.create_order(BTC, "BUY", "0.1", "59000")


async def test_kill_switch_trips_on_drawdown(
    alice: AsyncClient, bob: AsyncClient, admin: httpx.AsyncClient
) -> None:
    pol = policy(kill_switch={"max_drawdown": "0.05", "max_rejections": None})
    guard = Guard(alice, pol, checker=FakeChecker())
    # Alice buys 1 BTC at 60,000 (maker), equity ~100,000.
    await bob.create_order(BTC, "SELL", "1", "60000")
    await guard.create_order(BTC, "BUY", "1", "60000")
    # The mark falls to 54,000: equity ~94,000, a 6% drawdown from the 100,000 peak.
    for source in ("spot-a", "spot-b", "spot-c"):
        body = {"market": BTC, "source": source, "price": "54000"}
        r = await admin.post("/v1/admin/index-price", json=body)
        assert r.status_code == 200, r.text
    await admin.post("/v1/admin/clock", json={"action": "advance", "ms": 1_000})
    assert Decimal((await alice.ticker(BTC)).mark) < 54100
    with pytest.raises(KillSwitchTripped, match=r"drawdown 6\.0\d+% from peak") as exc:
        await guard.create_order(BTC, "SELL", "1", "54000", reduce_only=True)
    assert "max 5%)" in exc.value.details["cause"]
    status = guard.status()
    assert status.killed and status.peak_equity is not None and status.last_equity is not None
    assert status.peak_equity == 100000
    assert status.last_equity == Decimal((await alice.account()).equity)
    assert await open_qtys(alice) == []
    await guard.cancel_all_orders()  # still allowed
    guard.reset()  # a human looked; the peak restarts at the current equity
    assert guard.status().peak_equity == status.last_equity
    result = await guard.create_order(BTC, "SELL", "1", "54100", reduce_only=True)
    assert result.order.reduce_only


async def test_absolute_drawdown(
    alice: AsyncClient, bob: AsyncClient, admin: httpx.AsyncClient
) -> None:
    guard = Guard(alice, policy(kill_switch={"max_drawdown_usdt": "500"}), checker=FakeChecker())
    await bob.create_order(BTC, "SELL", "1", "60000")
    await guard.create_order(BTC, "BUY", "1", "60000")
    for source in ("spot-a", "spot-b", "spot-c"):
        body = {"market": BTC, "source": source, "price": "59400"}
        await admin.post("/v1/admin/index-price", json=body)
    await admin.post("/v1/admin/clock", json={"action": "advance", "ms": 1_000})
    with pytest.raises(
        KillSwitchTripped, match=r"drawdown \d+(\.\d+)? USDT from peak 100000 \(max 500 USDT\)"
    ):
        await guard.create_order(BTC, "BUY", "0.1", "59000")


class Counting:
    """Counts calls of the client methods the guard fetches through."""

    def __init__(self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: dict[str, int] = {}
        for name in ("markets", "account", "open_orders", "ticker", "order_book"):
            method = getattr(client, name)
            monkeypatch.setattr(client, name, self._wrap(name, method))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            return await method(*args, **kwargs)

        return call


async def test_cache_ttl_is_respected(alice: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(alice, monkeypatch)
    clock = Clock()
    pol = policy(size={"max_qty": "1"}, cache_ttl_s=5, kill_switch={"max_rejections": None})
    guard = Guard(alice, pol, checker=FakeChecker(), clock=clock)
    for _ in range(3):
        with pytest.raises(LimitExceeded):
            await guard.create_order(BTC, "BUY", "2", "59000")
    one = {"markets": 1, "account": 1, "open_orders": 1, "ticker": 1}
    assert counting.counts == one
    clock.now += 4.9
    with pytest.raises(LimitExceeded):
        await guard.create_order(BTC, "BUY", "2", "59000")
    assert counting.counts == one
    clock.now += 0.2  # past the ttl: private state and marks again, markets still cached
    with pytest.raises(LimitExceeded):
        await guard.create_order(BTC, "BUY", "2")  # a market order also needs the book
    assert counting.counts == {**one, "account": 2, "open_orders": 2, "ticker": 2, "order_book": 1}
    # A placement changes the account: it is refetched on the next order.
    await guard.create_order(BTC, "BUY", "0.1", "59000")
    await guard.create_order(BTC, "BUY", "0.1", "59000")
    assert (counting.counts["account"], counting.counts["ticker"]) == (3, 2)


async def test_unknown_market_is_refused(alice: AsyncClient) -> None:
    guard = Guard(alice, policy(), checker=FakeChecker())
    with pytest.raises(RiskRejected, match="UNKNOWN_MARKET"):
        await guard.create_order("DOGE-PERP", "BUY", "1", "1")


async def test_with_the_real_risk_checker(alice: AsyncClient) -> None:
    pytest.importorskip("perpbot.risk.checker")
    guard = Guard(alice, policy())
    result = await guard.create_order(BTC, "BUY", "0.1", "59000")
    assert result.order.qty == "0.1"
    # 100 BTC at 20x needs ~295,000 USDT of margin; Alice has 100,000.
    with pytest.raises(RiskRejected) as exc:
        await guard.create_order(BTC, "BUY", "100", "59000")
    assert exc.value.details["reasons"]
    assert await open_qtys(alice) == ["0.1"]
    # The ccxt mapping feeds the same checker: Portfolio.from_models accepts it exactly.
    ccxt = CcxtGuard(FakeCcxt(), policy())
    await ccxt.create_order(CCXT_BTC, "limit", "buy", 0.1, 59000)
    with pytest.raises(RiskRejected, match="INSUFFICIENT_MARGIN"):
        await ccxt.create_order(CCXT_BTC, "limit", "sell", 5, 60000)


# -- ccxt -----------------------------------------------------------------------------------
class InvalidOrderError(Exception):
    """Stands in for ccxt.InvalidOrder (recognised by name in the MRO)."""


InvalidOrderError.__name__ = "InvalidOrder"

CCXT_BTC = "BTC/USDT:USDT"
CCXT_MARKET = {
    "symbol": CCXT_BTC,
    "precision": {"amount": 0.001, "price": 0.1},
    "limits": {
        "amount": {"min": 0.001, "max": 1000.0},
        "market": {"min": 0.001, "max": 120.0},
        "cost": {"min": 100.0, "max": None},
    },
    "maker": 0.0002,
    "taker": 0.0005,
    "info": {},
}


class FakeCcxt:
    """A ccxt-shaped exchange with sync methods, counting calls."""

    id = "fakeusdm"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = False

    def _log(self, *call: Any) -> None:
        self.calls.append(call)

    def count(self, name: str) -> int:
        return sum(1 for c in self.calls if c[0] == name)

    def load_markets(self) -> dict[str, Any]:
        self._log("load_markets")
        return {CCXT_BTC: CCXT_MARKET}

    def fetch_balance(self) -> dict[str, Any]:
        self._log("fetch_balance")
        return {"USDT": {"free": 9000.0, "used": 1000.0, "total": 10050.0}}

    def fetch_positions(self) -> list[dict[str, Any]]:
        self._log("fetch_positions")
        return [
            {
                "symbol": CCXT_BTC,
                "contracts": 0.5,
                "contractSize": 1.0,
                "side": "short",
                "entryPrice": 60100.0,
                "markPrice": 60000.0,
                "leverage": 30.0,
                "unrealizedPnl": 50.0,
                "initialMargin": 1000.0,
                "maintenanceMargin": None,
                "liquidationPrice": 79000.0,
            },
            {"symbol": "ETH/USDT:USDT", "contracts": 0.0, "side": None, "entryPrice": None},
        ]

    def fetch_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        self._log("fetch_open_orders", symbol)
        return [
            {
                "id": "8123",
                "clientOrderId": "x-1",
                "symbol": symbol,
                "side": "buy",
                "type": "limit",
                "price": 59000.0,
                "amount": 0.2,
                "filled": 0.05,
                "remaining": 0.15,
                "reduceOnly": False,
                "timestamp": 1_700_000_000_000,
            }
        ]

    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        self._log("fetch_ticker", symbol)
        return {"symbol": symbol, "last": 60010.0, "markPrice": 60000.0}

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        self._log("fetch_order_book", symbol, limit)
        return {"bids": [[59990.0, 1.5]], "asks": [[60010.0, 2.0], [60020.5, 1.0]], "nonce": 7}

    def create_order(
        self, symbol: str, type: str, side: str, amount: Any, price: Any, params: Any
    ) -> dict[str, Any]:
        self._log("create_order", symbol, type, side, amount, price, params)
        if self.refuse:
            raise InvalidOrderError("binanceusdm {-2010: rejected}")
        return {"id": "1", "symbol": symbol, "amount": amount, "status": "open"}

    def cancel_order(self, id: str, symbol: str | None, params: Any) -> dict[str, Any]:
        self._log("cancel_order", id, symbol)
        return {"id": id, "status": "canceled"}

    def cancel_all_orders(self, symbol: str | None, params: Any) -> list[Any]:
        self._log("cancel_all_orders", symbol)
        return []


class AsyncFakeCcxt(FakeCcxt):
    """The same exchange with async methods (ccxt.async_support)."""

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in {"load_markets", "fetch_balance", "fetch_positions", "fetch_open_orders"} | {
            "fetch_ticker",
            "fetch_order_book",
            "create_order",
            "cancel_order",
            "cancel_all_orders",
        }:

            async def call(*args: Any) -> Any:
                return attr(*args)

            return call
        return attr


@pytest.fixture(params=[FakeCcxt, AsyncFakeCcxt], ids=["sync", "async"])
def exchange(request: pytest.FixtureRequest) -> FakeCcxt:
    cls: type[FakeCcxt] = request.param
    return cls()


async def test_ccxt_maps_unified_structures(exchange: FakeCcxt) -> None:
    guard = CcxtGuard(exchange, policy(venue={"maintenance_rate": "0.01"}))
    [info] = (await guard._fetch_markets()).values()
    assert (info.symbol, info.tick_size, info.lot_size, info.min_qty) == (
        CCXT_BTC,
        "0.1",
        "0.001",
        "0.001",
    )
    assert (info.max_qty, info.market_max_qty, info.min_notional) == ("1000", "120", "100")
    assert (info.maker_fee, info.taker_fee, info.default_leverage) == ("0.0002", "0.0005", 10)
    [bracket] = info.brackets
    assert (bracket.max_leverage, bracket.maintenance_rate) == (125, "0.01")
    account = await guard._fetch_account()
    [pos] = account.positions
    assert (pos.market, pos.size, pos.entry_price, pos.mark, pos.leverage) == (
        CCXT_BTC,
        "-0.5",
        "60100",
        "60000",
        30,
    )
    assert (pos.unrealized_pnl, pos.initial_margin, pos.maintenance_margin) == (
        "50",
        "1000",
        "300",
    )
    assert (account.equity, account.collateral, account.available) == ("10050", "10000", "9000")
    assert (account.position_margin, account.order_margin) == ("1000", "50")
    [order] = await guard._fetch_open_orders(CCXT_BTC)
    assert (order.order_id, order.side, order.price, order.remaining_qty) == (
        8123,
        "BUY",
        "59000",
        "0.15",
    )
    book = await guard._fetch_book(CCXT_BTC)
    assert (book.bids, book.asks[1], book.seq) == ([("59990", "1.5")], ("60020.5", "1"), 7)


async def test_ccxt_allowed_rejected_and_cached(exchange: FakeCcxt) -> None:
    clock = Clock()
    checker = FakeChecker()
    pol = policy(size={"max_qty": {CCXT_BTC: "1"}}, cache_ttl_s=10)
    guard = CcxtGuard(exchange, pol, checker=checker, clock=clock)
    result = await guard.create_order(
        CCXT_BTC, "limit", "buy", 0.1, 59000.0, {"timeInForce": "GTC"}
    )
    assert result["amount"] == 0.1
    call = [c for c in exchange.calls if c[0] == "create_order"]
    assert call == [
        ("create_order", CCXT_BTC, "limit", "buy", 0.1, 59000.0, {"timeInForce": "GTC"})
    ]
    assert checker.calls[0]["marks"] == {CCXT_BTC: Decimal("60000")}
    with pytest.raises(LimitExceeded, match="MAX_QTY"):
        await guard.create_order(CCXT_BTC, "limit", "sell", 2, 60100.0)
    assert exchange.count("create_order") == 1
    with pytest.raises(LimitExceeded, match=r"not a multiple of 0\.001"):
        await guard.create_order(CCXT_BTC, "limit", "sell", 0.0001, 60100.0)
    # Markets and marks cached; the account refetched only after the placement.
    counts = {n: exchange.count(n) for n in ("load_markets", "fetch_balance", "fetch_ticker")}
    assert counts == {"load_markets": 1, "fetch_balance": 2, "fetch_ticker": 1}
    clock.now += 10
    with pytest.raises(LimitExceeded):
        await guard.create_order(CCXT_BTC, "market", "sell", 2)
    assert exchange.count("fetch_balance") == 3 and exchange.count("fetch_ticker") == 2
    assert exchange.count("fetch_order_book") == 1 and exchange.count("load_markets") == 1
    await guard.cancel_order("8123", CCXT_BTC)
    await guard.cancel_all_orders(CCXT_BTC)
    assert exchange.count("cancel_order") == exchange.count("cancel_all_orders") == 1


async def test_ccxt_resize_refusal_and_kill_switch(exchange: FakeCcxt) -> None:
    checker = FakeChecker("resize", "0.25", Reason("AVAILABLE", "too big"))
    guard = CcxtGuard(
        exchange, policy(resize="resize", kill_switch={"max_rejections": 2}), checker=checker
    )
    await guard.create_order(CCXT_BTC, "limit", "buy", 1, 59000)
    assert exchange.calls[-1][4] == 0.25
    checker.decision = "reject"
    with pytest.raises(RiskRejected, match="AVAILABLE: too big"):
        await guard.create_order(CCXT_BTC, "limit", "buy", 1, 59000)
    checker.decision = "allow"
    exchange.refuse = True
    with pytest.raises(InvalidOrderError):
        await guard.create_order(CCXT_BTC, "limit", "buy", 0.1, 59000)
    assert guard.status().why == "2 rejections within 60 s (max 2; last: InvalidOrder)"
    exchange.refuse = False
    with pytest.raises(KillSwitchTripped):
        await guard.create_order(CCXT_BTC, "limit", "buy", 0.1, 59000)
    await guard.cancel_all_orders(CCXT_BTC)  # never blocked
    guard.reset()
    await guard.create_order(CCXT_BTC, "limit", "buy", 0.1, 59000)
    assert exchange.count("create_order") == 3


BINANCE_TIERS = [  # ccxt's unified leverage tiers (floats, as ccxt gives them)
    {"tier": 2, "minNotional": 50000, "maxNotional": 600000.0, "maxLeverage": 100,
     "maintenanceMarginRate": 0.005},
    {"tier": 1, "minNotional": 0, "maxNotional": 50000.0, "maxLeverage": 125,
     "maintenanceMarginRate": 0.004},
    {"tier": 3, "minNotional": 600000, "maxNotional": 3000000.0, "maxLeverage": 75,
     "maintenanceMarginRate": 0.0065},
]  # fmt: skip


class TieredCcxt(FakeCcxt):
    def __init__(self, tiers: Any = BINANCE_TIERS, fail: bool = False) -> None:
        super().__init__()
        self.has = {"fetchLeverageTiers": True}
        self.tiers = tiers
        self.fail = fail

    def fetch_leverage_tiers(self) -> dict[str, Any]:
        self._log("fetch_leverage_tiers")
        if self.fail:
            raise RuntimeError("venue down")
        return {CCXT_BTC: self.tiers}


async def test_ccxt_uses_the_venues_leverage_tiers() -> None:
    exchange = TieredCcxt()
    guard = CcxtGuard(exchange, policy())
    [info] = (await guard._markets()).values()
    got = [
        (b.notional_cap, b.max_leverage, b.maintenance_rate, b.maintenance_amount)
        for b in info.brackets
    ]
    # maintenance amounts keep MM continuous at each edge: 50,000 x 0.001; + 600,000 x 0.0015
    assert got == [
        ("50000", 125, "0.004", "0"),
        ("600000", 100, "0.005", "50"),
        ("3000000", 75, "0.0065", "950"),
    ]
    account = await guard._fetch_account()
    assert account.positions[0].leverage == 30  # under tier one's 125x: kept as reported
    assert exchange.count("fetch_leverage_tiers") == 1
    # the tiered checker sees MM = 0.4% of 30,000 = 120 (the conservative default: 2.5% = 750)
    from perpbot.risk import MarketRules, Portfolio, RiskChecker

    checker = RiskChecker({CCXT_BTC: MarketRules.from_market_info(info)})
    state = checker.evaluate(Portfolio.from_models(account), marks={CCXT_BTC: Decimal(60000)})
    assert state.metrics.maintenance_margin == Decimal(120)


@pytest.mark.parametrize(
    ("exchange", "why"),
    [
        (TieredCcxt(fail=True), "fetch fails"),
        (TieredCcxt(tiers=[{"maxNotional": 5e4, "maxLeverage": 125}]), "no rate"),
        (
            TieredCcxt(
                tiers=[
                    {"maxNotional": 5e4, "maxLeverage": 125, "maintenanceMarginRate": 0.01},
                    {"maxNotional": 1e5, "maxLeverage": 50, "maintenanceMarginRate": 0.005},
                ]
            ),
            "rates decrease",
        ),
        (TieredCcxt(), "turned off"),
    ],
)
async def test_ccxt_falls_back_to_the_conservative_bracket(exchange: TieredCcxt, why: str) -> None:
    venue: dict[str, Any] = {"maintenance_rate": "0.01"}
    if why == "turned off":
        venue["leverage_tiers"] = False
    guard = CcxtGuard(exchange, policy(venue=venue))
    [info] = (await guard._fetch_markets()).values()
    [bracket] = info.brackets
    assert (bracket.max_leverage, bracket.maintenance_rate) == (125, "0.01"), why


def test_the_documented_policy_file_loads(tmp_path: Path) -> None:
    """docs/risk.md's example policy is a valid policy (unknown keys would be refused)."""
    text = (Path(__file__).parents[2] / "docs" / "risk.md").read_text()
    block = text.split("```toml\n# risk-policy.toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "risk-policy.toml"
    path.write_text(block)
    loaded = GuardPolicy.from_toml(path)
    assert loaded.venue.leverage_tiers is True
    assert loaded.venue.maintenance_rate == Decimal("0.025")
