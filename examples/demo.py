"""``make demo``: a time-warped crash, one bot guarded and one not, in about a minute.

The sandbox exchange starts in this process on a free 127.0.0.1 port, with its simulated market
(a liquidity agent quoting a deep book, small random flow) and its clock under the admin API's
control. Two bots connect with the ``perpbot`` SDK, over signed REST and WebSocket like any
client, and run the same strategy: go long 4 BTC at 20x with 13,000 USDT, buy the dip. One
sends its orders through ``perpbot.guard.Guard`` (liquidation at least 3 daily sigmas away,
kill switch after 3 refusals); the other does not.

The admin API then drives a crash: the three index sources are pinned 0.2% lower every 10
simulated seconds until spot is 5% down, and held there. The demo prints what the bots see:
the guard resizing and refusing, its kill switch tripping, and every step of the unguarded
bot's partial liquidation as it arrives on its ``liquidations`` channel (quantity closed,
mark, bankruptcy price, fee, size left, the margin ratio that triggered it). It ends with a
summary and a report, ``reports/demo/report.md``, with PNG charts: mark vs index vs last, both
bots' equity and margin ratio, and the liquidation steps. Everything it started is stopped
before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal
from pathlib import Path

from examples.tutorials.t07_pre_trade_guard import (
    COLLATERAL,
    CRASH_STEPS,
    DROP,
    HOLD_STEPS,
    STEP_MS,
    WANT,
    Story,
    crash_story,
    story_charts,
)

REPORT_DIR = Path("reports/demo")


def write_report(story: Story, out: Path, charts: tuple[Path, ...]) -> Path:
    """``report.md``: what happened, with the exchange's numbers and the charts."""
    lines = [
        "# perpbot demo: a guarded and an unguarded bot in the same crash",
        "",
        f"Sandbox {story.url}; BTC-PERP index pinned {DROP:.0%} lower over "
        f"{CRASH_STEPS * STEP_MS // 1000} simulated seconds, then held for "
        f"{HOLD_STEPS * STEP_MS // 1000} s. Each bot: {COLLATERAL} USDT, wants {WANT} BTC "
        "long at 20x and buys the dip.",
        "",
        "| | unguarded | guarded |",
        "|---|---:|---:|",
        f"| BTC bought | {story.entry['unguarded']} | {story.entry['guarded']} |",
        f"| liquidation price at entry | {story.liquidation_price['unguarded']} | "
        f"{story.liquidation_price['guarded']} |",
        f"| orders refused | {len(story.refusals['unguarded'])} (exchange) | "
        f"{len(story.refusals['guarded'])} (guard) |",
        f"| liquidation steps | {len(story.steps)} | {story.guarded_steps} |",
        f"| position at the end | {story.final_size['unguarded']} | "
        f"{story.final_size['guarded']} |",
        f"| equity at the end (USDT) | {story.final_equity['unguarded']:,.2f} | "
        f"{story.final_equity['guarded']:,.2f} |",
        "",
        f"Kill switch: {story.kill_switch or 'not tripped'}.",
        "",
        "## The unguarded bot's liquidation steps",
        "",
        "| step | closed BTC | mark | bankruptcy price | fee USDT | BTC left | ratio before |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in story.steps:
        ratio = "-" if s.margin_ratio is None else f"{s.margin_ratio:.1%}"
        lines.append(
            f"| {s.number} | {s.qty} | {s.mark} | {s.bankruptcy_price} | {s.fee:.2f} | "
            f"{s.remaining} | {ratio} |"
        )
    lines += ["", "## Charts", ""]
    lines += [f"![{path.stem}]({path.name})" for path in charts]
    report = out / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


async def main(seconds: float = 50.0, out: Path = REPORT_DIR) -> Story:
    """Run the story, spreading its clock steps over about ``seconds`` of wall time (0: as
    fast as possible), and write the report to ``out``."""
    pace = max(0.0, seconds) / (CRASH_STEPS + HOLD_STEPS)
    story = await crash_story(print, pace_s=pace)
    print("sandbox stopped; everything the demo started has exited")
    charts = story_charts(story, out, "perpbot demo")
    report = write_report(story, out, charts)
    closed = sum((s.qty for s in story.steps), Decimal(0))
    print("\nSummary")
    print(
        f"  unguarded: {story.entry['unguarded']} BTC, liquidated in {len(story.steps)} steps "
        f"({closed} BTC closed), equity {story.final_equity['unguarded']:,.2f} USDT"
    )
    print(
        f"  guarded:   {story.entry['guarded']} BTC (resized by the guard), "
        f"{len(story.refusals['guarded'])} orders refused, kill switch "
        f"{'tripped' if story.kill_switch else 'armed'}, liquidation steps "
        f"{story.guarded_steps}, equity {story.final_equity['guarded']:,.2f} USDT"
    )
    print(f"  report: {report}")
    for path in charts:
        print(f"  chart:  {path}")
    return story


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=50.0, help="wall time to spread the crash over"
    )
    parser.add_argument("--out", type=Path, default=REPORT_DIR, help="report directory")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.out))
