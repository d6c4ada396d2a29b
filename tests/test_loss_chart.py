"""Issue 9 item 16: the loss chart's axes on real values (huge, non-positive, long runs, diverged).

The chart is drawn at 100×30 over a scripted run and read back from textual-plot's canvases.
"""

from __future__ import annotations

import math
import re

import pytest
from fakes import ScriptedRun, digits_mid_run
from textual_plot import PlotWidget

from trainmon.engine.core import format as nb
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.chart import nice_ticks
from trainmon.tui.widgets.loss_pane import LossPane


def canvas_rows(plot: PlotWidget, name: str) -> list[str]:
    canvas = plot.query_one(f"#{name}")
    return [canvas.render_line(y).text for y in range(canvas.size.height)]


async def chart(points, *, log: bool = False, size=(100, 30), **snapshot) -> dict:
    """Draw `points` as the run's loss history; the chart's tick labels, limits and text lines."""
    app = TrainmonApp(ScriptedRun(digits_mid_run(global_iteration=int(points[-1][0]), **snapshot), points=points))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.poll_engine()
        if log:
            await pilot.press("l")
        app.draw_chart()
        await pilot.pause(0.1)
        pane = app.query_one(LossPane)
        plot = pane.query_one(PlotWidget)
        x_row = canvas_rows(plot, "margin-bottom")[0]
        return {
            "x_row": x_row,
            "x_labels": x_row.split(),
            "y_labels": [row.strip() for row in canvas_rows(plot, "margin-left") if row.strip()],
            "y_title": canvas_rows(plot, "margin-top")[0].strip(),
            "limits": (plot._y_min, plot._y_max),
            "datasets": len(plot._datasets),
            "values": str(pane.query_one("#loss-values").render()),
        }


def wave(n: int, centre: float, amplitude: float) -> list[tuple[float, float]]:
    return [(i, centre + amplitude * math.sin(i / 7)) for i in range(1, n + 1)]


def assert_apart(x_row: str) -> None:
    """Every x label stands alone: one or more spaces between neighbours."""
    labels = x_row.split()
    assert len(labels) >= 3
    assert len(set(labels)) == len(labels)
    assert all(re.fullmatch(r"\d+(\.\d+)?[kMG]?", label) for label in labels), labels


async def test_loss_near_minus_one_and_a_half_million_gets_distinct_short_labels():
    # the example: a loss near -1.5e6 moving by a few tenths gave six identical, cut-off labels
    c = await chart(wave(300, -1.5e6, 0.3))
    labels = c["y_labels"]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    assert all(len(label) <= 9 for label in labels)
    assert c["y_title"] == "loss + 1.5e6"  # the ticks are loss + 1.5e6
    assert [float(label) for label in labels] == sorted((float(label) for label in labels), reverse=True)
    assert all(-0.3 <= float(label) <= 0.3 for label in labels)


async def test_loss_swinging_around_minus_one_and_a_half_million_needs_no_offset():
    c = await chart(wave(300, -1.5e6, 1e5))
    assert c["y_title"] == "loss"
    assert c["y_labels"] == ["-1.45e6", "-1.50e6", "-1.55e6"]


async def test_log_scale_with_no_positive_loss_says_why_and_draws_linear():
    c = await chart(wave(300, -1.5e6, 1e5), log=True)
    assert "log scale: no loss is > 0 (lowest -1.6e+06), so the chart stays linear" in c["values"].replace("\n", " ")
    assert c["datasets"] == 2 and c["y_title"] == "loss"
    assert all(math.isfinite(v) for v in c["limits"])


async def test_log_scale_leaves_out_non_positive_losses_and_says_how_many():
    points = [(i, 1.0 if i % 10 else -0.5) for i in range(1, 101)]  # 10 of 100 points are below zero
    c = await chart(points, log=True)
    assert "log scale: 10 of 100 points ≤ 0 not drawn" in c["values"]
    assert c["y_title"] == "log10 loss"
    assert all(math.isfinite(v) for v in c["limits"])


