"""Issue 26 items 1, 2, 3, 12 and the sparkline of item 10: what the loss chart and the memory sparkline
show, read back from the screen the app exports (SVG) at 80×24, 100×30 and 160×45, and with NO_COLOR.
"""

from __future__ import annotations

import html
import math
import re

import pytest
from fakes import ScriptedRun, digits_mid_run
from textual.widgets import Sparkline

from trainmon.engine.core import messages as msg
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.devices_pane import DevicesPane

SIZES = [(80, 24), (100, 30), (160, 45)]
BRAILLE = {chr(c) for c in range(0x2801, 0x2900)}
QUADRANT = set("▖▗▘▝▀▄▌▐▚▞▙▛▜▟")
CELL = re.compile(r'<text class="(terminal-[\w-]*r\d+)" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
                  r'clip-path="url\(#terminal-[\w-]*line-(\d+)\)">([^<]*)</text>')
X_TITLE = re.compile(r"│ +global iteration +│")  # the chart's x-axis title, not the Progress pane's line
FILL = re.compile(r"\.(terminal-[\w-]*r\d+) \{ fill: (#[0-9a-f]{6})")


def screen(svg: str) -> dict[tuple[int, int], tuple[str, str]]:
    """(row, column) → (character, fill colour) of every visible cell in a Textual SVG screenshot."""
    fills = dict(FILL.findall(svg))
    cells = {}
    for cls, x, row, text in CELL.findall(svg):
        col = round(float(x) / 12.2)
        for i, ch in enumerate(html.unescape(text).replace("\xa0", " ")):
            cells[(int(row), col + i)] = (ch, fills.get(cls, ""))
    return cells


def epoch_end(epoch: int, epochs: int, at: int, val: float) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=epochs, iterations=45, iterations_planned=45, steps=45,
                          samples_seen=1437 * epoch, train_loss=val, val_loss=val, val_metrics={}, batch_size=32,
                          accum=1, lr=0.05, elapsed=epoch * 2.0, global_iteration=at, global_step=at)


def three_epochs() -> ScriptedRun:
    """The digits job over 3 epochs of 45 iterations, a validation point per epoch, b 32→64 at epoch 2,
    k 1→2 in epoch 3, a NaN loss at iteration 70."""
    points = [(i, 2.0 * math.exp(-i / 30) + 0.3 + 0.1 * math.sin(i)) for i in range(1, 136)]
    points[69] = (70, float("nan"))
    events = [epoch_end(1, 3, 45, 0.9), msg.BatchSizeChanged(old=32, new=64, epoch=2, global_iteration=46),
              epoch_end(2, 3, 90, 0.5), msg.AccumChanged(old=1, new=2, epoch=3, global_iteration=100),
              epoch_end(3, 3, 135, 0.45)]
    return ScriptedRun(digits_mid_run(global_iteration=135, epoch=3, epochs=3, nonfinite_count=1,
                                      last_nonfinite_iteration=70), points=points, events=events)


async def shot(run: ScriptedRun, size: tuple[int, int]) -> tuple[TrainmonApp, str]:
    app = TrainmonApp(run)
    async with app.run_test(size=size) as pilot:
        app.animation_level = "none"
        await pilot.pause()
        app.poll_engine()
        app.draw_chart()
        await pilot.pause(0.1)
        return app, app.export_screenshot()


def split(cells: dict) -> tuple[dict, dict]:
    """The legend's cells (column → cell) and the chart's ((row, column) → cell: inside the Loss pane, from
    below its title to above the x-axis title)."""
    rows: dict[int, dict[int, str]] = {}
    for (row, col), (ch, _) in cells.items():
        rows.setdefault(row, {})[col] = ch

    def text(row: int) -> str:
        return "".join(rows[row].get(c, " ") for c in range(max(rows[row]) + 1))

    legend_row = next(r for r in sorted(rows) if "train" in text(r) and "val" in text(r))
    line = text(legend_row)
    right = line.rindex("│")
    first = line.rindex("│", 0, line.index("train")) + 2  # the Loss pane's border and padding
    top = max(r for r in rows if r < legend_row and "Loss" in text(r))
    bottom = next(r for r in sorted(rows) if top < r < legend_row and X_TITLE.search(text(r)))
    legend = {col: cells[(legend_row, col)] for col in range(first, right) if (legend_row, col) in cells}
    chart = {(row, col): cell for (row, col), cell in cells.items() if top < row < bottom and first <= col < right}
    return legend, chart


