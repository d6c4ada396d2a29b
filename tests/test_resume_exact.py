"""A resumed run is the same run: per-iteration losses and final parameters equal a straight run's.

Real training on the digits set, in this process: a CNN with dropout (the torch RNG matters), SGD
with momentum (the optimizer state matters), a per-epoch StepLR (the scheduler state matters),
shuffled data (the loader's order and position matter), accumulation 4 with a stop mid-window (the
accumulated gradients matter) and a pending batch-size change (the schedule state matters).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import collect
from torch import nn

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.builtin import digits_job
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.record.checkpoint_files import CheckpointStore
from trainmon.engine.run.checkpoint_state import ResumeFrom
from trainmon.engine.run.trainer import Trainer

pytestmark = pytest.mark.timeout(240)


def dropout_job():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    return dataclasses.replace(digits_job(), model=model,
                               lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7))


class ScriptedChannel(Channel):
    """Sends `script[(epoch, iteration_in_epoch)]` commands when the loop's safe point is there."""

    def __init__(self, script: dict) -> None:
        super().__init__()
        self.script, self.trainer = dict(script), None

    def poll_commands(self) -> list:
        p = self.trainer.progress
        return self.script.pop((p.epoch, p.iteration_in_epoch), []) + super().poll_commands()


def train(tmp_path, script, num_workers=0, resume=None, epochs=3, **options):
    job = dropout_job()
    config = RunConfig.for_job(job, epochs=epochs, accum=4, num_workers=num_workers, **options)
    channel = ScriptedChannel(script)
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    trainer = Trainer(job, config, channel, checkpoints=store, resume=resume)
    channel.trainer = trainer
    result = trainer.run()
    return trainer, result, collect(channel)[1], store


def losses(trainer):
    """Every iteration's loss, `(global_iteration, value)`, in order (135 points: none downsampled)."""
    return trainer.loss_history.points()


