"""``perpbot-sandbox bands``: chart a running sandbox's liquidation bands as a PNG.

Fetches ``GET /v1/markets/{market}/liquidation-bands`` and draws two panels over price: the
notional that would be liquidated in each price bucket (longs below the mark, shorts above),
and the cumulative forced flow against the cumulative book depth it would meet, with the
shortfall prices marked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from sandbox.charts import Chart, Marker, Panel, Series, save_chart


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perpbot-sandbox bands",
        description="Chart liquidation prices against book depth (PNG) for a running sandbox.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8765", help="the sandbox's base URL")
    p.add_argument("--market", default="BTC-PERP", help="market symbol (default BTC-PERP)")
    p.add_argument("--out", default="bands.png", help="PNG file to write (default bands.png)")
    p.add_argument("--buckets", type=int, default=60, help="price buckets (2..400)")
    p.add_argument("--range", default="0.15", help="half-width around the mark (fraction)")
    p.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    return p


def fetch_bands(url: str, market: str, buckets: int, span: str, timeout: float) -> Any:
    """The band map from the sandbox (raises ``RuntimeError`` with the server's message)."""
    r = httpx.get(
        f"{url.rstrip('/')}/v1/markets/{market}/liquidation-bands",
        params={"buckets": buckets, "range": span},
        timeout=timeout,
    )
    if r.status_code != 200:
        try:
            body = r.json()
            msg = f"{body.get('code')}: {body.get('message')}"
        except ValueError:
            msg = r.text[:200]
        raise RuntimeError(f"HTTP {r.status_code} {msg}")
    return r.json()


def bands_chart(data: Any) -> Chart:
    """The chart of one band map (floats only for drawing)."""
    bands = data["bands"]
    mid = [(float(b["low"]) + float(b["high"])) / 2 for b in bands]
    mark = float(data["mark"])
    below = [i for i, x in enumerate(mid) if x <= mark]
    above = [i for i, x in enumerate(mid) if x >= mark]
    markers = [Marker(mark, "mark", "#555555")]
    for key, label in (
        ("long_shortfall", "long shortfall"),
        ("short_shortfall", "short shortfall"),
    ):
        gap = data.get(key)
        if gap is not None:
            markers.append(Marker(float(gap["price"]), label))
    width = float(data["bucket_size"])
    notional = Panel(
        "notional liquidated at each price (USDT)",
        "USDT",
        (
            Series(
                "longs",
                mid,
                [float(b["long_notional"]) for b in bands],
                "bar",
                "#d62728",
                width=width,
            ),
            Series(
                "shorts",
                mid,
                [float(b["short_notional"]) for b in bands],
                "bar",
                "#1f77b4",
                width=width,
            ),
        ),
        markers,
    )
    flow = Panel(
        "cumulative forced flow vs book depth from the mark",
        "quantity",
        (
            Series(
                "forced sells (longs)",
                [mid[i] for i in below],
                [float(bands[i]["cum_forced_sell"]) for i in below],
                "step",
                "#d62728",
            ),
            Series(
                "bid depth",
                [mid[i] for i in below],
                [float(bands[i]["cum_bid_depth"]) for i in below],
                "step",
                "#d62728",
                dashed=True,
            ),
            Series(
                "forced buys (shorts)",
                [mid[i] for i in above],
                [float(bands[i]["cum_forced_buy"]) for i in above],
                "step",
                "#1f77b4",
            ),
            Series(
                "ask depth",
                [mid[i] for i in above],
                [float(bands[i]["cum_ask_depth"]) for i in above],
                "step",
                "#1f77b4",
                dashed=True,
            ),
        ),
        markers,
    )
    return Chart(
        f"{data['market']} liquidation bands at mark {data['mark']}",
        (notional, flow),
        xlabel="price",
        notes=(
            f"{data['positions']} positions; bucket {data['bucket_size']}; "
            f"long open {data['long_open']}, short open {data['short_open']}",
        ),
    )


def main(argv: list[str]) -> int:
    """Entry point of ``perpbot-sandbox bands``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        data = fetch_bands(args.url, args.market, args.buckets, args.range, args.timeout)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"perpbot-sandbox bands: {exc}", file=sys.stderr)
        return 1
    out = save_chart(bands_chart(data), Path(args.out))
    print(f"wrote {out}")
    return 0
