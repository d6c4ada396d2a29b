"""Tiny real jobs for engine and UI tests (CPU, a few milliseconds an epoch)."""

from __future__ import annotations

import json
import os
import signal
import threading

# One torch (OpenMP) thread in each test process and every process a test starts: pytest-xdist runs two
# workers on two cores, each starting engines, and OpenMP threads spinning on a shared core made a 1 s
# epoch take minutes (measured: an epoch 3.2× slower beside two busy processes). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from tmux import tmux  # noqa: F401 - the fixture, for every test module that asks for it
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from trainmon.engine.control.channel import Channel
from trainmon.engine.jobs.job import Job


def regression_data(m: int = 53, features: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, features, generator=g)
    y = x @ torch.randn(features, 1, generator=g) + 0.1 * torch.randn(m, 1, generator=g)
    return x, y


class Stream(IterableDataset):
    """An IterableDataset without a length: yields (x, y) rows in order."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


def linear_job(m: int = 53, iterable: bool = False, **defaults) -> Job:
    torch.manual_seed(0)
    x, y = regression_data(m)
    data = Stream(x, y) if iterable else TensorDataset(x, y)
    base = dict(epochs=1, batch_size=8, lr=0.1, shuffle=False, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr))
    base.update(defaults)
    return Job(name="linear", model=nn.Linear(5, 1), train_dataset=data, loss_fn=nn.functional.mse_loss, **base)


def collect(channel: Channel):
    """Drain a channel: (snapshots, events)."""
    snaps, events = [], []
    while True:
        upd = channel.poll()
        if upd.snapshot is None and not upd.events:
            return snaps, events
        if upd.snapshot is not None:
            snaps.append(upd.snapshot)
        events.extend(upd.events)


class ThreadRun:
    """A Trainer on a thread, for tests that drive it with commands."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.result = self.trainer.run()

    def start(self):
        self.thread.start()
        return self


@pytest.fixture
def thread_run():
    runs = []

    def start(trainer):
        run = ThreadRun(trainer).start()
        runs.append(run)
        return run

    yield start
    for run in runs:
        from trainmon.engine.core import messages as msg

        run.trainer.channel.send(msg.Stop())
        run.thread.join(timeout=20)


@pytest.fixture(autouse=True)
def trainmon_home(tmp_path_factory, monkeypatch):
    """Every test records its runs in a folder of its own, and no engine it started outlives it."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TRAINMON_HOME", str(home))
    yield home
    from trainmon.engine.record.rundir import engine_alive

    for run_file in (home / "runs").glob("*/run.json"):
        if engine_alive(run_file.parent):
            pid = json.loads(run_file.read_text()).get("pid")
            if pid and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def pytest_configure(config):
    """Tests send SIGINT and SIGHUP to the scripts they start, as a terminal would. A test run started in the
    background (`cmd &` without job control ignores SIGINT) or under `nohup` (SIGHUP) would hand those
    scripts the signals ignored (an ignored signal stays ignored across exec, and trainmon rightly leaves a
    signal the script's caller ignored alone): the run itself gets them back, its children after it."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """A test that calls the CLI's `main()` in-process (it sets SIGPIPE to its default, as a command line
    tool should) or starts a tracked loop here must not leave its handlers to the tests after it: with
    SIGPIPE at its default, the next write to a closed socket would end pytest itself (exit 141)."""
    signals = [signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
    before = {sig: signal.getsignal(sig) for sig in signals}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) != handler and handler is not None:
            signal.signal(sig, handler)
