"""Checkpoint files: atomic under kill -9, pruned to the newest K plus the best, read back safely."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import collect

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.builtin import digits_job
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.record.checkpoint_files import CheckpointError, CheckpointStore
from trainmon.engine.run.trainer import Trainer


def state(value: float, size: int = 4) -> dict:
    return {"format": 1, "weights": torch.full((size,), value)}


def test_saves_are_numbered_pruned_to_the_newest_k_plus_the_best(tmp_path):
    store = CheckpointStore(tmp_path / "c", keep=2)
    for i, val in enumerate([0.9, 0.2, 0.5, 0.7, None], start=1):
        store.save(state(i), {"epoch_complete": val is not None, "val_loss": val, "epoch": i})
    assert [p.name for p in store.paths()] == ["ckpt-000002.pt", "ckpt-000004.pt", "ckpt-000005.pt"]
    assert store.index()["ckpt-000002.pt"]["val_loss"] == 0.2  # the best stays
    loaded, path, skipped = store.load_newest()
    assert (path.name, skipped, loaded["weights"].tolist()) == ("ckpt-000005.pt", [], [5.0] * 4)
    assert oct((tmp_path / "c").stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "c").iterdir()} == {"0o600"}


def test_unreadable_files_are_skipped_with_their_reason_and_a_leftover_temp_file_is_ignored(tmp_path):
    store = CheckpointStore(tmp_path, keep=5)
    store.save(state(1.0), {})
    store.save(state(2.0), {})
    (tmp_path / ".ckpt-000003.pt.999.tmp").write_bytes(b"half a file")  # a save killed before its rename
    (tmp_path / "ckpt-000003.pt").write_bytes(b"not a zip")
    torch.save({"format": 99}, tmp_path / "ckpt-000004.pt")
    loaded, path, skipped = store.load_newest()
    assert path.name == "ckpt-000002.pt" and loaded["weights"][0] == 2.0
    assert skipped[0] == "ckpt-000004.pt: not a trainmon checkpoint of format 1 (got 99)"
    assert skipped[1].startswith("ckpt-000003.pt: unreadable (UnpicklingError: Weights only load failed")
    assert len(skipped[1]) <= len("ckpt-000003.pt: unreadable ()") + 120


def test_a_file_the_index_does_not_know_is_never_pruned(tmp_path):
    """A lost or corrupt index.json must not cost the best checkpoint: unknown files stay."""
    store = CheckpointStore(tmp_path, keep=1)
    store.save(state(1.0), {"epoch_complete": True, "val_loss": 0.1})
    store.save(state(2.0), {"epoch_complete": True, "val_loss": 0.5})
    (tmp_path / "index.json").write_text("garbage")
    store.save(state(3.0), {"epoch_complete": True, "val_loss": 0.9})
    assert [p.name for p in store.paths()] == ["ckpt-000001.pt", "ckpt-000002.pt", "ckpt-000003.pt"]


def test_checkpoints_of_another_run_or_seed_are_skipped_with_the_reason(tmp_path):
    from trainmon.engine.run.resume import foreign

    store = CheckpointStore(tmp_path, keep=5)
    store.save({"format": 1, "run": "mine", "config": {"seed": 0}}, {})
    store.save({"format": 1, "run": "theirs", "config": {"seed": 0}}, {})
    store.save({"format": 1, "run": None, "config": {"seed": 7}}, {})
    loaded, path, skipped = store.load_newest(accept=lambda s: foreign(s, "mine", {"seed": 0}))
    assert (path.name, loaded["run"]) == ("ckpt-000001.pt", "mine")
    assert skipped == ["ckpt-000003.pt: it was trained with seed 7, this run with 0",
                       "ckpt-000002.pt: it belongs to run theirs"]


def test_a_resume_after_kill_9_records_every_iteration_exactly(tmp_path):
    """loss.json lagged the checkpoint (killed before the next write): the checkpoint's raw points fill the gap."""
    from trainmon.engine.record.loss_archive import LossArchive
    from trainmon.engine.record.recorder import Recorder
    from trainmon.engine.record.rundir import RunDirectory, read_loss

    run = RunDirectory.create(tmp_path / "run", {"id": "r"})
    archive = LossArchive()
    archive.extend([(x, 1.0 / x) for x in range(1, 101)])  # recorded up to iteration 100
    run.write_loss(archive.to_dict())
    recorder = Recorder(run)
    recorder.keep_loss_until(140, raw=[[x, 1.0 / x] for x in range(60, 151)])  # checkpoint at 140
    recorder.finish(msg.STOPPED)
    assert read_loss(run.path)["recent"] == [[x, 1.0 / x] for x in range(1, 141)]


