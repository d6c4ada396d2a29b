"""Issue 23 item 5, in a viewer: a badge in the status line, the list behind it (a or a click), a column
on the loss chart, and for each new alert the bell, an OSC 9 desktop notification and a toast — none of
them for alerts replayed to a viewer that attached late."""

from __future__ import annotations

import time
from datetime import date

import pytest
from fakes import ScriptedRun, digits_mid_run
from test_loss_chart import canvas_rows
from textual.drivers.headless_driver import HeadlessDriver
from textual_plot import PlotWidget

from trainmon.engine.core import messages as msg
from trainmon.tui.alerts import NOTICE_CHARS, notice_text, osc9, when
from trainmon.tui.app import TrainmonApp
from trainmon.tui.screens.alerts_screen import AlertsScreen
from trainmon.tui.screens.summary_screen import SummaryScreen
from trainmon.tui.widgets.loss_pane import LossPane
from trainmon.tui.widgets.status_pane import StatusPane

T0 = 1765080000.0  # 2025-12-07 04:00:00 UTC
SPIKE = msg.Alert("loss_spike", "the loss 9.21 is 14 spreads above its recent level 0.52", 1, 30, T0)
NAN = msg.Alert("nan", "the loss is nan at global iteration 52: the run diverged", 2, 52, T0 + 62.5)
STALL = msg.Alert("stall", "no iteration for 61 s (stall after 30 s)", 2, 60, T0 + 300)
HANG = msg.Alert("hang", "rank 1 sent nothing for 30 s", 2, 61, T0 + 330, rank=1, host="gpu4")


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (the list shows local times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def terminal(monkeypatch) -> list[str]:
    """What the app writes to its terminal besides frames (textual's headless driver drops it), outside tmux."""
    monkeypatch.delenv("TMUX", raising=False)
    written: list[str] = []
    monkeypatch.setattr(HeadlessDriver, "write", lambda self, data: written.append(data))
    return written


async def start(pilot) -> None:
    pilot.app.animation_level = "none"
    await pilot.pause()
    pilot.app.poll_engine()  # the first update: what a late viewer gets replayed
    await pilot.pause(0.05)


async def until(pilot, predicate, timeout: float = 10.0):
    """Wait (a loaded box lays out slowly) until `predicate()` is true; its value."""
    for _ in range(int(timeout / 0.05)):
        found = predicate()
        if found:
            return found
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {predicate}")


def listing_lines(app) -> list[str]:
    """The open list's rows as shown, each row's words joined by one space ([] before it is laid out)."""
    if not isinstance(app.screen, AlertsScreen):
        return []
    listing = app.screen.query_one("#alerts")
    return [" ".join(listing.render_line(y).text.split()) for y in range(listing.size.height)]


def status_text(app) -> str:
    return str(app.query_one(StatusPane).render())


def toasts(app) -> list[tuple[str, str, str]]:
    return [(n.title, n.message, n.severity) for n in app._notifications]


def rung(written: list[str]) -> list[str]:
    """The notifications among `written`: each the bell, then `ESC ] 9 ; text BEL`."""
    return [w for w in written if w.startswith("\a\x1b]9;")]


async def test_replayed_alerts_make_the_badge_and_ring_nothing_new_ones_ring_once(terminal):
    run = ScriptedRun(digits_mid_run(), events=[SPIKE, NAN])
    app = TrainmonApp(run, run_id="r1")
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        assert "⚠ 2 alerts · nan" in status_text(app)
        assert rung(terminal) == [] and toasts(app) == []  # an attach replays history: nothing rings
        run.later(events=[STALL])
        app.poll_engine()
        await until(pilot, lambda: toasts(app))  # a toast arrives as a message
        assert "⚠ 3 alerts · stall" in status_text(app)
        assert rung(terminal) == ["\a\x1b]9;trainmon stall: no iteration for 61 s (stall after 30 s) (run r1)\a"]
        assert toasts(app) == [("alert: stall", "no iteration for 61 s (stall after 30 s)", "warning")]
        app.poll_engine()  # a poll with nothing new rings nothing again
        await pilot.pause(0.2)
        assert len(rung(terminal)) == 1 and len(toasts(app)) == 1


async def test_no_badge_without_alerts_and_one_alert_is_singular(terminal):
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert "alert" not in status_text(app) and "⚠" not in status_text(app)
        run.later(events=[NAN])
        app.poll_engine()
        await pilot.pause(0.05)
        assert "⚠ 1 alert · nan" in status_text(app)
        assert rung(terminal) == ["\a\x1b]9;trainmon nan: the loss is nan at global iteration 52: the run diverged\a"]


async def test_a_lists_the_alerts_newest_first_and_esc_closes(utc):
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=[SPIKE, NAN, HANG]))
    async with app.run_test(size=(160, 45)) as pilot:  # wide enough that no message wraps
        await start(pilot)
        await pilot.press("a")
        lines = await until(pilot, lambda: listing_lines(app))
        assert app.screen.query_one("#alerts-body").border_title == "Alerts — 3, newest first"
        assert lines == [
            "global",
            "time kind epoch iteration message",
            "7 Dec 04:05 hang 2 61 rank 1 sent nothing for 30 s (rank 1 on gpu4)",
            "7 Dec 04:01 nan 2 52 the loss is nan at global iteration 52: the run diverged",
            "7 Dec 04:00 loss_spike 1 30 the loss 9.21 is 14 spreads above its recent level 0.52",
        ]
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, AlertsScreen))


