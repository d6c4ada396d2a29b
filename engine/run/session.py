"""One run's surroundings: its run directory, the recorder, the control socket and telemetry.

The same for a detached engine and a headless run in the foreground: both record themselves and
both can be attached to. No textual; torch only through the trainer it runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from trainmon.engine.control.channel import Channel
from trainmon.engine.control.server import ControlServer
from trainmon.engine.core import messages as msg
from trainmon.engine.core.alerts import AlertSettings
from trainmon.engine.core.history import History
from trainmon.engine.record.paths import make_private_dir, new_run_id, runs_root, socket_path_for
from trainmon.engine.record.recorder import Recorder
from trainmon.engine.record.rundir import RunDirectory, engine_identity

RUN_OPTION_NAMES = ("epochs", "batch_size", "accum", "lr", "drop_last", "device", "batch_growth", "max_batch_size")

RUN_DIR_ENV = "TRAINMON_RUN_DIR"  # set by `trainmon exec`: the run directory a tracked script records into


def create_run(target: str, settings: dict[str, Any], run_dir: Optional[str] = None,
               now: Optional[float] = None) -> RunDirectory:
    """Make a new run directory for job `target` with `settings` (the job's name, image size, seed
    and run options as given) and write its run.json (status starting).

    Without `run_dir`, it goes under `runs_root()` as `<id>`; with one, it goes there and a link
    `runs_root()/<id>` points at it so `ls` and `attach` find it. Raises `FileExistsError` for a
    non-empty `run_dir`, `PermissionError` for a folder owned by someone else.
    """
    now = time.time() if now is None else now
    run_id = new_run_id(target, now)
    root = make_private_dir(runs_root())
    path = Path(run_dir).expanduser().resolve() if run_dir else root / run_id
    info = {
        "id": run_id, "job": settings.get("job") or target, "target": target, "settings": settings,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)), "started_unix": now,
        "cwd": os.getcwd(), "argv": sys.argv, **engine_identity(),
    }
    info["socket"] = str(socket_path_for(run_id, path))
    rundir = RunDirectory.create(path, info)
    if run_dir:
        link = root / run_id
        if not link.exists():
            link.symlink_to(path, target_is_directory=True)
    return rundir


def discard_run(rundir: RunDirectory) -> None:
    """Remove a run that never trained (its job or an option was refused): no clutter in `ls`."""
    import shutil

    link = runs_root() / str(rundir.info.get("id", ""))
    if link.is_symlink():
        link.unlink()
    shutil.rmtree(rundir.path, ignore_errors=True)


def exit_code(result: Any, signals: Sequence[int]) -> int:
    """A finished run's exit code: 2 refused before training, 1 failed, 128 + the first stop signal
    received (130 SIGINT, 143 SIGTERM, 129 SIGHUP), else 0."""
    if isinstance(result, msg.Failed):
        return 2 if result.phase == "setup" else 1
    return 128 + signals[0] if signals else 0


class EngineSession:
    """Hooks a run directory and a control socket to `channel` (as sinks) for one run.

    `start()` takes the run's lock, starts the socket and records this process as the engine;
    `close()` lets viewers read the last events, then closes everything. Commands from viewers go to
    `channel.send`, so they reach the loop at its next safe point like the TUI's always did.
    `alerts`: the run's alert settings (default `TRAINMON_ALERTS`); with `on_alert`, its command hears
    every alert and the run's end (engine/record/alert_hook.py).
    """

    def __init__(self, rundir: RunDirectory, channel: Channel, alerts: Optional[AlertSettings] = None) -> None:
        self.rundir, self.channel = rundir, channel
        rundir.write_behind()  # the loop never waits on a file's replacement
        self.recorder = Recorder(rundir)
        self.server = ControlServer(Path(rundir.info["socket"]), rundir.info["id"], channel.send,
                                    run_dir=str(rundir.path))
        channel.sinks += [self.recorder, self.server]
        self.tensorboard: Any = None  # a TensorBoardSink once train() opened one (`--tensorboard DIR`)
        self.alert_hook = alert_hook(rundir, channel, AlertSettings.from_env() if alerts is None else alerts)
        self.capture: Any = None  # the job's output teed into output.log (engine/record/output_capture.py)
        self.capture_until_exit = False  # a tracked script: what it prints after its loop is the run's too

    @property
    def run_id(self) -> str:
        return str(self.rundir.info["id"])

    def start(self, capture: bool = True) -> "EngineSession":
        """Lock the run, open the socket, record this process; with `capture`, this process's fds 1 and 2
        are teed into the run's output.log from now until `close()` (unless `TRAINMON_CAPTURE=0`)."""
        self.rundir.lock()
        self.server.start()
        note: dict[str, Any] = {}
        if capture:
            from trainmon.engine.record.output_capture import start_capture

            self.capture, note = start_capture(self.rundir.path)
        self.rundir.update(**engine_identity(), **({"output": note} if note else {}))
        return self

    def terminal(self) -> Any:
        """A text stream to the terminal for trainmon's own lines (headless), past the job's capture."""
        return self.capture.stdout() if self.capture is not None else sys.stdout

    def job_ready(self, job: Any, config: Any) -> None:
        """Record what really runs: the job's name and the resolved settings, torch's version."""
        from dataclasses import asdict

        from trainmon.engine.telemetry.host_info import host_info, versions

        self.rundir.update(job=job.name, config=asdict(config), **engine_identity(), machine=host_info(),
                           versions=versions())

    def train(self, job: Any, config: Any, warnings: Sequence[str] = (), worker_log: Optional[str] = None,
              resume: Any = None, distributed: Any = None) -> Any:
        """Record the job, emit the preflight's `warnings`, and train it in this thread with device
        telemetry on, checkpoints in the run directory's checkpoints/ folder, going on from `resume`
        (a `run_state.ResumeFrom`) when given; returns the Trainer's final event (`messages.Finished`
        or `messages.Failed`). `distributed`: rank 0's `Distributed` in a torchrun run."""
        from trainmon.engine.record.checkpoint_files import CHECKPOINT_DIR, CheckpointStore
        from trainmon.engine.run.trainer import Trainer
        from trainmon.engine.telemetry.sampler import DeviceSampler

        self.job_ready(job, config)
        self._add_tensorboard(resume)
        if resume is not None:
            self.recorder.keep_loss_until(int(resume.state["position"]["global_iteration"]),
                                          resume.state["units"]["history"].get("recent"))
        else:
            for warning in warnings:
                self.channel.emit(msg.Warned(warning))
        store = CheckpointStore(self.rundir.path / CHECKPOINT_DIR, keep=config.keep_checkpoints)
        sampler = DeviceSampler(interval=1.0).start()
        try:
            return Trainer(job, config, self.channel, sampler=sampler, worker_log=worker_log, checkpoints=store,
                           resume=resume, run_id=self.run_id, distributed=distributed).run()
        finally:
            sampler.stop()

    def train_rank0(self, dist: Any, job: Any, config: Any, warnings: Sequence[str] = (),
                    worker_log: Optional[str] = None) -> Any:
        """Rank 0 of a torchrun run (`dist`, a started `Distributed`): train as `train` does, for the whole
        run, with the failure folder in the run directory and a watch that ends this process with the
        root cause should another rank fail while this one hangs in a collective
        (engine/record/rank_failures.py). Returns the final event."""
        from trainmon.engine.record.rank_failures import FailureWatch, failure_dir

        folder = failure_dir(self.rundir.path)
        dist.failure_dir = str(folder)
        self.rundir.update(world_size=dist.world_size)  # `trainmon resume` refuses such a run (for now)
        ended: list[bool] = []

        def give_up(failed: msg.Failed) -> None:
            self.channel.emit(failed)
            self.close(1)
            os._exit(1)

        watch = FailureWatch(folder, give_up, done=lambda: bool(ended)).start()
        try:
            result = self.train(job, config, warnings, worker_log=worker_log, distributed=dist)
        finally:
            ended.append(True)
            watch.stop()
        if not isinstance(result, msg.Failed):
            dist.close()
        return result

    def _add_tensorboard(self, resume: Any) -> None:
        """`--tensorboard DIR` (in the run's settings): a live TensorBoard sink on the channel. One that
        cannot open (no tensorboard package, a folder that cannot be made) is one line on stderr, and
        the run goes on without it; a resume purges what it runs again (`purge_step`)."""
        log_dir = ((self.rundir.info.get("settings") or {}).get("options") or {}).get("tensorboard")
        if not log_dir:
            return
        from trainmon.engine.record.tensorboard import TensorBoardSink

        purge = int(resume.state["position"]["global_iteration"]) + 1 if resume is not None else None
        try:
            self.tensorboard = TensorBoardSink(Path(log_dir), purge)
        except Exception as exc:  # noqa: BLE001 - TensorBoard output never stops a run
            print(f"trainmon: no TensorBoard output: {exc}", file=sys.stderr, flush=True)
            # also an event: a detached run's stderr is output.log, where nobody looks
            self.channel.emit(msg.Warned(f"no TensorBoard output in {log_dir}: {exc}"))
            return
        self.channel.sinks.append(self.tensorboard)

    def resuming(self) -> "EngineSession":
        """Before `start()`: this engine goes on with a stopped run (`train(resume=...)`). Takes the
        run's lock first (two resumes of one run never both go on); the event log and the viewers'
        replay go on from the records; run.json forgets the old end and counts the resume."""
        from trainmon.engine.record.rundir import read_events

        self.rundir.lock()
        records = list(read_events(self.rundir.path))
        self.recorder.seq = max((seq for seq, _ in records), default=0)
        self.server.replay_from(records)
        from trainmon.engine.record.loss_archive import LossArchive
        from trainmon.engine.record.rundir import read_loss, read_snapshot

        loss = read_loss(self.rundir.path)
        from trainmon.engine.record.rundir import recorded_timeline

        self.server.show_before_start(read_snapshot(self.rundir.path),
                                      LossArchive.from_dict(loss).to_history() if loss else History(),
                                      recorded_timeline(self.rundir.path))
        resumes = list(self.rundir.info.get("resumes", [])) + [{"unix": time.time()}]
        for stale in ("ended_unix", "exit_code", "message", "resume_request"):
            self.rundir.info.pop(stale, None)
        self.rundir.update(status=msg.STARTING.value, resumes=resumes)
        return self

    def setup_failed(self, message: str, traceback: str = "") -> None:
        """The job could not be built or checked: tell viewers and the run directory (status failed)."""
        self.channel.emit(msg.Failed(message, traceback, phase="setup"))

    def close(self, exit_code: Optional[int] = None) -> None:
        if exit_code is not None:
            self.rundir.update(exit_code=exit_code)
        self.server.close(linger=1.0)
        self.recorder.close()
        if self.alert_hook is not None:
            self.alert_hook.close()  # bounded: the end notice goes out before the process exits
        if self.tensorboard is not None:
            try:
                self.tensorboard.close()
            except Exception:  # noqa: BLE001 - a broken writer was already reported when it broke
                pass
        if self.capture is not None and not self.capture_until_exit:  # last: the final lines are the job's too
            self.capture.stop()


