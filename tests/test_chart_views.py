"""Issue 24 items 3-4, the screen's side: `x` cycles the chart's x axis, `,` / `.` its smoothing, `m` what it
charts; epoch ends are marked; read back from textual-plot's datasets and canvases over a scripted run."""

from __future__ import annotations

import math

import msgspec
import pytest
from fakes import ScriptedRun, digits_mid_run
from textual_plot import PlotWidget

from trainmon.engine.core import messages as msg
from trainmon.engine.core.timeline import Timeline, TimelineRow
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.chart import ema, y_title
from trainmon.tui.widgets.chart.views import LOSS, empty_note, views
from trainmon.tui.widgets.loss_pane import LossPane


def rows(last: int = 90, tokens: bool = False) -> list[TimelineRow]:
    """A row every 10 iterations of a run in windows of 3 on batches of 32, 0.05 s an iteration, lr decaying."""
    return [TimelineRow(g, g // 3, 32 * g, 0.05 * g, 1000.0 + g, (0.1 / (1 + g),), 1.0 + g / 100, 640.0, 0.02,
                        4000.0 + g, 500.0, 100.0 * g if tokens else None) for g in range(0, last + 1, 10)]


def loss(g: int) -> float:
    return 2.0 * math.exp(-g / 30) + 0.3 + 0.05 * math.sin(g)


def scripted(timeline_rows: list[TimelineRow], events: list | None = None) -> ScriptedRun:
    run = ScriptedRun(digits_mid_run(global_iteration=90), points=[(g, loss(g)) for g in range(1, 91)],
                      events=events or [])
    if timeline_rows:
        run.timeline = Timeline()
        run.timeline.extend(timeline_rows)
    return run


def epoch_end(epoch: int, at: int, val: float, acc: float) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=2, iterations=45, iterations_planned=45, steps=15,
                          samples_seen=1437 * epoch, train_loss=val, val_loss=val, val_metrics={"acc": acc},
                          batch_size=32, accum=3, lr=0.05, elapsed=epoch * 2.0, global_iteration=at, global_step=at // 3)


def dataset(pane: LossPane, label: str):
    plot = pane.query_one(PlotWidget)
    found = [d for d, name in zip(plot._datasets, plot._labels) if name == label]
    return found[0] if found else None


def x_title(pane: LossPane) -> str:
    canvas = pane.query_one(PlotWidget).query_one("#margin-bottom")
    return canvas.render_line(2).text.strip()


async def press(pilot, *keys: str) -> LossPane:
    for key in keys:
        await pilot.press(key)
    pilot.app.draw_chart()
    await pilot.pause(0.05)
    return pilot.app.query_one(LossPane)


async def started(app: TrainmonApp, pilot) -> None:
    await pilot.pause()
    app.poll_engine()
    app.draw_chart()
    await pilot.pause(0.05)


WIDE = (160, 45)  # the chart holds all 90 points unthinned: the x values plotted are the points' own


@pytest.mark.parametrize("size", [(80, 24), (100, 30), WIDE])
async def test_x_cycles_the_axis_and_the_loss_is_placed_on_it(size):
    app = TrainmonApp(scripted(rows()))
    async with app.run_test(size=size) as pilot:
        await started(app, pilot)
        pane = app.query_one(LossPane)
        assert x_title(pane) == "global iteration"
        exact = size == WIDE
        assert not exact or list(dataset(pane, "train").x) == list(range(1, 91))
        pane = await press(pilot, "x")
        assert (pane.axis, x_title(pane)) == ("step", "optimizer step")
        xs = list(dataset(pane, "train").x)
        # exact at the rows (global iteration 30 is step 10), a straight line between them: 35 lies halfway
        # between rows 30 (step 10) and 40 (step 13)
        assert not exact or (xs[29], xs[34], xs[89]) == pytest.approx((10, 11.5, 30))
        pane = await press(pilot, "x")
        assert x_title(pane) == "samples seen" and (not exact or dataset(pane, "train").x[-1] == 32 * 90)
        pane = await press(pilot, "x")
        assert x_title(pane) == "active time (s)" and (not exact or dataset(pane, "train").x[-1] == pytest.approx(4.5))
        pane = await press(pilot, "x")
        assert x_title(pane) == "global iteration"


async def test_tokens_take_the_samples_place_where_the_job_counts_them():
    app = TrainmonApp(scripted(rows(tokens=True)))
    async with app.run_test(size=WIDE) as pilot:
        await started(app, pilot)
        pane = await press(pilot, "x", "x")
        assert x_title(pane) == "tokens seen" and list(dataset(pane, "train").x)[49] == pytest.approx(5000)