def swatches(legend: dict) -> dict[str, tuple[str, str]]:
    """Legend word → (glyph, fill) of the swatch just before it."""
    cols = sorted(legend)
    text = "".join(legend[c][0] for c in cols)
    out = {}
    for m in re.finditer(r"(\S)([a-zA-Z/]+)", text):
        out[m.group(2)] = legend[cols[m.start(1)]]
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n", [1557, 3105])
async def test_x_tick_labels_are_whole_or_absent(size, n):
    # item 1: at 80×24 the last label was cut, `1000 2000 300` for 3000
    points = [(i, 1.0 + 0.5 * math.sin(i / 40)) for i in range(1, n + 1)]
    _, svg = await shot(ScriptedRun(digits_mid_run(global_iteration=n), points=points), size)
    cells = screen(svg)
    lines = ["".join(cells.get((r, c), (" ",))[0] for c in range(size[0])) for r in range(size[1])]
    title = next(r for r, line in enumerate(lines) if X_TITLE.search(line))
    left = lines[title].rindex("│", 0, lines[title].index("global iteration"))
    text = lines[title - 2][left + 1:lines[title - 2].index("│", left + 1)]
    labels = [float(t) for t in text.split()]
    assert len(labels) >= 2, text
    steps = {b - a for a, b in zip(labels, labels[1:])}
    assert len(steps) == 1 and steps.pop() > 0, text  # evenly spaced: no cut label among them
    assert labels[-1] <= n


@pytest.mark.parametrize("size", SIZES)
async def test_every_mark_has_its_legend_colour(size):
    # item 2: one colour table feeds chart and legend (the b/k swatch was purple, its marks pink-red)
    _, svg = await shot(three_epochs(), size)
    legend, chart = split(screen(svg))
    keys = swatches(legend)
    found = {"train": set(), "smoothed": set(), "val": set(), "NaN": set()}
    for ch, fill in chart.values():
        kind = ("train" if ch in BRAILLE else "smoothed" if ch in QUADRANT else "val" if ch == "◆"
                else "NaN" if ch == keys["NaN"][0] else None)
        if kind:
            found[kind].add(fill)
    for kind, fills in found.items():
        assert fills == {keys[kind][1]}, (kind, fills, keys[kind])
    change = next(word for word in keys if word.startswith("b/k"))
    marks = {fill for ch, fill in chart.values() if ch == keys[change][0]}
    assert marks == {keys[change][1]}


@pytest.mark.parametrize("size", SIZES)
async def test_every_validation_point_shows(size):
    # item 3: a 3-epoch run showed 2 of 3 ◆ (the last one, at the chart's right edge, lay under the frame)
    _, svg = await shot(three_epochs(), size)
    _, chart = split(screen(svg))
    assert sum(ch == "◆" for ch, _ in chart.values()) == 3


@pytest.mark.parametrize("size", SIZES)
async def test_batch_size_and_accumulation_markers_carry_their_label(size):
    # item 2: `b 32→64` and `k 1→2` were the same bare line
    _, svg = await shot(three_epochs(), size)
    legend, chart = split(screen(svg))
    rows = {}
    for (row, col), (ch, _) in sorted(chart.items()):
        rows.setdefault(row, {})[col] = ch
    text = "\n".join("".join(cols.get(c, " ") for c in range(min(cols), max(cols) + 1)) for cols in rows.values())
    assert "b 32→64" in text and "k 1→2" in text, text


async def test_many_validation_points_leave_the_training_line_visible():
    # item 3: 200 epochs drew a ◆ in every column, along the bottom, over the training line
    epochs, per = 200, 45
    points = [(i, 0.3 + 0.05 * math.sin(i / 3)) for i in range(1, epochs * per + 1)]
    events = [epoch_end(e, epochs, e * per, 0.3) for e in range(1, epochs + 1)]
    run = ScriptedRun(digits_mid_run(global_iteration=epochs * per, epoch=epochs, epochs=epochs), points=points,
                      events=events)
    _, svg = await shot(run, (100, 30))
    _, chart = split(screen(svg))
    diamonds = sorted(col for (_, col), (ch, _) in chart.items() if ch == "◆")
    line_cols = {col for (_, col), (ch, _) in chart.items() if ch in BRAILLE or ch in QUADRANT}
    assert 3 <= len(diamonds) <= len(line_cols) // 3
    assert diamonds[-1] >= max(line_cols)  # the last epoch's point is drawn


