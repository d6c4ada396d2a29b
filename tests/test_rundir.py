"""The run directory on its own: listing, the recorder's freshness, read-only followers (no processes)."""

from __future__ import annotations

import json
import time

import pytest

from trainmon.engine.control.client import RunClient
from trainmon.engine.control.server import ControlServer
from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import HistoryDelta
from trainmon.engine.record.loss_archive import LossArchive
from trainmon.engine.record.paths import runs_root
from trainmon.engine.record.recorder import Recorder
from trainmon.engine.record.rundir import RunDirectory, list_runs, read_snapshot, resolve_run
from trainmon.engine.run.session import create_run


def test_a_reused_run_dir_leaves_no_stale_link_in_the_listing(tmp_path):
    folder = tmp_path / "mine"
    first = create_run("digits", {"job": "digits"}, str(folder), now=1_000_000_000.0)
    first_id = first.info["id"]
    import shutil

    shutil.rmtree(folder)
    second = create_run("digits", {"job": "digits"}, str(folder), now=1_000_000_100.0)
    runs = list_runs()
    assert [r.id for r in runs] == [second.info["id"]]  # the first run's link points at the second: skipped
    assert (runs_root() / first_id).is_symlink()
    assert resolve_run(second.info["id"][:15]).id == second.info["id"]


def test_a_run_is_found_by_its_tag_as_compare_names_its_column(tmp_path):
    from trainmon.engine.record.rundir import RunNotFound

    runs = [create_run(job, {"job": job}, now=1_000_000_000.0 + i) for i, job in enumerate(("digits", "mine", "digits"))]
    ids = [r.info["id"] for r in runs]
    tags = [i.rsplit("-", 1)[-1] for i in ids]
    for run_id, tag in zip(ids, tags):
        assert resolve_run(tag).id == run_id  # the whole tag
        if sum(t.startswith(tag[:2]) for t in tags) == 1:
            assert resolve_run(tag[:2]).id == run_id  # a unique start of it
    assert resolve_run(ids[1][:20]).id == ids[1]  # an id's prefix as before
    with pytest.raises(RunNotFound, match=f"'{ids[1][:8]}' matches 3 runs"):  # ambiguous as a prefix: no tag tried
        resolve_run(ids[1][:8])
    with pytest.raises(RunNotFound, match="no run matches 'zz-nope'"):
        resolve_run("zz-nope")


def test_runs_are_listed_by_start_time_not_by_name(tmp_path):
    late = create_run("zzz", {"job": "zzz"}, now=2_000_000_000.0)
    early = create_run("aaa", {"job": "aaa"}, str(tmp_path / "elsewhere"), now=1_000_000_000.0)
    assert [r.id for r in list_runs()] == [early.info["id"], late.info["id"]]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_recorder_writes_the_snapshot_that_follows_an_epoch_end(tmp_path):
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r"})
    clock = Clock()
    recorder = Recorder(rundir, clock=clock)
    recorder.publish(msg.Snapshot(status=msg.RUNNING, global_iteration=40), HistoryDelta(1, [(1.0, 2.0)]))
    clock.now = 0.5  # well inside flush_every: only an epoch end forces a write
    recorder.emit(msg.EpochEnded(epoch=1, epochs=3, iterations=45, iterations_planned=45, steps=45, samples_seen=1437,
                                 train_loss=1.0, val_loss=None, val_metrics={}, batch_size=32, accum=1, lr=0.1,
                                 elapsed=0.5, global_iteration=45, global_step=45))
    recorder.publish(msg.Snapshot(status=msg.RUNNING, epoch=1, global_iteration=45), HistoryDelta(2, [(45.0, 1.0)]))
    assert read_snapshot(rundir.path).global_iteration == 45
    clock.now = 0.7
    recorder.publish(msg.Snapshot(status=msg.RUNNING, epoch=2, global_iteration=50), HistoryDelta(3, [(50.0, 0.9)]))
    assert read_snapshot(rundir.path).global_iteration == 45  # rate-limited again


