"""``perpbot-sandbox scenario NAME [--out DIR] [--seed N] [--quick] [--list]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import SCENARIOS
from .runner import get_scenario, run_scenario


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perpbot-sandbox scenario",
        description="Run a scripted, seeded scenario against an in-process sandbox in "
        "accelerated time and write its report (report.md + PNG charts).",
    )
    parser.add_argument("name", nargs="?", help="scenario name (see --list)")
    parser.add_argument("--out", help="report directory (default: reports/NAME)")
    parser.add_argument("--seed", type=int, default=1, help="market seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="short parameters (as the tests)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    """Run one scenario; exit status 0 if every check held, 1 if not, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in SCENARIOS:
            scen = get_scenario(name)
            print(f"{name:18} {scen.title}")
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print("perpbot-sandbox scenario: give a NAME or --list", file=sys.stderr)
        return 2
    if args.name not in SCENARIOS:
        print(
            f"perpbot-sandbox scenario: unknown scenario {args.name!r}; "
            f"known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    out = args.out or f"reports/{args.name}"
    result = asyncio.run(
        run_scenario(
            args.name,
            quick=args.quick,
            seed=args.seed,
            out_dir=out,
            progress=None if args.no_progress else sys.stderr,
        )
    )
    print(f"{result.name}: {result.sim_ms / 60_000:.1f} simulated minutes in {result.wall_s:.1f} s")
    for name, ok in result.checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"report: {result.report_dir}/report.md")
    return 0 if result.passed else 1