async def test_a_run_without_a_timeline_keeps_global_iterations():
    app = TrainmonApp(scripted([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        pane = await press(pilot, "x")
        assert x_title(pane) == "global iteration" and pane.axis == "iteration"


async def test_smoothing_steps_through_its_weights_and_off():
    app = TrainmonApp(scripted(rows()))
    async with app.run_test(size=WIDE) as pilot:
        await started(app, pilot)
        pane = app.query_one(LossPane)
        assert pane.border_title == "Loss · smoothing 0.9"
        ys = [loss(g) for g in range(1, 91)]
        assert list(dataset(pane, "smoothed").y) == pytest.approx(ema(ys, 0.1))
        pane = await press(pilot, "full_stop")
        assert pane.border_title == "Loss · smoothing 0.95"
        assert list(dataset(pane, "smoothed").y) == pytest.approx(ema(ys, 0.05))
        pane = await press(pilot, "full_stop", "full_stop")
        assert pane.border_title == "Loss · smoothing 0.99"  # held at the top
        pane = await press(pilot, *["comma"] * 4)
        assert pane.border_title == "Loss · smoothing 0.6"
        pane = await press(pilot, "comma")
        assert pane.border_title == "Loss · smoothing off" and dataset(pane, "smoothed") is None
        assert "smoothed" not in str(pane.query_one("#loss-values").render())
        assert list(dataset(pane, "train").y) == pytest.approx(ys)


def test_the_smoother_is_debiased():
    # a constant series stays constant from its first point: the start is not pulled towards 0
    assert ema([2.0] * 5, 0.1) == pytest.approx([2.0] * 5)
    assert ema([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.5 * 3 + 0.5 * 0.5) / (1 - 0.5 ** 2)])


async def test_m_cycles_the_charts_then_each_validation_metric():
    app = TrainmonApp(scripted(rows(), events=[epoch_end(1, 45, 0.8, 0.7), epoch_end(2, 90, 0.6, 0.85)]))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        pane = app.query_one(LossPane)
        assert pane.epoch_marks == [45, 90]
        expected = [("Learning rate", "learning rate", [0.1 / (1 + g) for g in range(0, 91, 10)]),
                    ("Gradient norm · smoothing 0.9", "pre-clip grad norm", [1 + g / 100 for g in range(0, 91, 10)]),
                    ("Throughput · smoothing 0.9", "samples/s", [640.0] * 10),
                    ("Data wait", "% of loop time", [2.0] * 10),
                    ("Memory", "GPU MiB in use", [4000.0 + g for g in range(0, 91, 10)]),
                    ("Validation loss", "val loss", [0.8, 0.6]),
                    ("Validation acc", "val acc", [0.7, 0.85])]
        for title, label, ys in expected:
            pane = await press(pilot, "m")
            y_title = pane.query_one(PlotWidget).query_one("#margin-top").render_line(0).text.strip()
            assert (pane.border_title, y_title) == (title, label)
            assert list(dataset(pane, "figure").y) == pytest.approx(ys)
            assert title.split(" · ")[0] in app.export_screenshot().replace("&#160;", " ")  # shown whole at 80×24
        pane = await press(pilot, "x")  # the validation points on another axis too, interpolated between rows:
        assert list(dataset(pane, "figure").x) == pytest.approx([14.5, 30])  # 45 is halfway from step 13 to 16
        pane = await press(pilot, "m")
        assert pane.border_title == "Loss · smoothing 0.9"


async def test_epoch_ends_and_resumes_are_marked_on_every_axis():
    resumed = msg.RunResumed("ckpt-000001.pt", 1, 45, 45)
    app = TrainmonApp(scripted(rows(), events=[epoch_end(1, 45, 0.8, 0.7), resumed]))
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        pane = await press(pilot, "x")
        marks = {kind: x for x, kind, _ in pane._marks("step", 1.0)}
        assert marks == {"epoch": pytest.approx(14.5), "resumed": pytest.approx(14.5)}
        legend = str(pane.query_one("#loss-values").render())
        assert "epoch" in legend and "resumed" in legend


def test_the_keys_are_in_the_help_and_out_of_the_footer():
    keys = {b.key: b for b in TrainmonApp.BINDINGS}
    assert all(not keys[k].show for k in ("x", "m", "comma", "full_stop"))
    helped = " ".join(k for k, _ in TrainmonApp.KEY_HELP)
    assert "x" in helped and "m" in helped and ", / ." in helped


def test_a_y_title_too_wide_to_centre_starts_at_the_rows_first_cell():
    # textual-plot centres it on column 8 (margin 10) and never clears the row: 40 cells cover any title before it
    assert y_title("loss", 8, 38) == "loss".center(40)
    assert y_title("log10 % of loop time", 8, 38) == " " * 11 + "log10 % of loop time".ljust(29)  # its `l` was cut
    assert y_title("x" * 50, 8, 38) == " " * 11 + "x" * 28 + "…"  # what 40 cells reach, shortened with `…`


def test_an_empty_chart_says_why_the_gradient_norm_is_missing():
    grad_norm = next(v for v in views([]) if v.key == "grad_norm")
    assert "--clip-grad-norm" in empty_note(grad_norm) and empty_note(LOSS) == "no data yet"


def y_title_of(pane: LossPane) -> str:
    return pane.query_one(PlotWidget).query_one("#margin-top").render_line(0).text.strip()


def chart_words(pane: LossPane) -> str:
    """The words written inside the chart's frame, its rows joined by spaces."""
    canvas = pane.query_one(PlotWidget).query_one("#plot")
    lines = [canvas.render_line(y).text[1:-1].strip() for y in range(1, canvas.size.height - 1)]
    return " ".join(line for line in lines if line)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_every_y_title_is_whole_on_the_log_scale(size):
    app = TrainmonApp(scripted(rows(), events=[epoch_end(1, 45, 0.8, 0.7), epoch_end(2, 90, 0.6, 0.85)]))
    async with app.run_test(size=size) as pilot:
        await started(app, pilot)
        pane = await press(pilot, "l")
        labels = ["loss", "learning rate", "pre-clip grad norm", "samples/s", "% of loop time", "GPU MiB in use",
                  "val loss", "val acc"]
        for label in labels:
            assert y_title_of(pane) == f"log10 {label}"  # `log10 % of loop time` lost its `l`
            pane = await press(pilot, "m")
        pane = await press(pilot, "l")
        assert y_title_of(pane) == "loss"  # the longer title before it leaves nothing behind


async def test_an_empty_chart_says_why():
    unclipped = [msgspec.structs.replace(row, grad_norm=None) for row in rows()]  # no --clip-grad-norm
    app = TrainmonApp(scripted(unclipped))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        pane = app.query_one(LossPane)
        assert "no " not in chart_words(pane)
        pane = await press(pilot, "m", "m")
        assert pane.border_title.startswith("Gradient norm") and dataset(pane, "figure") is None
        assert "no gradient norm: trainmon knows it only where it clips gradients (--clip-grad-norm X, or a job's " \
               "clip_grad_norm)" in chart_words(pane)
        pane = await press(pilot, "m")  # a chart with points: no note
        assert "no " not in chart_words(pane)


async def test_a_chart_without_points_yet_says_so():
    app = TrainmonApp(scripted([]))  # no timeline row yet
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        pane = await press(pilot, "m")
        assert pane.border_title == "Learning rate" and chart_words(pane) == "no data yet"


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 45)])
async def test_a_constant_figure_is_drawn_in_one_row(size):
    """A new user's trial: a constant learning rate was drawn as a band two rows high (the value on a row's edge)."""
    wobble = (0.0, 7e-18, -7e-18)  # the last digit of a mean of equal rates
    constant = [msgspec.structs.replace(r, learning_rates=(0.05 + wobble[i % 3],), samples_per_second=640.0
                                        + 1e-13 * wobble[i % 3] * 1e17) for i, r in enumerate(rows())]
    app = TrainmonApp(scripted(constant))
    async with app.run_test(size=size) as pilot:
        await started(app, pilot)
        checked = []
        for _ in range(4):  # learning rate, gradient norm (it grows: not checked), throughput, data wait
            pane = await press(pilot, "m")
            title = pane.border_title.split(" · ")[0]
            if title == "Gradient norm":
                continue
            canvas = pane.query_one(PlotWidget).query_one("#plot")
            inside = [canvas.render_line(y).text[1:-1] for y in range(1, canvas.size.height - 1)]
            drawn = [row for row in inside if row.strip(" ·│╎")]  # epoch marks are dotted columns
            assert len(drawn) == 1, (title, inside)
            glyphs = [c for c in drawn[0] if c not in " ·│╎"]
            assert len(set(glyphs[:-1])) == 1, (title, drawn)  # flat: one glyph up to the line's end, not jagged
            checked.append(title)
        assert checked == ["Learning rate", "Throughput", "Data wait"]
