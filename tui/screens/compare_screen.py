"""Runs side by side: their loss curves overlaid (a colour a run, at most 8), a legend naming each, and the
comparison table below. Live runs are read again from their run directories every second."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from trainmon.engine.core.timeline import AXES, on_axis
from trainmon.engine.record.compare import MAX_OVERLAY, Comparison, RunFigures, overlaid, short_names, table_rows

from ..widgets.chart.views import axis_title, time_scale
from ..widgets.overlay_chart import RUN_COLOURS, OverlayChart

SHORT = 28  # rows: below, the title and the chart's frame go (at 80×24 the curves get 7 rows, not 3)
POLL_SECONDS = 1.0  # a live run's directory is read again this often (loss.json is rewritten every few seconds)


class CompareScreen(Screen[None]):
    """The runs at `paths` compared; `q` / `esc` close it (the whole app when it is `trainmon compare`'s)."""

    CSS_PATH = "runs.tcss"
    HIDES_RUN_KEYS = True  # over the monitor: its keys (pause, batch size, ...) are hidden meanwhile
    BINDINGS = [
        Binding("l", "toggle_log", "Log scale"),
        Binding("x", "next_axis", "x axis"),
        Binding("escape,q", "close", "Back", key_display="q"),
    ]

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.comparison = Comparison(paths)
        self.runs: list[RunFigures] = []
        self._table_key: tuple = ()
        self._reading = False  # a worker thread is reading the runs
        self.axis = "iteration"  # the chart's x: `x` cycles engine.core.timeline.AXES

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title")
        yield OverlayChart(id="overlay", classes="pane")
        yield Static(id="compare-note")
        yield DataTable(id="compare-table", cursor_type="none", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#overlay").border_title = "Loss"
        self.query_one("#compare-title", Static).update("[b]Compare[/] [dim]reading the runs…[/]")
        self._poll()  # a long run's event log takes a while to read: never in the app's own thread
        self.set_interval(POLL_SECONDS, self._poll)

    def on_resize(self, event) -> None:
        self.set_class(event.size.height < SHORT, "-short")  # no title, no frame: rows for the curves

    def _poll(self) -> None:
        if self._reading or not (not self.comparison.runs or self.comparison.live):
            return  # one read at a time; ended runs are read once (nothing of theirs changes)
        self._reading = True
        self.run_worker(self._read_in_thread, thread=True, group="compare-read")

    def _read_in_thread(self) -> None:
        try:
            runs = self.comparison.refresh()
        finally:
            self._reading = False
        self.app.call_from_thread(self._show, runs)

    def _show(self, runs: list[RunFigures]) -> None:
        self.runs = runs
        names = short_names([f.id for f in runs])
        chart = overlaid(runs)  # past MAX_OVERLAY runs, the newest (the table keeps them all)
        more = f" · the chart overlays the newest {MAX_OVERLAY} of {len(runs)}" if len(runs) > MAX_OVERLAY else ""
        live = sum(f.run.live for f in runs)
        following = f" · following {live} live" if live else ""
        named = " · runs named by their id's last part" if names != [f.id for f in runs] else ""
        self.query_one("#compare-title", Static).update(f"[b]Compare[/]: {len(runs)} runs{following}{more}[dim]{named}[/]")
        self._draw(names, chart)
        colours = {i: colour for i, colour in zip(chart, RUN_COLOURS)}  # a column's colour: its run's on the chart
        self._fill_table(names, table_rows(runs), [colours.get(i, "default") for i in range(len(runs))])

    def _fill_table(self, names: list[str], rows: list[tuple[str, list[str]]], colours: list[str]) -> None:
        key = (tuple(names), tuple(colours), tuple((label, tuple(cells)) for label, cells in rows))
        if key == self._table_key:
            return
        self._table_key = key
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_column("", key="label")
        for i, (name, colour) in enumerate(zip(names, colours)):
            table.add_column(Text(name, style=f"bold {colour}"), key=f"run{i}")
        for label, cells in rows:
            table.add_row(Text(label, style="bold"), *cells)

    def _draw(self, names: list[str], chart: list[int]) -> None:
        """The overlaid runs on the chosen x axis (samples seen puts runs of other batch sizes side by side); a run
        recorded without a timeline has only global iterations: left off the other axes, and the title says so."""
        runs, axis = self.runs, self.axis
        scale = time_scale(axis, max((r.timeline[-1].active_seconds for i in chart if (r := runs[i]).timeline),
                                     default=0.0))
        curves, missing = [], []
        for i in chart:
            train, val = (on_axis(runs[i].train_points, runs[i].timeline, axis),
                          on_axis(runs[i].val_points, runs[i].timeline, axis))
            if axis != "iteration" and not runs[i].timeline:
                missing.append(names[i])
            curves.append((names[i], [(x / scale, y) for x, y in train], [(x / scale, y) for x, y in val]))
        self.query_one(OverlayChart).draw(curves, axis_title(axis, scale), x_counts=axis != "active")
        note = self.query_one("#compare-note", Static)
        note.update(f"[dim]not on this axis (recorded without a timeline): {', '.join(missing)}[/]" if missing else "")
        note.display = bool(missing)

    def action_next_axis(self) -> None:
        """`x`: global iteration → optimizer step → samples seen → active time → back."""
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        if self.runs:
            names = short_names([f.id for f in self.runs])
            self._draw(names, overlaid(self.runs))

    def action_toggle_log(self) -> None:
        chart = self.query_one(OverlayChart)
        chart.log_scale = not chart.log_scale
        self._show(self.runs)

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.dismiss()
        else:
            self.app.exit()
