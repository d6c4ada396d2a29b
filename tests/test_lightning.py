"""`trainmon.integrations.lightning.TrainmonCallback` with the real Lightning on tiny CPU models: the counts
equal Lightning's own, the loss is the undivided one, batch sizes change where the module allows it, and a
script run in the background is paused, resumed and stopped over its socket."""
# ruff: noqa: E402 - the imports below need the framework, skipped first where it is missing

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("lightning")

import lightning as L
import torch
from conftest import regression_data
from engines import ls_json, wait_until
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import read_events
from trainmon.integrations.lightning import ACCUM_OFF, NO_BATCH_SIZE, NO_RELOAD, TrainmonCallback

ROOT = Path(__file__).resolve().parents[1]
M, B, K = 53, 8, 3  # 7 batches an epoch (the last holds 5 samples), windows of 3, 3 and a short one of 1


class Linear(L.LightningModule):
    """A linear regression on `regression_data(m)`; `batch_size` read by `train_dataloader` each time."""

    def __init__(self, m: int = M, batch_size: int = B, lr: float = 0.05, hooks: dict | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(5, 1)
        self.batch_size, self.lr, self.hooks = batch_size, lr, hooks or {}
        x, y = regression_data(m)
        self.data = TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=len(self.data))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y))
        self.log("val_mae", (self.layer(x) - y).abs().mean())

    def on_train_batch_start(self, batch, batch_idx):
        hook = self.hooks.get((self.current_epoch, batch_idx))
        if hook is not None:
            hook(self)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def fit(module: L.LightningModule, **options) -> tuple[L.Trainer, TrainmonCallback]:
    callback = TrainmonCallback(telemetry=False)
    settings = dict(max_epochs=2, accumulate_grad_batches=K, accelerator="cpu", logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0)
    settings.update(options)
    trainer = L.Trainer(callbacks=[callback], **settings)
    trainer.fit(module)
    return trainer, callback


def events(callback: TrainmonCallback, kind: type) -> list:
    return [event for _, event in read_events(callback.tracker.run_path) if isinstance(event, kind)]


