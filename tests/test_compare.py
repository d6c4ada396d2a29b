"""`trainmon compare` and the monitor's runs screen, on real digits runs: the table's arithmetic (which
settings differ, the figures each run ended with), the text a pipe gets, the compare view and the runs
screen by Pilot, a sweep of 300 run directories."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from engines import start_detached, trainmon, wait_until

from trainmon.engine.record.compare import Comparison, differing, read_figures, settings_of, short_names, table_rows
from trainmon.engine.record.run_list import FilterError, matches, parse_filter, run_row
from trainmon.engine.record.rundir import list_runs, read_run

FIELD = re.compile(r"(\w+)=(\S+)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished digits runs, 2 epochs each: lr 0.01 at batch size 32, lr 0.1 at 64. Their home, and per
    run its id, directory and the `finished` line's fields."""
    home = tmp_path_factory.mktemp("compare-home")
    env = {**os.environ, "TRAINMON_HOME": str(home)}
    runs = []
    for lr, b in (("0.01", "32"), ("0.1", "64")):
        done = trainmon("--headless", "--epochs", "2", "--lr", lr, "--batch-size", b, "--no-checkpoints", env=env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        run_id, path = re.match(r"^run id=(\S+) dir=(\S+) ", lines[0]).groups()
        finished = dict(FIELD.findall(next(line for line in lines if line.startswith("finished "))))
        runs.append((run_id, Path(path), finished))
    return home, runs


def values(rows: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    return dict(rows)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_table_of_two_real_runs_shows_what_differs_and_how_each_ended(two_runs):
    _home, runs = two_runs
    figures = [read_figures(read_run(path)) for _id, path, _f in runs]
    assert differing([f.settings for f in figures]) == ["lr", "batch_size"]
    table = values(table_rows(figures))
    assert list(table)[:2] == ["lr", "batch_size"]  # the settings that differ, then the figures
    assert table["lr"] == ["0.01", "0.1"] and table["batch_size"] == ["32", "64"]
    assert table["epochs done"] == ["2/2", "2/2"]
    assert table["status"] == ["finished", "finished"]
    for i, (_id, _path, finished) in enumerate(runs):  # the same figures the run's own last line gave
        assert table["train loss"][i] == finished["train_loss"]
        assert table["val loss"][i] == finished["val_loss"]
        assert table["val acc"][i] == finished["val_acc"]
        assert float(table["best val loss"][i]) <= float(finished["val_loss"])
        assert float(table["elapsed"][i].rstrip("s")) == pytest.approx(float(finished["elapsed"].rstrip("s")), abs=0.2)
    for f in figures:  # the curves: every iteration (45 + 45 at b=32, 23 + 23 at b=64), val at each epoch end
        iterations = 90 if f.settings["batch_size"] == 32 else 46
        assert [x for x, _ in f.train_points] == [float(i) for i in range(1, iterations + 1)]
        assert [x for x, _ in f.val_points] == [iterations / 2, iterations]
        assert f.val_points[-1][1] == pytest.approx(f.val_loss)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_epochs_done_follow_the_events_where_the_snapshot_trails_them(two_runs, tmp_path):
    """snapshot.json is rewritten every ~2 s; a live run's EpochEnded events may be epochs ahead of it."""
    import msgspec

    from trainmon.engine.core import messages as msg
    from trainmon.engine.record.event_log import encode_record
    from trainmon.engine.record.rundir import SNAPSHOT_FILE, read_snapshot

    _home, runs = two_runs
    copy = tmp_path / runs[1][1].name
    shutil.copytree(runs[1][1], copy)
    stale = msgspec.structs.replace(read_snapshot(copy), epoch=1, iteration_in_epoch=10, status=msg.RUNNING)
    (copy / SNAPSHOT_FILE).write_bytes(encode_record(stale) + b"\n")
    figures = read_figures(read_run(copy))
    assert (figures.epochs_done, figures.epochs, len(figures.val_points)) == (2, 2, 2)
    assert values(table_rows([figures, figures]))["epochs done"] == ["2/2", "2/2"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_compare_piped_prints_the_table_and_json_for_scripts(two_runs):
    home, runs = two_runs
    env = {**os.environ, "TRAINMON_HOME": str(home)}
    (a, _, fa), (b, _, fb) = runs
    text = trainmon("compare", a, b[:-2], env=env)  # an id and a unique prefix
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    tail_a, tail_b = a.rsplit("-", 1)[1], b.rsplit("-", 1)[1]
    assert lines[0].split()[:2] == [tail_a, a] and lines[1].split()[:2] == [tail_b, b]  # the short names' key
    table = {line.split("  ")[0].strip(): line.split()[-2:] for line in lines[4:]}
    assert lines[3].split() == [tail_a, tail_b]
    assert table["lr"] == ["0.01", "0.1"] and table["batch_size"] == ["32", "64"]
    assert table["train loss"] == [fa["train_loss"], fb["train_loss"]]
    assert table["status"] == ["finished", "finished"]
    assert all(line == line.rstrip() for line in lines)
    data = json.loads(trainmon("compare", "--last", "2", "--json", env=env).stdout)
    assert data["differing"] == ["lr", "batch_size"]
    assert [r["id"] for r in data["runs"]] == [a, b]
    assert [r["settings"]["lr"] for r in data["runs"]] == [0.01, 0.1]
    assert data["runs"][0]["val_metrics"]["acc"] == pytest.approx(float(fa["val_acc"]), abs=5e-5)
    narrow = trainmon("compare", "--last", "2", "--table", env={**env, "COLUMNS": "30"})
    blocks = [line.split() for line in narrow.stdout.splitlines() if line.strip() in (tail_a, tail_b)]
    assert blocks == [[tail_a], [tail_b]]  # too narrow for both: one block a run, the labels repeated
    one = trainmon("compare", a, env=env)
    assert (one.returncode, one.stdout) == (2, "")
    assert one.stderr.strip() == ("trainmon: error: compare needs two runs or more (ids, prefixes or paths; "
                                  "--last N for your newest N)")
    for twice in ((a, a), (a, str(runs[0][1])), (a[:-1], a)):  # one run by its id, its path, a prefix
        same = trainmon("compare", *twice, env=env)
        assert (same.returncode, same.stdout) == (2, "")
        assert same.stderr.strip() == f"trainmon: error: the same run was given twice ({a}): compare needs two different runs"
    # a new user's trial: `RUN --last 1` with RUN the newest was refused as "given twice"; it means RUN and the
    # newest other run
    paired = json.loads(trainmon("compare", b, "--last", "1", "--json", env=env).stdout)
    assert [r["id"] for r in paired["runs"]] == [b, a]


def test_settings_differ_by_value_and_by_absence():
    a = settings_of({"job": "digits", "settings": {"seed": 0, "options": {"lr": 0.1, "accum": None}},
                     "config": {"lr": 0.1, "batch_size": 32, "accum": 1}})
    assert a == {"job": "digits", "seed": 0, "lr": 0.1, "batch_size": 32, "accum": 1}
    from types import SimpleNamespace

    tracked = settings_of({"job": "my_script", "settings": {"options": {}}},  # track() records no RunConfig
                          SimpleNamespace(epochs=3, batch_size=64, accum=2, lr=0.05))
    assert tracked == {"job": "my_script", "epochs": 3, "batch_size": 64, "accum": 2, "lr": 0.05}
    assert settings_of({"job": "digits", "config": {"epochs": 5, "lr": None}}, SimpleNamespace(
        epochs=3, batch_size=None, accum=1, lr=0.2)) == {"job": "digits", "epochs": 5, "accum": 1, "lr": 0.2}
    changed = settings_of({"job": "digits", "config": {"epochs": 5, "batch_size": 32, "accum": 1, "lr": 0.1}},
                          SimpleNamespace(epochs=5, batch_size=64, accum=4, lr=0.1))  # a viewer changed both
    assert (changed["batch_size"], changed["accum"]) == ("32 → 64", "1 → 4")
    b = dict(a, lr=0.01, zeta=3)
    c = dict(a)
    assert differing([a, b, c]) == ["lr", "zeta"]  # SETTING_ORDER's first, then by name
    assert differing([a]) == [] and differing([a, c]) == []
    assert short_names(["2026-x-aa11", "2026-y-bb22"]) == ["aa11", "bb22"]
    assert short_names(["1-aa11", "2-aa11"]) == ["1-aa11", "2-aa11"]  # the same tail twice: whole ids


@pytest.mark.parametrize("text, terms", [
    ("", []),
    ("digits  lr=1e-2", [(None, "digits"), ("lr", "1e-2")]),
    ("Batch-Size=32 status=running", [("batch_size", "32"), ("status", "running")]),
])
def test_filter_terms(text, terms):
    assert parse_filter(text) == terms


@pytest.mark.parametrize("bad", ["lr=", "=0.1", "a b="])
def test_a_filter_term_without_name_or_value_is_one_line(bad):
    with pytest.raises(FilterError, match=r"a filter term is a word or name=value \(lr=0\.01\)"):
        parse_filter(bad)


def fabricated(source: Path, root: Path, count: int) -> list[str]:
    """`count` copies of the run directory `source` under `root`/runs, each with its id, start and lr."""
    ids = []
    for i in range(count):
        run_id = f"20261201-{i:06d}-digits-{i:04x}"
        target = root / "runs" / run_id
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.sock", "checkpoints"))
        info = json.loads((target / "run.json").read_text())
        info.update(id=run_id, started_unix=1_796_000_000 + i)
        info["config"]["lr"] = info["settings"]["options"]["lr"] = (0.1, 0.01, 0.001)[i % 3]
        (target / "run.json").write_text(json.dumps(info))
        ids.append(run_id)
    return ids


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rows_and_filters_of_real_runs(two_runs, monkeypatch):
    home, runs = two_runs
    monkeypatch.setenv("TRAINMON_HOME", str(home))
    rows = [run_row(run) for run in list_runs()]
    assert [r.id for r in rows] == [r[0] for r in runs]
    assert [(r.status, r.job, r.progress, r.alerts, r.live) for r in rows] == [("finished", "digits", "2/2", 0, False)] * 2
    assert [r.best_val for r in rows] == [f"{float(runs[i][2]['val_loss']):.4f}" for i in range(2)]  # improving runs
    for text, wanted in (("lr=0.01", [0]), ("lr=1e-1 batch_size=64", [1]), ("status=finished digits", [0, 1]),
                         ("status=running", []), (runs[1][0][-4:], [1]), ("lr=0.01 batch_size=64", [])):
        assert [i for i, r in enumerate(rows) if matches(r, parse_filter(text))] == wanted, text


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_compare_view_overlays_both_runs_with_a_legend_and_the_table(two_runs):
    from textual.widgets import DataTable
    from textual_plot import PlotWidget
    from textual_plot.plot_widget import LinePlot, ScatterPlot

    from trainmon.tui.compare_app import CompareApp

    _home, runs = two_runs
    names = short_names([r[0] for r in runs])
    app = CompareApp([r[1] for r in runs])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        plot = app.screen.query_one(PlotWidget)
        lines = [d for d in plot._datasets if isinstance(d, LinePlot)]
        points = [d for d in plot._datasets if isinstance(d, ScatterPlot)]
        assert [len(d.x) for d in lines] == [90, 46]
        assert [list(d.x) for d in points] == [[45, pytest.approx(90, abs=1)], [23, 46]]  # x = the end: half a cell in
        assert len({str(d.line_style) for d in lines}) == 2  # a colour a run
        legend = str(app.screen.query_one("#overlay-legend").render())
        assert all(name in legend for name in names) and "val" in legend
        table = app.screen.query_one("#compare-table", DataTable)
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert labels[:2] == ["lr", "batch_size"] and labels[-1] == "status"
        assert [str(c.label) for c in table.columns.values()][1:] == names
        shown = {b.binding.key: b.binding.description for b in app.screen.active_bindings.values() if b.binding.show}
        assert shown == {"l": "Log scale", "x": "x axis", "escape": "Quit", "q": "Quit"}  # from the CLI: q quits
        # x: optimizer step, then samples seen, where runs of batch 32 and 64 end side by side (2 epochs of 1437)
        for title, ends in (("optimizer step", [90, 46]), ("samples seen", [2 * 1437, 2 * 1437])):
            await pilot.press("x")
            await pilot.pause(0.2)
            lines = [d for d in plot._datasets if isinstance(d, LinePlot)]
            assert [max(d.x) for d in lines] == pytest.approx(ends, rel=0.03), title  # accum 1: a step an iteration
            assert f"x: {title}" in str(app.screen.query_one("#overlay-legend").render())
        await pilot.press("x", "x")  # active time, then back to global iterations
        await pilot.pause(0.2)
        assert [len(d.x) for d in plot._datasets if isinstance(d, LinePlot)] == [90, 46]
        await pilot.press("q")
        await pilot.pause(0.2)
    assert app.return_code == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_runs_screen_lists_300_runs_without_freezing_filters_marks_compares_and_opens(two_runs, trainmon_home):
    from textual.widgets import DataTable

    from trainmon.engine.control.replay import RecordedRun
    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.screens.compare_screen import CompareScreen
    from trainmon.tui.screens.runs_screen import RunsScreen
    from trainmon.tui.widgets.status_pane import StatusPane

    _home, runs = two_runs
    ids = fabricated(runs[1][1], trainmon_home, 300)
    current = read_run(trainmon_home / "runs" / ids[0])
    app = TrainmonApp(RecordedRun(current), run_id=current.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("escape")  # the finished run's summary
        start = time.monotonic()
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one(DataTable)
        ticks = 0
        while table.row_count < 300:  # the screen answers while the runs are read (in a worker thread)
            await pilot.pause(0.05)
            ticks += 1
            assert time.monotonic() - start < 10
        assert app.check_action("toggle_pause", ()) is False  # the run's keys are hidden over the list
        assert str(table.get_row_at(0)[1]) == ids[-1]  # newest first
        assert [c.label.plain for c in table.columns.values()] == ["", "id", "status", "epochs", "best val", "⚠", "age"]
        await pilot.press("slash", *"lr=0.01")
        await pilot.pause(0.2)
        assert table.row_count == 100
        await pilot.press("enter", "space", "space", "space")
        await pilot.pause(0.1)
        assert app.screen.marked == [ids[298], ids[295], ids[292]]  # lr=0.01: every third
        await pilot.press("m")
        await pilot.pause(0.5)
        assert isinstance(app.screen, CompareScreen)
        assert len(app.screen.runs) == 3
        assert app.screen.active_bindings["q"].binding.description == "Back"  # over the runs screen: back to it
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("enter")  # the cursor's run (the fourth of the filtered list) replaces the first
        await pilot.pause(0.5)
        assert app.run_id == ids[289] and app.run_handle.run.path == trainmon_home / "runs" / ids[289]
        assert len(app.screen_stack) == 2  # the monitor, and the new run's summary (it finished)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert ids[289] in str(app.query_one(StatusPane).render())
        assert app.check_action("toggle_pause", ()) is None  # the monitor's keys are back (dimmed: it ended)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_live_run_keeps_updating_in_a_comparison(two_runs):
    _home, runs = two_runs
    run_id, path = start_detached("--epochs", "400", "--batch-size", "64")
    try:
        comparison = Comparison([runs[0][1], path])
        first = comparison.refresh()
        # loss.json is rewritten on the engine's writer thread at publication: it may trail the events a little
        wait_until(lambda: len(comparison.refresh()[1].val_points) >= 3 and len(comparison.runs[1].train_points) >= 23 * 2,
                   timeout=90, what="3 epochs of the live run, and their iterations in loss.json")
        later = comparison.runs
        assert later[0] is first[0]  # the ended run is read once
        assert later[1].run.live and later[1].status == "running"
        # the epochs done agree with the validation points even where snapshot.json trails the events (CI: 1 vs 3)
        assert later[1].epochs_done >= len(later[1].val_points) >= 3 and later[1].epochs == 400
    finally:
        trainmon("stop", run_id, timeout=60)


def test_compare_help_names_the_cap_and_bad_input_is_one_line(trainmon_home):
    from click.testing import CliRunner

    from trainmon.cli.main import cli

    result = CliRunner().invoke(cli, ["compare", "--help"])
    assert result.exit_code == 0 and "at most 8 runs are overlaid, the newest" in " ".join(result.stdout.split())
    for args, error in ((["nope", "nada"], "no run matches 'nope' (see `trainmon ls`)"),
                        (["--last", "2"], f"no runs yet under {trainmon_home / 'runs'} (train one: `trainmon`)"),
                        (["--last", "0"], "--last takes a count of runs ≥ 1, got 0"),
                        (["--json", "--table", "--last", "2"], "--json and --table are two outputs: give one")):
        result = CliRunner().invoke(cli, ["compare", *args])
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"trainmon: error: {error}\n")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_every_validation_point_is_drawn_inside_the_frame_in_both_scales(two_runs):
    # a run's last ◆ (at the last iteration, x = the chart's right end) lay on the frame, drawn over it
    from textual_plot import PlotWidget
    from textual_plot.plot_widget import ScatterPlot

    from trainmon.tui.compare_app import CompareApp

    _home, runs = two_runs
    app = CompareApp([r[1] for r in runs])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        for scale in ("linear", "log"):
            plot = app.screen.query_one(PlotWidget)
            canvas = plot.query_one("#plot")
            width, height = canvas.size
            points = [(x, y) for d in plot._datasets if isinstance(d, ScatterPlot) for x, y in zip(d.x, d.y)]
            assert len(points) == 4, scale  # 2 epochs a run
            cells = {plot.get_pixel_from_coordinate(x, y) for x, y in points}
            assert all(0 < col < width - 1 and 0 < row < height - 1 for col, row in cells), (scale, cells)
            drawn = {(col, row) for col in range(width) for row in range(height) if canvas.get_pixel(col, row)[0] == "◆"}
            assert drawn == cells, scale
            await pilot.press("l")
            await pilot.pause(0.3)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_past_eight_runs_the_chart_overlays_the_newest_and_the_table_keeps_all(two_runs, trainmon_home):
    from textual.widgets import DataTable

    from trainmon.engine.record.compare import overlaid
    from trainmon.tui.compare_app import CompareApp
    from trainmon.tui.widgets.overlay_chart import OverlayChart

    _home, runs = two_runs
    ids = fabricated(runs[1][1], trainmon_home, 10)  # started one second apart, oldest first
    paths = [trainmon_home / "runs" / i for i in ids]
    assert overlaid(Comparison(paths).refresh()) == list(range(2, 10))
    assert overlaid(Comparison(paths[::-1]).refresh()) == list(range(8))  # newest first, as the runs screen marks
    assert overlaid(Comparison(paths[:3]).refresh()) == [0, 1, 2]
    app = CompareApp(paths)  # `trainmon compare --last 10`'s order
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
        title = str(app.screen.query_one("#compare-title").render())
        assert "the chart overlays the newest 8 of 10" in title, title
        names = short_names(ids)
        assert [n for n, _, _ in app.screen.query_one(OverlayChart)._curves] == names[2:]
        table = app.screen.query_one("#compare-table", DataTable)
        headers = [c.label for c in table.columns.values()][1:]
        assert [h.plain for h in headers] == names  # every run in the table
        assert [str(h.style) for h in headers[:2]] == ["bold default"] * 2  # no colour: not on the chart
        assert len({str(h.style) for h in headers[2:]}) == 8
        await pilot.press("q")