def test_the_loss_history_reaches_the_disk_within_seconds(tmp_path):
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r"})
    clock = Clock()
    recorder = Recorder(rundir, clock=clock)
    for i in range(1, 31):  # 3 s of publications at 10/s, one point each
        clock.now = i / 10
        recorder.publish(msg.Snapshot(status=msg.RUNNING, global_iteration=i), HistoryDelta(i, [(float(i), 1.0 / i)]))
    archive = LossArchive.from_dict(json.loads((rundir.path / "loss.json").read_text()))
    assert archive.count >= 20  # written at 2 s at the latest (not only every 10 s), so a kill -9 loses little


def test_a_log_follower_is_not_counted_as_a_viewer_that_steers(tmp_path):
    commands = []
    server = ControlServer(tmp_path / "s.sock", "r", commands.append).start()
    try:
        tui = RunClient(tmp_path / "s.sock").subscribe()
        follower = RunClient(tmp_path / "s.sock").subscribe(steering=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.viewer_count != 1:
            time.sleep(0.05)
        time.sleep(0.3)
        tui.poll(), follower.poll()
        assert server.viewer_count == 1 and tui.viewers == 1
        another = RunClient(tmp_path / "s.sock").subscribe()
        time.sleep(0.3)
        tui.poll()
        assert tui.viewers == 2
        for client in (tui, follower, another):
            client.close()
    finally:
        server.close()


def test_a_run_dir_keeps_its_parent_folder_as_the_user_made_it(tmp_path):
    import os
    import stat

    parent = tmp_path / "experiments"
    parent.mkdir(mode=0o755)
    os.chmod(parent, 0o755)
    run = create_run("digits", {"job": "digits"}, str(parent / "run1"))
    assert stat.S_IMODE(parent.stat().st_mode) == 0o755  # not turned private (nor refused when not ours)
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700


@pytest.mark.parametrize("command", [["logs"], ["stop"], ["attach"], ["export", "--format", "csv"], ["resume"],
                                     ["compare", "--last", "2"]])
def test_an_empty_run_id_is_refused_not_taken_for_the_newest_run(command):
    """A new user's trial: `trainmon logs ''` printed the newest run (an unset `$ID`: `trainmon stop "$ID"`)."""
    from click.testing import CliRunner

    from trainmon.cli.main import cli

    create_run("digits", {"job": "digits"}, now=1_000_000_000.0)
    result = CliRunner().invoke(cli, [*command, " "])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("trainmon: error: an empty run id: give an id, a unique prefix of one, its last part or "
                             "a run directory (or nothing: your newest run)\n")


def test_loss_json_reads_back_the_archive_exactly_and_keeps_an_overflowed_aggregate():
    """loss.json is msgspec's JSON (the writer thread's GIL share): the json module reads it back to the same
    archive; an aggregate whose sum overflowed to Inf is written as `Infinity` (msgspec would say null)."""
    from trainmon.engine.record.rundir import encode_loss

    archive = LossArchive(recent=8, capacity=16)
    archive.extend([(float(i), 1.0 / i) for i in range(1, 100)])
    archive.append(100.0, float("nan"))
    data = archive.to_dict()
    encoded = encode_loss(data)
    assert json.loads(encoded) == json.loads(json.dumps(data))
    back = LossArchive.from_dict(json.loads(encoded))
    assert (list(back.recent), back.buckets, back.count) == (list(archive.recent), archive.buckets, 99)
    assert json.loads(encoded)["nonfinite"] == [[100.0, "nan"]]
    huge = LossArchive(recent=1, capacity=2)  # two buckets merge: their sum overflows
    huge.extend([(1.0, 1e308), (2.0, 1e308), (3.0, 1.0)])
    out = encode_loss(huge.to_dict())
    assert b"null" not in out and json.loads(out)["buckets"][0][3] == float("inf")
