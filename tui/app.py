"""The trainmon app: composes the panes, polls the engine at a fixed rate, maps keys to commands.

It holds no training logic: everything it shows comes from snapshots and events of a run handle
(`engine.client.RunClient` over a run's control socket, `engine.recorded.RecordedRun` for an ended run,
`engine.threaded.ThreadRun` or a scripted fake in tests).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Optional

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from trainmon.engine.core import messages as msg

from .alerts import AlertView, announce
from .checkpoints import CheckpointView, rejected_toast
from .compat import FrameHook, patch_monochrome_filter
from .keys import CONTROL_ACTIONS, FINAL_STATES, RunKeys
from .run_views import RunViews
from .screens.alerts_screen import AlertsScreen
from .screens.batch_size_dialog import BatchSizeDialog
from .screens.failure_screen import FailureScreen
from .screens.summary_screen import SummaryScreen
from .summary import RunSummary
from .terminal_diff import TerminalMirror, mirrored
from .widgets.accum_pane import AccumPane
from .widgets.devices_pane import DevicesPane
from .widgets.loss_pane import LossPane
from .widgets.progress_pane import ProgressPane
from .widgets.quiet import QuietStatic
from .widgets.ranks_pane import RanksPane
from .widgets.status_pane import StatusPane

patch_monochrome_filter()

# The footer shows + and ] for the pairs +/- and ]/[ (so every key, q included, fits at 80 columns,
# and a dimmed pair looks dimmed: Textual's binding groups never dim their label).

MIN_SIZE = (80, 24)  # columns, rows: below, a notice in the panes' place


class TrainmonApp(FrameHook, RunKeys, RunViews, App[int]):
    """Live monitor over `run` (a started or startable run handle). Exit code: 1 if the run failed.

    `refresh_hz` (≤ 10) is how often the snapshot is polled and the counters redrawn; `chart_hz` how
    often the loss chart may redraw. Drawing is the app's main cost and on a 2-core box it is taken
    from training: measured here at 100×30, 10 Hz / 2 Hz cost ~16% of a core, 4 Hz / 1 Hz ~8%.
    """

    CSS_PATH = "app.tcss"
    TITLE = "trainmon"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "toggle_pause('pause')", "Pause"),  # the footer shows one of the two (check_action)
        Binding("space", "toggle_pause('resume')", "Resume"),
        Binding("p", "toggle_pause", "Pause/Resume", show=False),
        Binding("n", "step_once", "Step"),
        Binding("plus", "grow_batch", "Batch×2÷2", key_display="+-"),
        Binding("minus", "shrink_batch", "Batch÷2", show=False),
        Binding("b", "set_batch", "Batch…"),
        Binding("right_square_bracket", "accum_up", "Accum±1", key_display="[]"),
        Binding("left_square_bracket", "accum_down", "Accum−", show=False),
        Binding("s", "save_checkpoint", "Save"),
        Binding("l", "toggle_log", "Log scale", show=False),
        Binding("x", "next_axis", "X axis", show=False),  # chart keys: `?` lists them (the footer is full at 80)
        Binding("m", "next_chart", "Chart", show=False),
        Binding("full_stop", "smooth(True)", "Smoother", show=False),
        Binding("comma", "smooth(False)", "Rougher", show=False),
        Binding("a", "show_alerts", "Alerts", show=False),  # the status line's badge says so (the footer is full at 80)
        Binding("r", "show_runs", "Runs", show=False),  # every run: open one, compare several (`?` lists it)
        Binding("o", "show_output", "Output", show=False),  # `?` lists it (the footer is full at 80)
        Binding("c", "show_config", "Config", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("d", "detach", "Detach"),
        Binding("q", "quit_run", "Stop"),  # asks to confirm (ConfirmStop); shown while the run can be stopped
        Binding("q", "close", "Quit"),  # an ended, lost or read-only run: q closes the view
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),
        Binding("ctrl+z", "suspend_process", "Suspend", show=False, priority=True),
    ]

    def __init__(self, run: Any, refresh_hz: float = 4.0, chart_hz: float = 1.0, run_id: str = "") -> None:
        super().__init__()
        self.refresh_hz, self.chart_hz = refresh_hz, chart_hz
        # what the terminal shows, so a frame sends only the cells that changed (see terminal_diff)
        self.mirror: Optional[TerminalMirror] = TerminalMirror()
        self.watch_only = False  # `trainmon serve`'s read-only tab: a run opened from the runs screen is watched too
        self._switching = False  # the runs screen's choice is being composed: the timers wait (panes half there)
        self._take_run(run, run_id)

    def _take_run(self, run: Any, run_id: str) -> None:
        """Everything this viewer knows of one run, from nothing (again when the runs screen opens another:
        a state of a run belongs here, not in `__init__`)."""
        self.run_handle = run
        self.run_id = run_id
        self.read_only = bool(getattr(run, "read_only", False))
        self.detached = False
        self.sent_ids: set[str] = set()  # ids of the commands this viewer sent (their refusals are its to show)
        self.snapshot = msg.Snapshot()
        self.finished_event: Optional[msg.Finished] = None
        self.failed_event: Optional[msg.Failed] = None
        self.quit_requests = 0
        self.memory_spark: deque[float] = deque(maxlen=120)
        self._last_device_time: Optional[float] = None
        self._first_rate_snapshot: Optional[msg.Snapshot] = None
        self._binding_state: tuple = ()
        self._interrupted = False
        self._pause_requested = False
        # targets of commands sent but not yet seen in a snapshot, so quick repeated keys add up
        self._wanted_batch_size: Optional[int] = None
        self._wanted_accum: Optional[int] = None
        self.engine_lost = False  # the engine vanished without a final event (killed, crashed)
        self.checkpoints = CheckpointView()
        self._replayed = False  # the first update with a snapshot (a late viewer's replay) has been taken
        self.summary, self._summary_shown = RunSummary(), False
        self._welcomes = 0  # the run handle's Welcome frames seen (RunClient: one more after each reconnection)
        self.alert_view = AlertView()  # the run's alerts: the status line's badge, `a`'s list

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusPane(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ProgressPane(id="progress", classes="pane")
                yield AccumPane(id="accum", classes="pane")
                yield DevicesPane(id="devices", classes="pane")
                yield RanksPane(id="ranks", classes="pane")  # in the Devices pane's place when world_size > 1
            yield LossPane(id="loss", classes="pane")
        yield QuietStatic(id="too-small")  # in the panes' place below MIN_SIZE
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app_resume_signal.subscribe(self, self._redraw_all)
        self._show(self.snapshot)
        self.set_interval(1 / self.refresh_hz, self.poll_engine)
        self.set_interval(1 / self.chart_hz, self.draw_chart)
        self._reflow(self.size.width, self.size.height)

    def on_resize(self, event) -> None:
        if self.mirror is not None:
            self.mirror.forget()  # the terminal may have cleared or reflowed what it showed
        self._reflow(event.size.width, event.size.height)

    def filter_frame(self, renderable: Any) -> Any:
        """Every frame reaches the terminal through here (see `compat.FrameHook`): through the mirror."""
        return mirrored(renderable, self.mirror)

    def _redraw_all(self, _app: Any = None) -> None:
        """Back from Ctrl+Z (`fg`): the terminal shows nothing of ours any more; paint every cell."""
        if self.mirror is not None:
            self.mirror.forget()
        self.screen.refresh(layout=True)

    def _reflow(self, width: int, height: int) -> None:
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.screen.set_class(small, "-too-small")
        if small:  # say so rather than show cut numbers; the keys still work
            self.query_one("#too-small", QuietStatic).show_text(
                f"[b]terminal too small[/]: {width}×{height}, trainmon needs {MIN_SIZE[0]}×{MIN_SIZE[1]}\n"
                "the run goes on · q stop · d detach · ? help")
        self.screen.set_class(width >= 140, "-wide")
        self.screen.set_class(height >= 40, "-tall")
        self.screen.set_class(width < 96, "-narrow")
        self.screen.set_class(height < 28, "-short")

    # ------------------------------------------------------------------ engine polling
    @property
    def status(self) -> str:
        if self.engine_lost:
            return msg.LOST
        if self.failed_event is not None:
            return msg.FAILED
        if self.finished_event is not None:
            return msg.STOPPED if self.finished_event.stopped else msg.FINISHED
        if self.quit_requests and self.snapshot.status not in FINAL_STATES:
            return msg.STOPPING
        return self.snapshot.status

    def poll_engine(self) -> None:
        """Take the newest snapshot and every event (never one message per iteration)."""
        if self._switching or not self.screen_stack:  # another run's panes being composed, or the app closing
            return
        update = self.run_handle.poll()
        # events before and with the first snapshot may be a replay of the run so far, and so are those that
        # come with a Welcome after a reconnection (a viewer back from Ctrl+Z): history, never toasts
        welcomes = getattr(self.run_handle, "welcomes", 0)
        live, self._welcomes = self._replayed and welcomes == self._welcomes, welcomes
        for event in update.events:
            self._on_engine_event(event, live)
        if not live and update.snapshot is not None:
            self._replayed = True
        if update.snapshot is not None:
            self.snapshot = update.snapshot
            self._forget_seen_wants(update.snapshot)
            if update.snapshot.status == msg.PAUSED:
                self._pause_requested = False
            if self._first_rate_snapshot is None and update.snapshot.global_iteration > 0:
                self._first_rate_snapshot = update.snapshot
            self._show(update.snapshot)
            if isinstance(self.screen, BatchSizeDialog):
                self.screen.follow(update.snapshot.epoch + 1)
        elif update.events:
            self._show(self.snapshot)
        if (self.finished_event is None and self.failed_event is None and not self.read_only
                and not self.run_handle.alive and self.run_handle.exitcode is not None):
            reason = self.run_handle.gone_reason() if hasattr(self.run_handle, "gone_reason") else None
            self.engine_lost = True
            self.failed_event = msg.Failed(reason or f"the engine exited with code {self.run_handle.exitcode}", "")
            self.push_screen(FailureScreen(self.failed_event.message, "The run directory keeps everything recorded "
                                           "until then: trainmon logs and trainmon attach show it.", title="LOST"))
            self._show(self.snapshot)
        if self.finished_event is not None and not self._summary_shown and not self.quit_requests:
            self._show_summary()
        self._refresh_bindings_if_changed()

    def _show_summary(self) -> None:
        """The run has ended (live, or it had when this viewer attached): its summary, once, over the charts."""
        self._summary_shown = True
        f = self.finished_event
        rows = self.summary.lines(f, self.snapshot, self.checkpoints.newest(self.snapshot), self.run_id, self.read_only)
        title = f"{'STOPPED' if f.stopped else 'FINISHED'}" + (f" — run {self.run_id}" if self.run_id else "")
        self.push_screen(SummaryScreen(title, rows))

    def _refresh_bindings_if_changed(self) -> None:
        """Recompose the footer only when a key's availability changed (a footer refresh is a full layout)."""
        state = tuple(self.check_action(action, ()) for action in sorted(CONTROL_ACTIONS | {"quit_run"}))
        state += (self.pausing(),)  # Pause or Resume
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    def _on_engine_event(self, event: Any, live: bool = True) -> None:
        loss = self.query_one(LossPane)
        self.summary.take(event)
        if isinstance(event, (msg.CheckpointSaved, msg.CheckpointFailed, msg.RunResumed)):
            self._toast(self.checkpoints.take(event, live))
        if isinstance(event, msg.RunResumed):
            loss.resume_markers.append(event.global_iteration)
            self.finished_event = self.failed_event = None  # an end before a resume (replayed from the log) is over
        if isinstance(event, msg.CommandRejected):
            self._wanted_batch_size = self._wanted_accum = None
        if isinstance(event, msg.Alert):
            self.alert_view.take(event)
            loss.alert_markers.append((event.global_iteration, event.kind))
            if live:  # a replayed alert is listed and marked, never rung
                announce(self, event, self.run_id)
            if isinstance(self.screen, AlertsScreen):
                self.screen.follow(list(self.alert_view.alerts), self.alert_view.count)
        if isinstance(event, msg.EpochEnded):
            loss.take_epoch(event)  # its mark, its best, its validation figures
        elif isinstance(event, msg.BatchSizeChanged):
            loss.markers.append((event.global_iteration, f"b {event.old}→{event.new}"))
            self._toast((f"batch size {event.old} → {event.new} from epoch {event.epoch}", "information"), live)
        elif isinstance(event, msg.BatchSizeReverted):
            loss.markers.append((event.global_iteration, f"b {event.old}→{event.new} OOM"))
            self._toast((event.message, "warning"), live)
        elif isinstance(event, msg.AccumChanged):
            loss.markers.append((event.global_iteration, f"k {event.old}→{event.new}"))
            self._toast((f"accumulation steps {event.old} → {event.new}", "information"), live)
        elif isinstance(event, msg.Warned):
            self._toast((event.message, "warning"), live)
        elif isinstance(event, msg.CommandRejected) and not self.read_only and self.mine(event):
            self._toast(rejected_toast(event), live)
        elif isinstance(event, msg.Finished):
            self.finished_event = event
            if self.quit_requests:
                self.exit(self.exit_code(), return_code=self.exit_code())
        elif isinstance(event, msg.Failed) and event.phase == "setup" and not self.read_only:
            self.failed_event = event  # the job or an option was refused before training: one line, exit 2
            self.exit(2, return_code=2)
        elif isinstance(event, msg.Failed):
            self.failed_event = event
            text = (event.user_traceback + "\nFull traceback:\n" if event.user_traceback else "") + event.traceback
            self.push_screen(FailureScreen(event.message, text))

    def _toast(self, toast: Optional[tuple[str, str]], live: bool = True) -> None:
        """Show `(text, severity)` while someone watches it happen; a replayed event (an ended run, a late
        or reconnected viewer) toasts nothing: the chart, status line and summary carry the history."""
        if toast is not None and live:
            text, severity = toast
            # no markup: paths and OS errors hold brackets ("[Errno 28] No space left on device")
            self.notify(text, severity=severity, timeout=10 if severity in ("error", "warning") else 5,
                        markup=False)

    def _show(self, s: msg.Snapshot) -> None:
        self.query_one(StatusPane).show(s, self.status, self.run_id, self.read_only,
                                        self.checkpoints.newest(s), self.checkpoints.failure(s),
                                        alerts=self.alert_view.badge())
        self.query_one(ProgressPane).show(s)
        self.query_one(AccumPane).show(s, self.status)
        self.query_one(LossPane).show(s)
        devices = s.devices
        # the sparkline follows memory while the run trains and holds while it is paused (the figures
        # above it stay live): shifting it each second would repaint it, ~2 KB a second over SSH
        if (devices is not None and (s.status != msg.PAUSED or not self.memory_spark) and self.status not in FINAL_STATES
                and getattr(devices, "time", None) != self._last_device_time):
            self._last_device_time = devices.time
            gpu = devices.gpus[0].memory_used_mib if devices.gpus else None
            value = gpu if gpu is not None else devices.host.process_rss_mib
            if value is not None:
                self.memory_spark.append(value)
        ended = self.status in FINAL_STATES  # the figures are the engine's last reading, not live
        self.query_one(DevicesPane).show(devices, list(self.memory_spark), ended=ended)
        self._show_ranks(s)

    def _show_ranks(self, s: msg.Snapshot) -> None:
        """A distributed run: every rank's row in the Devices pane's place (which shows rank 0's device only);
        the chart keeps its size at 100×30 and 80×24 alike."""
        distributed = s.world_size > 1
        ranks = self.query_one(RanksPane)
        if ranks.display != distributed:  # a display change re-lays out the screen: only when it changes
            ranks.display = distributed
            self.query_one(DevicesPane).display = not distributed
        if distributed:
            ranks.show(s)

    def action_show_alerts(self) -> None:
        """a, or a click on the status line's badge: the run's alerts, newest first."""
        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen(list(self.alert_view.alerts), self.alert_view.count))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        """Over the runs screen or a comparison the run's keys are hidden (they would steer a run not shown)."""
        stack = self.screen_stack  # empty while the app closes
        if stack and getattr(stack[-1], "HIDES_RUN_KEYS", False) and action not in ("interrupt", "suspend_process"):
            return False
        return super().check_action(action, parameters)

    def action_show_runs(self) -> None:
        """r: every run (screens/runs_screen.py); the one chosen there replaces this one (which goes on)."""
        from .screens.runs_screen import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen(current=self.run_id), self._open_chosen)

    async def _open_chosen(self, path: Optional[str]) -> None:
        """The run chosen on the runs screen replaces this one in this view (the one left goes on, as after
        `d`): its handle is opened, the panes composed afresh, the old handle closed."""
        from trainmon.engine.record.rundir import RunNotFound, read_run

        from .open_run import open_handle

        if path is None:
            return
        try:
            info = read_run(Path(path))
        except RunNotFound as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        if info.id == self.run_id:
            return
        while len(self.screen_stack) > 1:  # a summary or a failure of the run left
            self.pop_screen()
        old = self.run_handle
        self._switching = True
        try:
            self._take_run(open_handle(info, read_only=self.watch_only), info.id)
            await self.recompose()
            if self.mirror is not None:
                self.mirror.forget()
            self._show(self.snapshot)
            self._reflow(self.size.width, self.size.height)
        finally:
            self._switching = False
        old.close()

    def draw_chart(self) -> None:
        panes = self.query(LossPane) if not self._switching and self.screen_stack else None
        if not panes:  # another run's panes being composed, or the app closing (its widgets going)
            return
        history = self.run_handle.loss_history
        timeline = getattr(self.run_handle, "timeline", None)  # a handle from before the timeline has none
        rows, version = (timeline.rows(), timeline.version) if timeline is not None else ([], 0)
        panes.first().draw(history.points(), list(history.nonfinite), history.version, rows, version)

    def measured_rate(self) -> Optional[float]:
        """Iterations per active second between the first and last snapshot seen (for the benchmark)."""
        a, b = self._first_rate_snapshot, self.snapshot
        if a is None or b.active_seconds <= a.active_seconds:
            return None
        return (b.global_iteration - a.global_iteration) / (b.active_seconds - a.active_seconds)