def test_arbitrary_code_in_a_checkpoint_is_never_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"format": 1, "x": Payload()}, tmp_path / "ckpt-000001.pt")
    with pytest.raises(CheckpointError, match=r"^no readable checkpoint in .*ckpt-000001.pt: unreadable"):
        CheckpointStore(tmp_path).load_newest()
    assert not (tmp_path / "pwned").exists()


def test_no_checkpoint_at_all_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"^no checkpoint in .* \(none was saved — --no-checkpoints, or the "
                                              r"run stopped before its first save — or they were deleted\)$"):
        CheckpointStore(tmp_path / "none").load_newest()


WRITER = textwrap.dedent("""
    import sys, torch
    from trainmon.engine.record.checkpoint_files import CheckpointStore
    store = CheckpointStore(sys.argv[1], keep=3)
    i = 0
    while True:
        i += 1
        store.save({"format": 1, "i": i, "weights": torch.full((4_000_000,), float(i))}, {})  # 16 MB a file
""")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_kill_9_during_saves_always_leaves_a_whole_checkpoint(tmp_path):
    folder = tmp_path / "c"
    for delay in (0.35, 0.6, 0.85):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)])
        try:
            deadline = time.monotonic() + 30
            while len(list(folder.glob("ckpt-*.pt"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(delay)  # somewhere inside a later save
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
        finally:
            if writer.poll() is None:
                writer.kill()
        loaded, path, skipped = CheckpointStore(folder).load_newest()
        assert skipped == []  # the newest file is whole: a file only gets its name once it was fsynced
        assert loaded["weights"].shape == (4_000_000,) and bool((loaded["weights"] == loaded["i"]).all())


def test_timer_saves_mid_epoch_and_a_failing_save_never_ends_the_run(tmp_path):
    ticks = iter(range(10**9))
    clock = lambda: next(ticks) * 0.5  # noqa: E731 - half a second a reading: a 15 s timer fires every ~15 iterations
    job = digits_job()
    config = RunConfig.for_job(job, epochs=2, checkpoint_minutes=0.25, checkpoint_every=0)
    channel = Channel()
    result = Trainer(job, config, channel, clock=clock, checkpoints=CheckpointStore(tmp_path / "c")).run()
    saved = [e for e in collect(channel)[1] if isinstance(e, msg.CheckpointSaved)]
    assert result.global_iteration == 90 and len(saved) >= 3
    assert {(e.reason, e.epoch_complete) for e in saved} == {("timer", False)}

    (tmp_path / "blocked").write_text("a file where the checkpoints folder should be")
    channel = Channel()
    result = Trainer(job, RunConfig.for_job(job, epochs=2), channel,
                     checkpoints=CheckpointStore(tmp_path / "blocked")).run()
    events = collect(channel)[1]
    failed = [e for e in events if isinstance(e, msg.CheckpointFailed)]
    assert isinstance(result, msg.Finished) and not result.stopped and result.epochs_completed == 2
    assert [(e.reason, e.global_iteration) for e in failed] == [("epoch end", 45), ("epoch end", 90)]
    assert failed[0].message.startswith("FileExistsError: ")
    assert not any(isinstance(e, msg.CheckpointSaved) for e in events)