def params(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


CHANGE = {(2, 9): [msg.SetBatchSize(batch_size=48)]}  # pending from epoch 3 on


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_stop_mid_window_then_resume_equals_straight_run(tmp_path, num_workers):
    straight, done, _, _ = train(tmp_path / "a", CHANGE, num_workers)
    assert isinstance(done, msg.Finished) and not done.stopped

    stop_at = {**CHANGE, (2, 17): [msg.Stop()]}
    first, stopped, events, store = train(tmp_path / "b", stop_at, num_workers)
    assert stopped.stopped and stopped.global_iteration == 45 + 17
    saved = [e for e in events if isinstance(e, msg.CheckpointSaved)]
    assert [(e.reason, e.epoch, e.iteration_in_epoch, e.epoch_complete) for e in saved] == [
        ("epoch end", 1, 45, True), ("stop", 2, 17, False)]
    assert first.progress.window_position == 1  # 17 = 4·4 + 1: the checkpoint holds one micro-batch's gradients

    state, path, skipped = store.load_newest()
    assert (path.name, skipped) == ("ckpt-000002.pt", [])
    assert state["grads"] is not None and state["units"]["batch_sizes"]["pending"] == 48
    resumed, result, events, _ = train(tmp_path / "b", {}, num_workers, resume=ResumeFrom(state, str(path)))
    assert isinstance(result, msg.Finished) and not result.stopped
    assert [e for e in events if isinstance(e, msg.RunResumed)][0].global_iteration == 62
    changed = [e for e in events if isinstance(e, msg.BatchSizeChanged)]
    assert [(e.old, e.new, e.epoch) for e in changed] == [(32, 48, 3)]

    assert losses(resumed) == losses(straight)  # every iteration's loss, bitwise
    assert len(losses(straight)) == 45 + 45 + 30
    for got, want in zip(params(resumed), params(straight)):
        assert torch.equal(got, want)  # bitwise: CPU kernels here are deterministic
    assert (result.global_iteration, result.global_step, result.samples_seen, result.val_loss) == (
        done.global_iteration, done.global_step, done.samples_seen, done.val_loss)


def test_resume_from_an_epoch_end_checkpoint_loses_only_the_partial_epoch(tmp_path):
    """What a `kill -9` mid-epoch leaves: the epoch-end checkpoint; the partial epoch is run again."""
    straight, done, _, _ = train(tmp_path / "a", {})
    _, _, _, store = train(tmp_path / "b", {(2, 30): [msg.Stop()]})
    store.paths()[-1].unlink()  # the stop's own checkpoint never came: the process was killed
    state, path, _ = store.load_newest()
    assert state["position"] == {"epoch": 1, "iteration_in_epoch": 45, "global_iteration": 45, "global_step": 12,
                                 "samples_seen": 1437, "epoch_complete": True}
    resumed, result, events, _ = train(tmp_path / "b", {}, resume=ResumeFrom(state, str(path), lost_iterations=30))
    assert [e.lost_iterations for e in events if isinstance(e, msg.RunResumed)] == [30]
    assert losses(resumed) == losses(straight)
    assert all(torch.equal(a, b) for a, b in zip(params(resumed), params(straight)))
    assert result.val_loss == done.val_loss


def test_resume_with_a_new_batch_size_and_accumulation_applies_them_like_pending_changes(tmp_path):
    _, _, _, store = train(tmp_path, {(2, 10): [msg.Stop()]})
    state, path, _ = store.load_newest()
    resumed, result, events, _ = train(tmp_path, {}, resume=ResumeFrom(state, str(path), batch_size=64, accum=2))
    assert [e.changes for e in events if isinstance(e, msg.RunResumed)] == [
        ("batch size 32 → 64 at start of epoch 3", "accumulation steps 4 → 2 at the next window")]
    accum = [e for e in events if isinstance(e, msg.AccumChanged)]
    assert [(e.old, e.new, e.global_iteration) for e in accum] == [(4, 2, 45 + 12)]  # 10 = 4+4+2: next window at 12
    assert [(e.old, e.new, e.epoch) for e in events if isinstance(e, msg.BatchSizeChanged)] == [(32, 64, 3)]
    assert result.global_iteration == 45 + 45 + 23  # ceil(1437 / 64) = 23


def test_a_checkpoint_that_no_longer_fits_the_job_is_refused_in_one_line(tmp_path):
    _, _, _, store = train(tmp_path, {(1, 5): [msg.Stop()]})
    state, path, _ = store.load_newest()
    state["model"]["1.weight"] = torch.zeros(16, 64)
    _, result, _, _ = train(tmp_path, {}, resume=ResumeFrom(state, str(path)))
    assert isinstance(result, msg.Failed) and result.phase == "setup"
    assert result.message == ("the job no longer fits its checkpoint: parameter '1.weight' has shape (16, 64) in "
                              "the checkpoint but (32, 64) in the job's model")
    del state["model"]["1.weight"]
    _, result, _, _ = train(tmp_path, {}, resume=ResumeFrom(state, str(path)))
    assert result.message == ("the job no longer fits its checkpoint: the job's model has '1.weight', which the "
                              "checkpoint lacks")


def test_save_on_request_keeps_the_newest_two_and_the_best(tmp_path):
    script = {(e, 20): [msg.SaveCheckpoint()] for e in range(1, 6)}
    _, result, events, store = train(tmp_path, script, epochs=5)
    saved = [e for e in events if isinstance(e, msg.CheckpointSaved)]
    assert [(e.reason, e.epoch, e.iteration_in_epoch) for e in saved] == [
        r for e in range(1, 6) for r in (("request", e, 20), ("epoch end", e, 45))]
    index = store.index()
    val = {name: entry["val_loss"] for name, entry in index.items()}
    names = [p.name for p in store.paths()]
    assert names[-2:] == ["ckpt-000009.pt", "ckpt-000010.pt"]  # the newest two
    best = min((e.val_loss, i) for i, e in enumerate(events) if isinstance(e, msg.EpochEnded))
    assert len(names) in (2, 3) and set(val) == set(names)
    assert min(v for v in val.values() if v is not None) == best[0]  # the best epoch-end checkpoint stays
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in store.paths())


def test_no_checkpoints_refuses_the_save_key_and_writes_nothing(tmp_path):
    _, result, events, store = train(tmp_path, {(1, 3): [msg.SaveCheckpoint()]}, epochs=1, checkpoints=False)
    rejected = [e for e in events if isinstance(e, msg.CommandRejected)]
    assert [e.reason for e in rejected] == ["checkpoints are off (--no-checkpoints)"]
    assert store.paths() == [] and not (tmp_path / "checkpoints").exists()
