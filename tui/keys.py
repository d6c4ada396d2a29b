"""The monitor's keys: which are live (a dimmed one says why), and what each asks of the run.

A part of `tui.app.TrainmonApp` kept apart: it reads the app's latest snapshot and sends commands through
its run handle; every change still applies at the loop's safe point, never here.
"""

from __future__ import annotations

from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import MAX_BATCH_SIZE

from .screens.batch_size_dialog import BatchSizeDialog
from .screens.confirm_stop import ConfirmStop
from .screens.help_screen import HelpScreen
from .widgets.loss_pane import LossPane

CONTROL_ACTIONS = {"toggle_pause", "step_once", "grow_batch", "shrink_batch", "set_batch", "accum_up", "accum_down",
                   "save_checkpoint"}
BATCH_ACTIONS = {"grow_batch", "shrink_batch", "set_batch"}
ACCUM_ACTIONS = {"accum_up", "accum_down"}
FINAL_STATES = msg.FINAL_STATES


class RunKeys:
    """Mixed into `TrainmonApp` (before `App`): `check_action`, `on_key` and the `action_*` methods."""

    # the `?` screen's key table (the footer shows only some of them at 80 columns)
    KEY_HELP = [
        ("space / p", "pause before the next iteration; again to resume"),
        ("n", "while paused: run exactly one iteration, then pause again"),
        ("+ / -", "double / halve the batch size from the next epoch (the loader is rebuilt)"),
        ("b", "type an exact batch size for the next epoch"),
        ("] / [", "accumulation steps +1 / −1 from the next window"),
        ("s", "save a checkpoint at the next safe point (runs that keep checkpoints; trainmon resume goes on from it)"),
        ("l", "chart: linear / log scale"),
        ("m", "chart: loss → learning rate → grad norm → throughput → data wait → memory → each validation metric"),
        ("x", "chart's x axis: global iteration → optimizer step → samples seen (tokens where counted) → active time"),
        (", / .", "chart: less / more smoothing (EMA weight 0 = off, 0.6, 0.8, 0.9, 0.95, 0.99; shown in its title)"),
        ("a", "the run's alerts (NaN loss, stall, ...): when, where, why; a click on the status line's ⚠ too"),
        ("r", "every run of yours: filter (lr=0.01), Enter opens one, space marks, m compares the marked"),
        ("o", "the job's own output (its prints, stderr; progress bars as their last state), live; k: a rank"),
        ("c", "the run's config: settings as given and as resolved, versions, host"),
        ("?", "this screen"),
        ("d", "detach: close this view, the run goes on (trainmon attach to come back)"),
        ("Ctrl+Z", "suspend this view (fg to come back); the run goes on meanwhile"),
        ("q", "stop the run (asks first: y or q again stops it after the current iteration, n keeps it going); "
              "once stopping, q again forces; on an ended run q closes this view"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        """Dim (None) the keys that make no sense right now instead of ignoring them."""
        s = self.snapshot
        if action == "toggle_pause" and parameters and (parameters[0] == "resume") != self.pausing():
            return False  # space reads Pause while the run goes, Resume once paused (or a pause was asked)
        if action == "detach" and self.read_only:
            return None
        if action in ("quit_run", "close"):  # one q: "Stop" while the run can be stopped, else "Quit"
            return (action == "quit_run") == self.can_stop() or False
        if action in CONTROL_ACTIONS:
            if self.read_only or self.status in FINAL_STATES or self.status == msg.STOPPING:
                return None
            if self.status == msg.STARTING and action != "toggle_pause":  # a pause waits for the first iteration
                return None
            if action == "step_once" and s.status != msg.PAUSED:
                return None
            if action in BATCH_ACTIONS and (s.epoch >= s.epochs or s.batch_size_off):
                return None  # no epoch left, or a tracked loop that cannot take one (`?` says why)
            if action in ACCUM_ACTIONS and s.accum_off:
                return None
            if action == "shrink_batch" and self._target_batch_size() <= 1:
                return None
            if action == "grow_batch" and self._target_batch_size() * 2 > self._batch_size_limit():
                return None
            if action == "accum_down" and self._target_accum() <= 1:
                return None
            if action == "save_checkpoint" and not s.checkpoints:
                return None
        return True

    OFF_KEYS = {"plus": "batch_size_off", "minus": "batch_size_off", "b": "batch_size_off",
                "right_square_bracket": "accum_off", "left_square_bracket": "accum_off"}

    def on_key(self, event: Any) -> None:
        """A dimmed batch-size or accumulation key of a tracked loop that cannot take the change: say why
        (the binding itself does not run; `?` lists the reasons too)."""
        reason = getattr(self.snapshot, self.OFF_KEYS.get(event.key, ""), None) if not self.read_only else None
        if reason and self.status not in FINAL_STATES:
            self.notify(f"not available: {reason}", severity="warning", timeout=4, markup=False)

    def _batch_size_limit(self) -> int:
        """The largest batch size the engine would accept: the run's cap, the arithmetic's maximum,
        and with drop_last the dataset size."""
        s = self.snapshot
        limit = min(s.max_batch_size or MAX_BATCH_SIZE, MAX_BATCH_SIZE)
        if s.drop_last and s.dataset_size:
            limit = min(limit, s.dataset_size)
        return limit

    def _pending_value(self, what: str) -> Optional[int]:
        return next((p.new for p in self.snapshot.pending if p.what == what), None)

    def _forget_seen_wants(self, s: msg.Snapshot) -> None:
        """A wanted value the engine now shows (pending or applied) needs no more remembering."""
        if self._wanted_batch_size in (self._pending_value("batch size"), s.batch_size):
            self._wanted_batch_size = None
        if self._wanted_accum in (self._pending_value("accumulation steps"), s.accum):
            self._wanted_accum = None

    def _target_batch_size(self) -> int:
        return self._wanted_batch_size or self._pending_value("batch size") or self.snapshot.batch_size

    def _target_accum(self) -> int:
        return self._wanted_accum or self._pending_value("accumulation steps") or self.snapshot.accum

    def _want_batch_size(self, value: int) -> None:
        self._wanted_batch_size = value
        self._send(msg.SetBatchSize(value))

    def _want_accum(self, value: int) -> None:
        self._wanted_accum = value
        self._send(msg.SetAccum(value))

    def _send(self, command: Any) -> None:
        """Queue a command and look again shortly, so its effect shows without waiting a full refresh."""
        sent = self.run_handle.send(command)
        if isinstance(sent, str):  # a socket client names each command: its answer carries the id back
            self.sent_ids.add(sent)
        self.set_timer(0.05, self.poll_engine)

    def mine(self, rejected: Any) -> bool:
        """A refusal of a command this viewer sent (one without an id came from an in-process handle:
        this viewer's too); another viewer's refusals are that viewer's to show."""
        command_id = getattr(rejected.command, "id", "")
        return not command_id or command_id in self.sent_ids

    def pausing(self) -> bool:
        """Paused, or a pause was asked and not yet shown: space now resumes."""
        return self.snapshot.status == msg.PAUSED or self._pause_requested

    def action_toggle_pause(self, _label: str = "") -> None:
        if self.snapshot.status == msg.PAUSED or self._pause_requested:
            self._pause_requested = False
            self._send(msg.Resume())
        else:
            self._pause_requested = True  # until the engine shows PAUSED (at its next safe point)
            self._send(msg.Pause())

    def action_step_once(self) -> None:
        self._send(msg.StepOnce())

    def action_grow_batch(self) -> None:
        self._want_batch_size(self._target_batch_size() * 2)

    def action_shrink_batch(self) -> None:
        self._want_batch_size(max(1, self._target_batch_size() // 2))

    def action_set_batch(self) -> None:
        s = self.snapshot

        def chosen(value: Optional[int]) -> None:
            if value is not None:
                self._want_batch_size(value)

        pending = self._wanted_batch_size or self._pending_value("batch size")
        self.push_screen(BatchSizeDialog(s.batch_size, s.dataset_size, s.drop_last, s.epoch + 1, pending), chosen)

    def action_accum_up(self) -> None:
        self._want_accum(self._target_accum() + 1)

    def action_accum_down(self) -> None:
        self._want_accum(max(1, self._target_accum() - 1))

    def action_save_checkpoint(self) -> None:
        """s: the engine saves at its next safe point and answers CheckpointSaved or CheckpointFailed."""
        self._send(msg.SaveCheckpoint())

    def action_toggle_log(self) -> None:
        loss = self.query_one(LossPane)
        loss.log_scale = not loss.log_scale
        loss.show(self.snapshot)
        self.draw_chart()

    def action_next_axis(self) -> None:
        """x: the chart's next x axis (its title names it)."""
        self.draw_chart()  # the pane knows the newest timeline (which axes the run has)
        self.query_one(LossPane).next_axis()
        self.draw_chart()

    def action_next_chart(self) -> None:
        """m: the next chart (loss, learning rate, grad norm, throughput, data wait, memory, validation metrics)."""
        self.query_one(LossPane).next_view()
        self.draw_chart()

    def action_smooth(self, more: bool) -> None:
        """. / ,: more / less smoothing of the chart's line (the weight in its title)."""
        self.query_one(LossPane).smooth(more)
        self.draw_chart()

    def action_help(self) -> None:
        keys = list(self.KEY_HELP)
        for off, label in ((self.snapshot.batch_size_off, "+ - b"), (self.snapshot.accum_off, "] [")):
            if off:  # a tracked loop that cannot take the change: the dimmed keys' reason
                keys.append((label, f"off: {off}"))
        self.push_screen(HelpScreen(self.snapshot, keys, live=lambda: self.snapshot))

    def action_interrupt(self) -> None:
        """Ctrl+C: stop without asking (the first stops after the current iteration, a second aborts);
        the exit code says the run was interrupted (130)."""
        self._interrupted = True
        self._stop_run()

    def exit_code(self) -> int:
        """1 if the run failed, 130 if Ctrl+C ended it early, else 0."""
        if self.failed_event is not None:
            return 1
        if self._interrupted and not (self.finished_event is not None and not self.finished_event.stopped):
            return 130
        return 0

    def action_detach(self) -> None:
        """d: leave the run going and close this view (`trainmon attach` comes back to it). On a run that
        can go on no more (ended, lost, read-only), it only closes the view, as q does there."""
        self.detached = self.can_stop()
        self.exit(0, return_code=0)

    def can_stop(self) -> bool:
        """A live run this viewer steers: q stops it (after asking); otherwise q only closes the view."""
        return not (self.read_only or self.status in FINAL_STATES or not self.run_handle.alive)

    def action_close(self) -> None:
        """q on an ended, lost or read-only run: close the view (there is nothing to stop)."""
        self.exit(self.exit_code(), return_code=self.exit_code())

    def action_quit_run(self) -> None:
        """q: ask first (`ConfirmStop`: y or q again stops, n or Esc keeps it going, d detaches). Once a
        stop was sent, q again forces without asking."""
        if not self.can_stop() or self.quit_requests:
            self._stop_run()
            return
        others = max(0, getattr(self.run_handle, "viewers", 1) - 1)

        def chosen(choice: Optional[str]) -> None:
            if choice == "stop":
                self._stop_run()
            elif choice == "detach":
                self.action_detach()

        self.push_screen(ConfirmStop(self.run_id, others), chosen)

    def _stop_run(self) -> None:
        """First time: stop after the current iteration, exit when the loop has finished. Again: force."""
        code = self.exit_code()
        if not self.can_stop():
            self.exit(code, return_code=code)
            return
        self.quit_requests += 1
        if self.quit_requests == 1:
            self._send(msg.Stop())
            self.notify("stopping after the current iteration — press q again to force", timeout=5)
            self._show(self.snapshot)
            self.refresh_bindings()
        else:
            self.run_handle.terminate()
            self.exit(code, return_code=code)
