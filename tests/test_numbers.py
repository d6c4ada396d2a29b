"""engine/core/format.py by table: each input and the exact text it prints, on a key=value line and on screen."""

from __future__ import annotations

import pytest

from trainmon.engine.core import format as nb
from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import epoch_line

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "value, line, screen",
    [
        (0.4127, "0.4127", "0.4127"),
        (0.41274, "0.4127", "0.4127"),
        (2.302585, "2.3026", "2.3026"),
        (-0.25, "-0.2500", "-0.2500"),
        (0, "0.0000", "0.0000"),
        (0.0, "0.0000", "0.0000"),
        (1e-3, "0.0010", "0.0010"),  # the fixed range starts at 1e-3 ...
        (9999.5, "9999.5000", "9999.5000"),  # ... and ends below 1e4
        (1e4, "1e+04", "1e+04"),
        (12345.678, "1.235e+04", "1.235e+04"),
        (2.2e-8, "2.2e-08", "2.2e-08"),
        (-1.5e6, "-1.5e+06", "-1.5e+06"),
        (9.99e-4, "9.99e-04", "9.99e-04"),
        (1.23456e-5, "1.235e-05", "1.235e-05"),
        (1e-30, "1e-30", "1e-30"),
        (None, "n/a", "--"),
        (NAN, "nan", "NaN"),
        (INF, "inf", "Inf"),
        (-INF, "-inf", "-Inf"),
    ],
)
def test_metric(value, line, screen):
    assert nb.metric(value) == line
    assert nb.metric(value, nb.LINE) == line
    assert nb.metric(value, nb.SCREEN) == screen


@pytest.mark.parametrize(
    "value, text",
    [(0.05, "0.05"), (1e-4, "0.0001"), (2.2e-8, "2.2e-08"), (1.5, "1.5"), (-1.5e6, "-1.5e+06"), (0, "0"),
     (None, "n/a"), (NAN, "nan"), (INF, "inf")],
)
def test_general(value, text):
    assert nb.general(value) == text


@pytest.mark.parametrize(
    "value, style, unit, text",
    [
        (742.46, nb.LINE, "", "742.5"),
        (23760.0, nb.LINE, "", "23760.0"),
        (23760.0, nb.SCREEN, "samples/s", "23,760.0 samples/s"),
        (None, nb.LINE, "", "n/a"),
        (None, nb.SCREEN, "it/s", "-- it/s"),  # the unit stays: the reader sees which speed is unknown
        (0.0, nb.SCREEN, "it/s", "0.0 it/s"),
    ],
)
def test_rate(value, style, unit, text):
    assert nb.rate(value, style, unit) == text


@pytest.mark.parametrize(
    "value, style, unit, text",
    [
        (7310.6, nb.LINE, False, "7311"),
        (74250.0, nb.SCREEN, True, "74,250 MiB"),
        (74250.0, nb.SCREEN, False, "74,250"),
        (74250.0, nb.TABLE, False, "74,250"),
        (None, nb.LINE, False, "n/a"),
        (None, nb.SCREEN, True, "--"),  # a blank carries no unit
        (None, nb.TABLE, False, "—"),
    ],
)
def test_mib(value, style, unit, text):
    assert nb.mib(value, style, unit=unit) == text


@pytest.mark.parametrize(
    "value, style, text",
    [(97.0, nb.SCREEN, "97%"), (91.04, nb.SCREEN, "91%"), (1600.0, nb.SCREEN, "1600%"), (None, nb.SCREEN, "--"),
     (None, nb.TABLE, "—"), (100.0, nb.TABLE, "100%")],
)
def test_percent(value, style, text):
    assert nb.percent(value, style) == text


@pytest.mark.parametrize(
    "value, decimals, style, unit, text",
    [(312.46, 1, nb.TABLE, " W", "312.5 W"), (71.0, 0, nb.SCREEN, "°C", "71°C"),
     (71.0, 0, nb.TABLE, " °C", "71 °C"), (1024, 0, nb.TABLE, "", "1,024"), (None, 1, nb.TABLE, " W", "—")],
)
def test_fixed(value, decimals, style, unit, text):
    assert nb.fixed(value, decimals, style, unit) == text


@pytest.mark.parametrize("value, text", [(3.24, "3.2s"), (0.0, "0.0s"), (12345.67, "12345.7s"), (None, "n/a")])
def test_seconds(value, text):
    assert nb.seconds(value) == text


@pytest.mark.parametrize(
    "value, text",
    [(None, "--"), (0, "0:00"), (59.6, "1:00"), (75, "1:15"), (3725, "1:02:05"), (NAN, "--"), (INF, "--")],
)
def test_duration(value, text):
    assert nb.duration(value) == text


@pytest.mark.parametrize("done, total, text", [(57, 225, "57/225"), (57, None, "57/?"), (0, 0, "0/0")])
def test_count_of(done, total, text):
    assert nb.count_of(done, total) == text
    assert nb.count(total) == text.split("/")[1]


def test_epoch_line_keeps_significant_figures_of_a_tiny_loss():
    e = msg.EpochEnded(epoch=1, epochs=1, iterations=45, iterations_planned=45, steps=45, samples_seen=1437,
                       train_loss=2.2e-8, val_loss=None, val_metrics={}, batch_size=32, accum=1, lr=0.05, elapsed=3.2,
                       global_iteration=45, global_step=45)
    line = epoch_line(e)
    assert " train_loss=2.2e-08 " in line
    assert " val_loss=n/a " in line
    assert " lr=0.05 elapsed=3.2s " in line


def test_progress_and_summary_lines_keep_a_tiny_loss():
    from trainmon.engine.core.report import progress_line, summary_line

    s = msg.Snapshot(epoch=1, epochs=1, iteration_in_epoch=3, iterations_in_epoch=45, global_iteration=3, loss=2.2e-8)
    assert " loss=2.2e-08 " in progress_line(s)
    f = msg.Finished(stopped=False, epochs_completed=1, global_iteration=45, global_step=45, samples_seen=1437,
                     elapsed=3.2, train_loss=-1.5e6, val_loss=2.2e-8, val_metrics={})
    assert " train_loss=-1.5e+06 val_loss=2.2e-08 " in summary_line(f)


async def test_tui_shows_a_constant_tiny_loss_with_its_figures_on_the_line_and_the_axis():
    # the example: a constant loss of 2.2e-8 read `loss 0.0000`; the chart's ticks must not read 0 either
    from fakes import ScriptedRun, digits_mid_run
    from test_loss_chart import canvas_rows
    from textual_plot import PlotWidget

    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.widgets.loss_pane import LossPane

    snapshot = digits_mid_run(loss=2.2e-8, best_loss=2.2e-8, window_loss=2.2e-8, epoch_loss=2.2e-8)
    app = TrainmonApp(ScriptedRun(snapshot, points=[(i, 2.2e-8) for i in range(1, 68)]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.poll_engine()
        app.draw_chart()
        await pilot.pause(0.1)
        pane = app.query_one(LossPane)
        values = str(pane.query_one("#loss-values").render())
        labels = [r.strip() for r in canvas_rows(pane.query_one(PlotWidget), "margin-left") if r.strip()]
    assert values.startswith("loss 2.2e-08 · window 2.2e-08 · epoch 2.2e-08")  # best: an epoch's (issue 26 item 6)
    assert "2.20e-8" in labels and len(set(labels)) == len(labels) >= 3
    assert all(label.endswith("e-8") for label in labels)
