"""Memory management: orders and events stay out of the cyclic GC when compiled, and a dropped
exchange is freed all the same (its finalizer breaks the cycles that run through orders)."""

from __future__ import annotations

import gc
import sys
from collections import Counter
from pathlib import Path

import pytest

from perpbot._native import is_compiled
from sandbox.engine import AmendOrder, CancelOrder, Exchange, Rejected, default_instruments
from sandbox.engine.accounts import Account, Position
from sandbox.engine.book import Level, Order

from .conftest import BTC, BTC_MARK, BUY, ETH, SELL, make_exchange, ok, open_position, rest

TRACKED_TYPES = (Account, Position, Level, Exchange)


def _tracked() -> Counter[str]:
    """How many objects of the engine's GC-tracked types are alive."""
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, TRACKED_TYPES))


def _busy_exchange() -> tuple[Exchange, Order]:
    """An exchange with resting orders in two markets, positions, and finished orders (filled,
    cancelled, amended) in the accounts' recent history; and one of its resting orders."""
    ex = make_exchange()
    open_position(ex, "alice", BUY, 5)
    for i in range(5):
        rest(ex, "alice", BUY, 2, BTC_MARK - 10 - i, client_id=f"b{i}")
        rest(ex, "bob", SELL, 2, BTC_MARK + 10 + i)
    eth_order = rest(ex, "bob", SELL, 30, 310_000, ETH)
    cancelled = rest(ex, "alice", BUY, 2, BTC_MARK - 50)
    ok(ex.submit(CancelOrder("alice", BTC, order_id=cancelled)))
    amended = rest(ex, "bob", SELL, 2, BTC_MARK + 50)
    ok(ex.submit(AmendOrder("bob", BTC, order_id=amended, price=BTC_MARK + 60)))
    order = ex.get_order("bob", order_id=eth_order)
    assert order is not None and order.live
    return ex, order


def test_orders_are_kept_out_of_the_cyclic_gc_when_compiled() -> None:
    ex, order = _busy_exchange()
    assert gc.is_tracked(order) is (not is_compiled())
    assert gc.is_tracked(ex.accounts["bob"])  # everything else is tracked as usual


def test_events_are_kept_out_of_the_cyclic_gc_when_compiled() -> None:
    ex = make_exchange()
    events = open_position(ex, "alice", BUY, 5) + ex.submit(CancelOrder("alice", BTC, order_id=99))
    assert {type(e).__name__ for e in events} >= {"OrderAccepted", "Trade", "Rejected"}
    assert isinstance(events[-1], Rejected) and events[-1].details == {}
    for event in events:
        assert gc.is_tracked(event) is (not is_compiled()), event


def test_a_dropped_exchange_is_freed() -> None:
    before = _tracked()
    ex, order = _busy_exchange()
    during = _tracked()
    assert during["Exchange"] == before["Exchange"] + 1
    assert during["Account"] > before["Account"] and during["Level"] > before["Level"]
    del ex, order
    assert _tracked() == before


def test_an_order_kept_after_its_exchange_is_dropped_frees_the_rest_with_it() -> None:
    before = _tracked()
    ex, order = _busy_exchange()
    del ex
    after = _tracked()
    assert after["Exchange"] == before["Exchange"]  # the exchange itself is gone
    assert order.account == "bob" and order.remaining == 30  # the order is still readable
    del order
    assert _tracked() == before


def test_an_exchange_that_failed_to_initialize_is_dropped_quietly() -> None:
    class BrokenClock:
        def now_ms(self) -> int:
            raise RuntimeError("no time")

    unraisable: list[object] = []
    previous = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with pytest.raises(RuntimeError, match="no time"):
            Exchange(default_instruments(), clock=BrokenClock())
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []  # its finalizer found nothing to clear, and said nothing


# The compiled layout of an order, as mypyc generated it for this build (next to the sources).
_HEADER = Path(__file__).resolve().parents[2] / "build/mypyc/perpbot/__native__native.h"
# The fields _warm_forgotten reads (the order's first 16 bytes are read taking it from the list).
_WARMED = ("_side", "_live", "_client_id", "_status")


def _order_layout(header: str) -> tuple[dict[str, int], int]:
    """Each field's offset in the compiled order struct, and the struct's size."""
    end = header.index("} sandbox___engine___book___OrderObject;")
    body = header[header.rindex("typedef struct {", 0, end) : end].splitlines()[1:]
    offsets: dict[str, int] = {}
    offset = 16  # PyObject_HEAD: reference count and type
    for line in body:
        decl = line.strip().rstrip(";")
        if decl in ("", "PyObject_HEAD"):
            continue
        ctype, name = decl.rsplit(None, 1)
        size = 1 if ctype == "char" else 8  # chars (bools) or 8-byte words
        offset = -(-offset // size) * size
        offsets[name.lstrip("*")] = offset
        offset += size
    return offsets, -(-offset // 8) * 8


@pytest.mark.skipif(not is_compiled() or not _HEADER.exists(), reason="the compiled layout")
def test_warming_forgotten_orders_reads_every_cache_line_of_each() -> None:
    """_warm_forgotten reads one field in every 64 bytes of an order, whichever 16-byte
    boundary pymalloc starts it at: if fields move, this says which line it would miss."""
    offsets, size = _order_layout(_HEADER.read_text())
    _, order = _busy_exchange()
    assert size == sys.getsizeof(order)  # the header describes the build in use
    read = [0, *(offsets[name] for name in _WARMED)]
    for start in (0, 16, 32, 48):
        lines = set(range(start // 64, (start + size - 1) // 64 + 1))
        assert lines == {(start + at) // 64 for at in read}, (start, offsets)
