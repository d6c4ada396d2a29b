"""Every run of yours in one table: status, job, progress, best validation loss, alerts, age. Type a filter
(`digits running lr=0.01`), open a run with Enter, mark several with space and compare them with `m`.

Runs are read in a worker thread (run.json and snapshot.json only), so a sweep of hundreds of runs never
holds the screen; the list is read again every few seconds while it is open.
"""

from __future__ import annotations

from typing import Optional

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from trainmon.engine.record.compare import MAX_OVERLAY
from trainmon.engine.record.run_list import FilterError, RunRow, age_text, matches, parse_filter, run_row

REREAD_SECONDS = 3.0  # the list follows live runs this often
COLUMNS = ("mark", "id", "status", "job", "epochs", "best val", "alerts", "age")
NARROW = 96  # below this width the job column goes (the id holds the job's name) and `alerts` reads `⚠`
MARK = "●"


def read_rows() -> list[RunRow]:
    """Every run's row, newest first (a run directory that vanished while it was read is left out)."""
    from trainmon.engine.record.rundir import list_runs

    return [run_row(run) for run in reversed(list_runs())]


class RunsScreen(Screen[Optional[str]]):
    """`r` in the monitor. Dismissed with the run directory of the run to open (Enter), or None (esc / q)."""

    CSS_PATH = "runs.tcss"
    HIDES_RUN_KEYS = True  # over the monitor: its keys (pause, batch size, ...) are hidden meanwhile
    BINDINGS = [
        Binding("space", "toggle_mark", "Mark"),
        Binding("m", "compare", "Compare marked"),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("escape,q", "close", "Back", key_display="q"),
    ]

    def __init__(self, current: str = "") -> None:
        super().__init__()
        self.current = current
        self.rows: list[RunRow] = []
        self.marked: list[str] = []  # ids, in the order marked (the compare view's colours follow it)
        self.terms: list = []
        self._shown: tuple = ()

    def compose(self) -> ComposeResult:
        yield Static("[b]Runs[/] [dim]reading…[/]", id="runs-title")
        yield Input(placeholder="filter: words of the id, job or status · name=value of a setting (lr=0.01)",
                    id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._reread()
        self.set_interval(REREAD_SECONDS, self._reread)

    def _reread(self) -> None:
        self.run_worker(self._read_in_thread, thread=True, exclusive=True, group="runs-read")

    def _read_in_thread(self) -> None:
        rows = read_rows()
        self.app.call_from_thread(self._take, rows)

    def _take(self, rows: list[RunRow]) -> None:
        self.rows = rows
        self._fill()

    def shown(self) -> list[RunRow]:
        """The rows the filter lets through."""
        return [row for row in self.rows if matches(row, self.terms)]

    def on_resize(self) -> None:
        if self.rows:
            self._fill()

    def _columns(self) -> list[str]:
        return [c for c in COLUMNS if c != "job" or self.size.width >= NARROW]

    def _fill(self) -> None:
        rows = self.shown()
        columns = self._columns()
        cells = [(r.id, r.id in self.marked, r.status, r.job, r.progress, r.best_val, r.alerts, age_text(r.age))
                 for r in rows]
        live = sum(r.live for r in self.rows)
        self.query_one("#runs-title", Static).update(
            f"[b]Runs[/]: {len(rows)} of {len(self.rows)} · {live} live · {len(self.marked)} marked "
            "[dim]· Enter opens one[/]")
        if (tuple(columns), tuple(cells)) == self._shown:
            return
        self._shown = (tuple(columns), tuple(cells))
        table = self.query_one(DataTable)
        key = self._cursor_id()
        table.clear(columns=True)
        narrow = "job" not in columns
        table_rows = []
        for run_id, marked, status, job, progress, best, alerts, age in cells:
            row = {"mark": MARK if marked else "", "id": Text(run_id, style="bold" if run_id == self.current else ""),
                   "status": status, "job": job, "epochs": progress, "best val": best,
                   "alerts": Text(str(alerts), style="bold #ffe14d") if alerts else "0", "age": age}
            table_rows.append((run_id, [row[name] for name in columns]))
        for index, name in enumerate(columns):
            label = {"mark": "", "alerts": "⚠" if narrow else "alerts"}.get(name, name)
            # widths set from the cells, not measured by the table later: a table filled while its screen was
            # not the one shown (opened over a summary) kept its labels' widths and cut every value short
            width = max([cell_len(label)] + [cell_len(str(cells_[index])) for _key, cells_ in table_rows])
            table.add_column(label, key=name, width=width)
        for run_id, row_cells in table_rows:
            table.add_row(*row_cells, key=run_id)
        if key is not None and key in table.rows:
            table.move_cursor(row=table.get_row_index(key))

    def _cursor_id(self) -> Optional[str]:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def on_input_changed(self, event: Input.Changed) -> None:
        try:
            self.terms = parse_filter(event.value)
        except FilterError as exc:
            self._note(f"[b #ff5c5c]{exc}[/]")
            return
        self._note("")
        self._fill()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        path = next((r.path for r in self.rows if r.id == event.row_key.value), None)
        if path is not None:
            self.dismiss(path)

    def _note(self, text: str) -> None:
        self.query_one("#runs-note", Static).update(text)

    def action_toggle_mark(self) -> None:
        run_id = self._cursor_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        elif len(self.marked) >= MAX_OVERLAY:
            self.notify(f"at most {MAX_OVERLAY} runs compare at once: unmark one first", severity="warning")
            return
        else:
            self.marked.append(run_id)
        self._fill()
        table = self.query_one(DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        from .compare_screen import CompareScreen

        paths = {r.id: r.path for r in self.rows}
        chosen = [paths[i] for i in self.marked if i in paths]
        if len(chosen) < 2:
            self.notify("mark two runs or more with space, then m compares them", severity="warning")
            return
        from pathlib import Path

        self.app.push_screen(CompareScreen([Path(p) for p in chosen]))

    def action_focus_filter(self) -> None:
        self.query_one(Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)