@pytest.mark.timeout(120)
def test_counts_equal_lightnings_own():
    counted = []  # Lightning's batches per epoch, read from its loop at each epoch's end

    class Counting(Linear):
        def on_train_epoch_end(self):
            counted.append(self.trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    trainer, callback = fit(Counting())
    p = callback.tracker.progress
    n = math.ceil(M / B)
    assert trainer.num_training_batches == n and counted == [n, n]
    assert trainer.current_epoch == 2 and p.epoch == 2
    assert trainer.global_step == 2 * math.ceil(n / K) == p.global_step  # the short window is stepped
    assert p.global_iteration == 2 * n == trainer.fit_loop.epoch_loop.batch_progress.total.completed
    assert p.samples_seen == 2 * M
    ended = events(callback, msg.EpochEnded)
    assert [(e.epoch, e.iterations, e.iterations_planned, e.steps, e.accum) for e in ended] == [
        (1, n, n, 3, K), (2, n, n, 3, K)]
    assert ended[-1].val_loss is not None and set(ended[-1].val_metrics) == {"mae"}
    finished = callback.tracker.result
    assert isinstance(finished, msg.Finished) and not finished.stopped
    assert (finished.global_step, finished.global_iteration) == (trainer.global_step, 2 * n)


@pytest.mark.timeout(120)
def test_max_steps_cuts_mid_epoch():
    trainer, callback = fit(Linear(), max_epochs=5, max_steps=5)
    p = callback.tracker.progress
    assert trainer.global_step == 5 == p.global_step
    # epoch 1: 7 batches, 3 steps; epoch 2: two full windows of 3, then Lightning stops
    assert p.global_iteration == 7 + 6 == trainer.fit_loop.epoch_loop.batch_progress.total.completed
    assert [(e.epoch, e.iterations, e.steps) for e in events(callback, msg.EpochEnded)] == [(1, 7, 3), (2, 6, 2)]
    assert not callback.tracker.result.stopped


@pytest.mark.timeout(120)
def test_loss_shown_undivided_by_accumulation():
    module = Linear(lr=0.0)  # the model never moves: each batch's loss is its own MSE
    trainer, callback = fit(module, max_epochs=1)
    x, y = module.data.tensors
    with torch.no_grad():
        whole = nn.functional.mse_loss(module.layer(x), y).item()  # the sample-weighted mean of batch means
    assert callback.tracker.result.train_loss == pytest.approx(whole, rel=1e-5)


@pytest.mark.timeout(120)
def test_batch_size_changes_at_next_epoch_where_the_module_allows():
    sent = []

    def ask(module):
        sent.append(True)
        module.trainer.callbacks[0].tracker.channel.send(msg.SetBatchSize(5))

    module = Linear(hooks={(0, 2): ask})
    trainer, callback = fit(module, reload_dataloaders_every_n_epochs=1)
    assert sent and module.batch_size == 5
    started = events(callback, msg.EpochStarted)
    assert [(e.epoch, e.batch_size, e.iterations) for e in started] == [(1, B, 7), (2, 5, math.ceil(M / 5))]
    assert trainer.num_training_batches == math.ceil(M / 5)
    changed = events(callback, msg.BatchSizeChanged)
    assert [(c.old, c.new, c.epoch) for c in changed] == [(B, 5, 2)]
    assert callback.tracker.progress.samples_seen == 2 * M


@pytest.mark.timeout(120)
def test_batch_size_and_accum_dimmed_with_reasons():

    def ask(module):
        tracker = module.trainer.callbacks[0].tracker
        tracker.channel.send(msg.SetBatchSize(5))
        tracker.channel.send(msg.SetAccum(2))

    trainer, callback = fit(Linear(hooks={(0, 1): ask}), max_epochs=1)  # loaders not rebuilt each epoch
    answers = [(type(e.command).__name__, e.reason) for e in events(callback, msg.CommandRejected)]
    assert answers == [("SetBatchSize", NO_RELOAD), ("SetAccum", ACCUM_OFF)]

    class NoBatchSize(Linear):
        def __init__(self):
            super().__init__()
            del self.batch_size

        def train_dataloader(self):
            return DataLoader(self.data, batch_size=B)

    trainer, callback = fit(NoBatchSize(), max_epochs=1, max_steps=1, reload_dataloaders_every_n_epochs=1)
    assert callback.tracker._control.batch_size_off == NO_BATCH_SIZE


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_import_trainmon_never_imports_lightning_and_a_missing_one_says_what_to_install(monkeypatch):
    code = "import sys, trainmon, trainmon.integrations; assert 'lightning' not in sys.modules, 'imported'"
    assert subprocess.run([sys.executable, "-c", code], cwd="/", timeout=60).returncode == 0
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "trainmon.integrations.lightning")
    with pytest.raises(ImportError, match=r'pip install "trainmon\[lightning\]"'):
        importlib.import_module("trainmon.integrations.lightning")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_background_script_paused_resumed_stopped_over_its_socket(tmp_path, trainmon_home):
    """The example under `nohup`-like conditions (own session, output to a file): a viewer that drops
    never stops it; another pauses it (no iteration while paused), resumes it and stops it (exit 0)."""
    from trainmon.engine.control.client import RunClient

    env = dict(os.environ, TRAINMON_HOME=str(trainmon_home))
    log = (tmp_path / "nohup.out").open("w")
    process = subprocess.Popen([sys.executable, str(ROOT / "examples" / "lightning_digits.py"), "--epochs", "200",
                                "--no-progress-bar"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env, cwd=tmp_path, start_new_session=True)
    try:
        running = wait_until(lambda: [r for r in ls_json(env) if r["status"] == "running"], timeout=120,
                             what="the script's run")
        socket_path = json.loads((Path(running[0]["path"]) / "run.json").read_text())["socket"]

        def iterations(client):
            client.poll()
            return client.latest.global_iteration if client.latest is not None else None

        dropped = RunClient(socket_path).subscribe()
        wait_until(lambda: iterations(dropped), timeout=60, what="a first snapshot")
        dropped.sock.close()  # gone without a word
        viewer = RunClient(socket_path).subscribe()
        seen = wait_until(lambda: iterations(viewer), timeout=30, what="a snapshot")
        wait_until(lambda: (iterations(viewer) or 0) > seen, timeout=30, what="training going on")

        viewer.send(msg.Pause())
        wait_until(lambda: iterations(viewer) and viewer.latest.status == msg.PAUSED, timeout=30, what="paused")
        still = iterations(viewer)
        time.sleep(1.0)
        snap = viewer.latest
        assert iterations(viewer) == still and snap.status == msg.PAUSED
        # what `trainmon attach` shows: 1500 samples at 32 make 47 batches, windows of 4 (the last of 3): 12 steps
        assert (snap.iterations_in_epoch, snap.accum, snap.steps_per_epoch, snap.batch_size) == (47, 4, 12, 32)
        i = snap.iteration_in_epoch
        assert snap.steps_in_epoch == (12 if i == 47 else i // 4)
        assert snap.global_step == 12 * (snap.epoch - 1) + snap.steps_in_epoch and snap.loss is not None
        viewer.send(msg.Resume())
        wait_until(lambda: (iterations(viewer) or 0) > still, timeout=30, what="resumed")
        viewer.send(msg.Stop())
        assert process.wait(timeout=60) == 0
        rows = ls_json(env)
        assert [r["status"] for r in rows] == ["stopped"]
        output = (tmp_path / "nohup.out").read_text()
        # the script's own print of trainer.current_epoch and trainer.global_step
        assert f"epochs {rows[0]['epoch']}, global_step {rows[0]['global_step']}" in output
        viewer.close()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


@pytest.mark.timeout(120)
def test_single_steps_while_paused_then_stop():
    """Pause after batch 1, two single steps (batches 2 and 3), then a stop while waiting before batch 4:
    a callback cannot skip the batch Lightning already fetched, so it runs, and the counts still agree."""
    import threading

    def pause(module):
        tracker = module.trainer.callbacks[0].tracker
        for command in (msg.Pause(), msg.StepOnce(), msg.StepOnce()):
            tracker.channel.send(command)
        threading.Timer(1.0, tracker.channel.send, args=(msg.Stop(),)).start()

    trainer, callback = fit(Linear(hooks={(0, 1): pause}), max_epochs=3)
    p = callback.tracker.progress
    assert [e.global_iteration for e in events(callback, msg.Paused)] == [4]
    assert p.global_iteration == 5 == trainer.fit_loop.epoch_loop.batch_progress.total.completed
    assert p.global_step == trainer.global_step == 1 and trainer.current_epoch == 1
    assert callback.tracker.result.stopped


@pytest.mark.timeout(120)
def test_a_nan_loss_is_counted_and_raises_one_alert():
    """Issue 23 item 6: the loss `training_step` returns is read as it is (a tensor, at publication): NaN at its
    20th call, then NaN weights keep it NaN; 9 non-finite losses, one `nan` alert, no epoch mean of a NaN."""

    class NanFrom20(Linear):
        calls = 0

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            NanFrom20.calls += 1
            return loss * float("nan") if NanFrom20.calls == 20 else loss

    trainer, callback = fit(NanFrom20(), max_epochs=4)  # 7 batches an epoch: the 20th is epoch 3's 6th
    assert callback.tracker.progress.global_iteration == 28
    nonfinite = events(callback, msg.NonFiniteLoss)
    assert [(e.global_iteration, e.epoch) for e in nonfinite] == [(i, 3 if i <= 21 else 4) for i in range(20, 29)]
    assert all(math.isnan(e.value) for e in nonfinite)
    alerts = events(callback, msg.Alert)
    assert [(a.kind, a.epoch, a.global_iteration) for a in alerts] == [("nan", 3, 20)]
    ended = events(callback, msg.EpochEnded)
    assert [e.nonfinite for e in ended] == [0, 0, 2, 7]
    assert ended[2].train_loss is not None and math.isfinite(ended[2].train_loss) and ended[3].train_loss is None
    assert math.isnan(callback.tracker.core.losses.last)


@pytest.mark.timeout(120)
def test_a_fit_counting_tokens_sums_them_beside_the_samples():
    """`TrainmonCallback(unit="tokens", tokens=...)`: every batch's tokens summed with its samples (here 4 a
    sample), so tokens/s is 4 × samples/s; a bad unit is a one-line error at once."""
    callback = TrainmonCallback(telemetry=False, unit="tokens", tokens=lambda batch: 4 * len(batch[1]))
    trainer = L.Trainer(callbacks=[callback], max_epochs=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(Linear())
    meter = callback.tracker.core.throughput
    assert (meter.counted, meter.counted_samples) == (4 * 2 * M, 2 * M)
    assert meter.figures(10.0).tokens_per_second == 40.0
    with pytest.raises(ValueError, match="flops_per_sample must be a number > 0"):
        TrainmonCallback(flops_per_sample=0)


def test_a_batchs_tokens_by_default_are_its_first_tensors_elements():
    from trainmon.integrations.lightning import first_tensor_elements

    ids = torch.zeros(4, 16, dtype=torch.long)
    assert [first_tensor_elements(b) for b in ((ids, ids), [ids], {"mask": ids[:1], "input_ids": ids}, ids,
                                               {"x": ids[:2]}, ("text",), {})] == [64, 64, 64, 64, 32, 0, 0]
