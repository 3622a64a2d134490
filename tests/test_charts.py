from pathlib import Path

from sandbox.charts import Chart, Marker, Panel, Series, save_chart


def test_save_chart_writes_a_png_deterministically(tmp_path: Path) -> None:
    chart = Chart(
        "crash",
        [
            Panel(
                "prices",
                "USDT",
                [
                    Series("mark", [0, 1, 2], [100, 90, 95]),
                    Series("index", [0, 1, 2], [100, 92, 94], kind="step"),
                ],
                markers=[Marker(1, "liquidation"), Marker(1.5, "liquidation")],
                hlines=[(91, "liq price")],
            ),
            Panel("fills", series=[Series("qty", [0.5, 1.5], [1, 2], kind="bar")]),
        ],
    )
    a = save_chart(chart, tmp_path / "a" / "chart.png")
    b = save_chart(chart, tmp_path / "b.png")
    data = a.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
    assert data == b.read_bytes()