async def test_no_color_tells_every_mark_apart_by_glyph(monkeypatch):
    # item 12: without colour, train and smoothed were the same dots, b/k and NaN the same `│`
    monkeypatch.setenv("NO_COLOR", "1")
    app, svg = await shot(three_epochs(), (80, 24))
    assert app.no_color
    legend, chart = split(screen(svg))
    keys = swatches(legend)
    glyphs = [glyph for glyph, _ in keys.values()]
    assert len(set(glyphs)) == len(glyphs), keys
    shown = {ch for ch, _ in chart.values()}
    assert shown & BRAILLE and shown & QUADRANT
    assert {keys["val"][0], keys["NaN"][0], next(v for k, v in keys.items() if k.startswith("b/k"))[0]} <= shown


@pytest.mark.parametrize("size", [(100, 30), (160, 45)])
async def test_memory_sparkline_is_drawn_from_zero(size):
    # item 10: 390–397 MiB filled the sparkline's full height, so a few MiB looked like a cliff
    app = TrainmonApp(ScriptedRun(digits_mid_run()))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.poll_engine()
        pane = app.query_one(DevicesPane)
        pane.show(digits_mid_run().devices, [390.0, 391.0, 397.0, 392.0, 390.0, 395.0])
        await pilot.pause(0.1)
        spark = pane.query_one("#memory-spark", Sparkline)
        rows = [spark.render_line(y).text for y in range(spark.size.height)]
        bars = rows[0].strip()
        assert bars and all(row.strip() == "█" * len(bars) for row in rows[1:]), rows  # the lower rows are full
        assert " " not in bars  # and reaches into the top one: 390 is 98 % of 397
        label = str(pane.query_one("#spark-label").render())
        assert "390–397 MiB" in label


def test_labels_of_marks_in_one_column_never_write_over_each_other():
    # issue 26 trial: a `k 4→6` and a `b 32→128` change a few iterations apart read `k 4→6128`
    from trainmon.tui.widgets.chart import marks as chart_marks

    written: list[tuple[int, int, str]] = []

    class Plot:
        def scatter(self, xs, ys, marker, marker_style):
            written.extend((grid.column(x), grid.row(y), marker) for x, y in zip(xs, ys))

    grid = chart_marks.Grid(0.0, 100.0, 0.0, 1.0, cols=100, rows=10)
    chart_marks.draw_labels(Plot(), grid, [(50.2, "change", "k 4→6"), (50.4, "change", "b 32→128")])
    cells = {col: ch for col, _row, ch in written}
    assert len(cells) == len(written)  # no cell written twice
    top = "".join(cells[c] for c in sorted(cells))
    assert top in ("k 4→6 b 32→128", "kb"), top
    written.clear()
    chart_marks.draw_labels(Plot(), grid, [(50.2, "change", "k 4→6"), (52.5, "change", "b 32→128")])
    cells = {col: ch for col, _row, ch in written}
    assert len(cells) == len(written)
    assert "".join(cells[c] for c in sorted(cells)).replace(" ", "") in ("kb32→128",)


@pytest.mark.parametrize("size", SIZES)
async def test_a_loss_that_stays_nan_marks_columns_sparsely_not_as_a_wall(size):
    # a new user's trial: from iteration 100 on every chart column was a NaN column (`!!!!!` over the curve)
    points = [(i, 2.0 * math.exp(-i / 30) + 0.3) if i < 100 else (i, float("nan")) for i in range(1, 301)]
    run = ScriptedRun(digits_mid_run(global_iteration=300, nonfinite_count=201, last_nonfinite_iteration=300),
                      points=points)
    app, svg = await shot(run, size)
    _, chart = split(screen(svg))
    nan_columns = {col for (_, col), (ch, _) in chart.items() if ch == "!"}
    cols = {col for _, col in chart}
    assert 2 <= len(nan_columns) <= max(2, (max(cols) - min(cols) + 1) // 6), sorted(nan_columns)
