"""A scenario's report: ``report.md`` (parameters, findings, checks, timeline) plus PNG charts.

Charts (all via :mod:`sandbox.charts`): ``prices.png`` (mark vs index vs last per market),
``accounts.png`` (equity and margin ratio per actor), ``liquidations.png`` (liquidation steps
against the mark), ``funding.png`` (cumulative funding paid per actor) and ``insurance.png``
(insurance fund per market). The x axis is simulated minutes since the start of the run.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.charts import Chart, Marker, Panel, Series, save_chart

from .base import Scenario
from .runner import Recorder

CHART_FILES = ("prices.png", "accounts.png", "liquidations.png", "funding.png", "insurance.png")


def _pairs(xs: list[float], ys: list[Decimal | None]) -> tuple[list[float], list[float]]:
    kept = [(x, float(y)) for x, y in zip(xs, ys, strict=False) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _floats(ys: list[Decimal]) -> list[float]:
    return [float(y) for y in ys]


def _markers(rec: Recorder, unit: int, market: str | None = None) -> list[Marker]:
    out = [Marker((ts - rec.t0) / unit, "script event", "#7f7f7f") for ts, _ in rec.notes]
    seen: set[tuple[str, int]] = set()
    for e in rec.liquidations:
        if e.kind != "step" or (market is not None and e.market != market):
            continue
        key = (e.actor, e.ts // 60_000)
        if key not in seen:
            seen.add(key)
            out.append(Marker((e.ts - rec.t0) / unit, "liquidation", "#d62728"))
    return out


def charts(rec: Recorder, title: str) -> dict[str, Chart]:
    """The five charts of a run (see the module doc); runs over two days are drawn in days."""
    span = rec.minutes(rec.times[-1]) if rec.times else 0.0
    days = span > 2 * 1440
    unit = 86_400_000 if days else 60_000
    xlabel = f"simulated time ({'days' if days else 'minutes'})"

    def x(ts: int) -> float:
        return (ts - rec.t0) / unit

    xs = [x(t) for t in rec.times]
    price_panels = []
    for m in rec.markets:
        lx, ly = _pairs(xs, rec.last.get(m, []))
        price_panels.append(
            Panel(
                f"{m}: mark vs index vs last",
                "USDT",
                [
                    Series("index", xs, _floats(rec.index[m])),
                    Series("mark", xs, _floats(rec.mark[m])),
                    Series("last", lx, ly, dashed=True),
                ],
                markers=_markers(rec, unit, m),
            )
        )
    equity_series = []
    ratio_series = []
    for name in rec.equity:
        ex, ey = _pairs(xs, rec.equity[name])
        equity_series.append(Series(name, ex, ey))
        rx, ry = _pairs(xs, rec.margin_ratio[name])
        ratio_series.append(Series(name, rx, ry))
    accounts = Chart(
        f"{title}: accounts",
        [
            Panel("equity", "USDT", equity_series, markers=_markers(rec, unit)),
            Panel(
                "margin ratio (maintenance / equity)",
                "",
                ratio_series,
                hlines=[(1.0, "liquidation at 1")],
                markers=_markers(rec, unit),
            ),
        ],
        xlabel,
    )
    liq_panels = []
    for m in rec.markets:
        steps = [e for e in rec.liquidations if e.kind == "step" and e.market == m]
        series = [Series("mark", xs, _floats(rec.mark[m]), color="#1f77b4")]
        for actor in sorted({e.actor for e in steps}):
            mine = [e for e in steps if e.actor == actor]
            series.append(
                Series(
                    f"{actor} liquidation step",
                    [x(e.ts) for e in mine],
                    [float(e.details.get("mark", "0")) for e in mine],
                    kind="scatter",
                )
            )
        title_m = f"{m}: liquidation steps ({len(steps)})" if steps else f"{m}: no liquidations"
        liq_panels.append(Panel(title_m, "USDT", series))
    funding_series = []
    for name, payments in rec.funding.items():
        total = Decimal(0)
        fx: list[float] = [0.0]
        fy: list[float] = [0.0]
        for ts, amount in payments:
            total += amount
            fx.append(x(ts))
            fy.append(float(total))
        if xs:
            fx.append(xs[-1])
            fy.append(float(total))
        funding_series.append(Series(name, fx, fy, kind="step"))
    insurance = [Series(m, xs, _floats(rec.insurance[m]), kind="step") for m in rec.markets]
    return {
        "prices.png": Chart(f"{title}: prices", price_panels, xlabel),
        "accounts.png": accounts,
        "liquidations.png": Chart(f"{title}: liquidation events", liq_panels, xlabel),
        "funding.png": Chart(
            f"{title}: funding",
            [Panel("cumulative funding paid (+ paid, - received)", "USDT", funding_series)],
            xlabel,
        ),
        "insurance.png": Chart(
            f"{title}: insurance fund",
            [Panel("insurance fund balance", "USDT", insurance, markers=_markers(rec, unit))],
            xlabel,
        ),
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def write_report(
    out_dir: Path,
    scenario: Scenario,
    params: dict[str, Any],
    seed: int,
    findings: dict[str, Any],
    checks: dict[str, bool],
    rec: Recorder,
) -> tuple[Path, ...]:
    """Write ``report.md`` and the PNG charts into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, chart in charts(rec, scenario.title).items():
        files.append(save_chart(chart, out_dir / name))
    passed = all(checks.values())
    lines = [
        f"# Scenario: {scenario.title} (`{scenario.name}`)",
        "",
        scenario.description,
        "",
        f"Seed {seed}; {_cell(findings.get('simulated_ms', 0) / 60_000)} simulated minutes in "
        f"{findings.get('wall_seconds')} s of wall time. "
        f"Result: **{'all checks held' if passed else 'some checks failed'}**.",
        "",
        "## Checks",
        "",
        "| check | expectation | held |",
        "|---|---|---|",
    ]
    for name, ok in checks.items():
        lines.append(
            f"| `{name}` | {_cell(scenario.expectations.get(name, ''))} | {'yes' if ok else 'NO'} |"
        )
    lines += ["", "## Findings", "", "| finding | value |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in findings.items()]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in params.items()]
    if rec.notes:
        lines += ["", "## Timeline (simulated minutes)", ""]
        lines += [f"- {rec.minutes(ts):.2f}: {label}" for ts, label in rec.notes]
    steps = [e for e in rec.liquidations if e.kind in ("started", "step", "finished")]
    if steps:
        lines += [
            "",
            "## Liquidation events",
            "",
            "| minute | actor | market | kind | qty | mark | equity | maintenance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in steps[:40]:
            d = e.details
            lines.append(
                f"| {rec.minutes(e.ts):.2f} | {e.actor} | {e.market or ''} | {e.kind} | "
                f"{d.get('qty', '')} | {d.get('mark', '')} | {d.get('equity', '')} | "
                f"{d.get('maintenance_margin', '')} |"
            )
        if len(steps) > 40:
            lines.append(f"| ... | {len(steps) - 40} more | | | | | | |")
    lines += ["", "## Charts", ""]
    for f in files:
        lines += [f"![{f.stem}]({f.name})", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return (report, *files)