def alert_hook(rundir: RunDirectory, channel: Channel, settings: AlertSettings) -> Any:
    """The `--on-alert` sink on `channel` (its failures come back as `Warned` events), or `None`."""
    if not settings.on_alert:
        return None
    from trainmon.engine.record.alert_hook import AlertHook

    def identity() -> dict[str, Any]:
        return {"run_id": rundir.info.get("id"), "name": rundir.info.get("job"), "run_dir": str(rundir.path)}

    hook = AlertHook(settings.on_alert, identity, warn=channel.emit)
    channel.sinks.append(hook)
    return hook


def open_tracked_session(name: str, settings: dict, run_dir: Optional[str], channel: Channel,
                         alerts: Optional[AlertSettings] = None) -> Any:
    """The run directory and control socket of a tracked loop: `trainmon exec`'s (`$TRAINMON_RUN_DIR`),
    else a new one (under `run_dir` when given); `alerts` as `EngineSession` takes them."""
    from trainmon.engine.record.rundir import RunDirectory

    given = os.environ.get(RUN_DIR_ENV)
    if given and run_dir is None:
        rundir = RunDirectory.open(Path(given))
        rundir.update(job=name, settings={**rundir.info.get("settings", {}), **settings, "job": name})
    else:
        rundir = create_run(name, {"job": name, "tracked": True, **settings}, run_dir=run_dir)
    session = EngineSession(rundir, channel, alerts)
    session.capture_until_exit = True  # stopped at exit, or when another run starts in this process
    session.start()
    from trainmon.engine.telemetry.host_info import host_info, versions

    session.rundir.update(tracked=True, argv=sys.argv, machine=host_info(), versions=versions())
    return session