@pytest.mark.parametrize("n, expected", [
    # the example, `20004000 6000…` past 10,000 (the history's averaged last point is 11,996.5)
    (12_000, ["2k", "4k", "6k", "8k", "10k"]),
    (1_800, ["500", "1000", "1500"]),  # `10001200 14001600` was seen here: 38 cells hold no more
])
async def test_x_labels_never_run_together(n, expected):
    c = await chart(wave(n, 1.0, 0.5))
    assert_apart(c["x_row"])
    assert c["x_labels"] == expected


async def test_x_labels_of_a_million_iterations_use_a_suffix():
    points = [(i, 1.0 + 0.5 * math.sin(i / 1e5)) for i in range(1, 1_500_001, 1000)]
    c = await chart(points)
    assert_apart(c["x_row"])
    assert c["x_labels"][-1] == "1.4M" and all(label.endswith("M") or label == "0" for label in c["x_labels"])


async def test_x_labels_fit_a_narrow_terminal():
    c = await chart(wave(12_000, 1.0, 0.5), size=(80, 24))
    assert_apart(c["x_row"])


async def test_a_diverged_run_never_shows_best_inf():
    inf = float("inf")
    c = await chart(wave(100, 1.0, 0.5), loss=inf, best_loss=inf, val_loss=inf, best_val_loss=inf)
    assert "best Inf" not in c["values"]
    assert "loss Inf" in c["values"] and "val Inf" in c["values"]
    assert "best Inf" not in c["values"] and "best val Inf" not in c["values"]  # issue 26 item 6: best is an epoch's


async def test_best_is_kept_when_the_last_loss_is_nan():
    c = await chart(wave(100, 1.0, 0.5), loss=float("nan"), best_loss=0.3310, nonfinite_count=3,
                    last_nonfinite_iteration=99)
    assert "loss NaN" in c["values"] and "best val 0.6120" in c["values"]  # issue 26 item 6: best is an epoch's
    assert "NaN/Inf losses: 3, last at iteration 99" in c["values"]


@pytest.mark.parametrize("ticks, kind, labels", [
    ([0, 2000, 4000, 6000, 8000, 10000, 12000], "count", ["0", "2k", "4k", "6k", "8k", "10k", "12k"]),
    ([10000, 12500, 15000], "count", ["10.0k", "12.5k", "15.0k"]),
    ([1.5e6, 2e6, 2.5e6], "count", ["1.5M", "2.0M", "2.5M"]),
    ([200, 400, 600], "count", ["200", "400", "600"]),
    ([-1.6e6, -1.55e6, -1.5e6], "metric", ["-1.60e6", "-1.55e6", "-1.50e6"]),
    ([0.5, 1.0, 1.5], "metric", ["0.5", "1.0", "1.5"]),
    ([0.25, 0.5, 0.75], "metric", ["0.25", "0.50", "0.75"]),
    ([2.2e-8, 2.4e-8], "metric", ["2.2e-8", "2.4e-8"]),
    ([0, 5e5, 1e6], "metric", ["0", "0.5e6", "1.0e6"]),
    ([-1.5e6], "metric", ["-1.5e6"]),
    ([0.1 * 3, 0.1 * 4], "metric", ["0.3", "0.4"]),  # 0.30000000000000004 is 0.3
    ([], "metric", []),
])
def test_tick_labels(ticks, kind, labels):
    assert nb.tick_labels(ticks, kind) == labels


def test_tick_labels_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        nb.tick_labels([1.0], "time")


def test_nice_ticks_take_the_finest_spacing_that_fits():
    assert nice_ticks(1, 67, lambda t: len(t) <= 7) == [10, 20, 30, 40, 50, 60]
    assert nice_ticks(0, 1, lambda t: True, whole=True, most=3) == [0, 1]
    assert nice_ticks(0, 0, lambda t: True) == [] and nice_ticks(0, float("nan"), lambda t: True) == []


async def test_a_wide_terminal_gets_more_x_labels():
    c = await chart(wave(1_800, 1.0, 0.5), size=(160, 40))
    assert_apart(c["x_row"])
    assert c["x_labels"] == ["200", "400", "600", "800", "1000", "1200", "1400", "1600", "1800"]