async def test_the_open_list_takes_a_new_alert(utc):
    run = ScriptedRun(digits_mid_run(), events=[SPIKE])
    app = TrainmonApp(run)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot)
        await pilot.press("a")
        await until(pilot, lambda: listing_lines(app))
        run.later(events=[NAN])
        app.poll_engine()
        lines = await until(pilot, lambda: len(listing_lines(app)) == 4 and listing_lines(app))
        assert lines[2].startswith("7 Dec 04:01 nan 2 52") and lines[3].startswith("7 Dec 04:00 loss_spike 1 30")
        assert app.screen.query_one("#alerts-body").border_title == "Alerts — 2, newest first"


async def test_a_click_on_the_badge_opens_the_list():
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=[NAN]))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        line = status_text(app).splitlines()[0]
        column = line.index("⚠ 1 alert")
        assert await pilot.click("#status", offset=(1 + column + 3, 0))  # 1: the status line's padding
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        await pilot.press("a")  # a again closes it
        await until(pilot, lambda: not isinstance(app.screen, AlertsScreen))


async def test_a_with_no_alerts_says_so():
    app = TrainmonApp(ScriptedRun(digits_mid_run()))
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        assert "no alerts so far" in str(app.screen.query_one("#alerts").render())


async def test_each_alert_is_a_column_on_the_chart_topped_by_its_kind():
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=[SPIKE, NAN]))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        app.draw_chart()
        pane = app.query_one(LossPane)
        assert pane.alert_markers == [(30, "loss_spike"), (52, "nan")]
        plot = pane.query_one(PlotWidget)
        drawn = await until(pilot, lambda: (r := canvas_rows(plot, "plot")) and "nan" in r[1] and r)
        rows = drawn[1:-1]  # inside the canvas's frame
        spike, nan = rows[0].index("loss_spike"), rows[0].index("nan")  # each kind on the top row, at its column
        assert 0 < spike < nan  # iteration 30 left of 52
        assert [row[spike] for row in rows[1:]] == ["▌"] * (len(rows) - 1)  # and a column down to the axis
        assert [row[nan] for row in rows[1:]] == ["▌"] * (len(rows) - 1)
        assert "▌alert" in str(pane.query_one("#loss-values").render())  # the legend names it


async def test_an_ended_runs_summary_counts_its_alerts_and_a_lists_them_over_it(terminal):
    from test_tui_ending import finished

    end = digits_mid_run(status=msg.FINISHED, epoch=3, epochs=3)
    app = TrainmonApp(ScriptedRun(end, events=[SPIKE, NAN, finished()], alive=False), run_id="r1")
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)  # attached to an ended run: everything is replayed
        assert isinstance(app.screen, SummaryScreen)
        assert dict(app.screen.rows)["alerts"] == "2 · newest [bold]nan[/] at global iteration 52 · a lists them"
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SummaryScreen))  # back where it was
    assert rung(terminal) == []


def test_notice_text_has_no_control_characters_and_a_bounded_length():
    alert = msg.Alert("nan", "bad\x1b]9;x\x07 \x9c\nline", 1, 1, T0)
    assert notice_text(alert, "r1") == "trainmon nan: bad ]9;x    line (run r1)"
    long = notice_text(msg.Alert("stall", "x" * 500, 1, 1, T0), "r1")
    assert len(long) == NOTICE_CHARS and long.endswith("x… (run r1)")


def test_osc9_is_wrapped_for_tmux_to_pass_on():
    assert osc9("hi", {}) == "\x1b]9;hi\a"
    assert osc9("hi", {"TMUX": "default,42,0"}) == "\x1bPtmux;\x1b\x1b]9;hi\a\x1b\\"


def test_when_shows_the_time_today_and_the_day_before(utc):
    assert when(T0 + 62.5, today=date(2025, 12, 7)) == "04:01:02"
    assert when(T0 + 62.5, today=date(2025, 12, 8)) == "7 Dec 04:01"


def test_help_lists_the_alerts_key():
    assert any(key == "a" and "alerts" in text for key, text in TrainmonApp.KEY_HELP)


async def load(pilot) -> None:
    await start(pilot)
    pilot.app.draw_chart()
    await pilot.pause(0.1)


def test_main_screen_with_alerts_at_80x24(snap_compare):
    """The badge beside the state word, a column per alert topped by its kind (`l` where `loss_spike` does
    not fit before the next), `alert` in the legend."""
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=[SPIKE, NAN]), run_id="r1")
    assert snap_compare(app, terminal_size=(80, 24), run_before=load)


def test_alerts_list_at_80x24(snap_compare, utc):
    """The list over the charts: messages folded whole inside their column, the rank of a torchrun alert."""
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=[SPIKE, NAN, HANG]), run_id="r1")

    async def open_list(pilot):
        await load(pilot)
        await pilot.press("a")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_list)
