"""Distributed runs on the CPU: real torchrun processes, 2 ranks over gloo (issue 13).

Each test starts its processes in a session of their own and kills that process group at the end,
so no rank outlives it. torchrun's start-up costs several seconds on this machine: the tests share
as few launches as they can.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from engines import TRAINMON, run_info, wait_until
from torch.utils.data import Subset

from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.job import Job, RunConfig
from trainmon.engine.record.rundir import read_snapshot
from trainmon.engine.run.trainer import Trainer

M, B, K, W, EPOCHS = 53, 4, 2, 2, 2  # 53 samples over 2 ranks: 27 each, one padded duplicate

JOB = textwrap.dedent('''
    import os, time
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from trainmon.engine.jobs.job import Job

    def data(m, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(m, 5, generator=g, dtype=torch.float64)
        y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(m, 1, generator=g,
                                                                                          dtype=torch.float64)
        return TensorDataset(x, y)

    class Model(nn.Module):
        """A linear model; SLEEP seconds per forward, FAIL_AT: rank 1 raises at that iteration."""
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = nn.Linear(5, 1).double()
            self.calls = 0
        def forward(self, x):
            if self.training:
                self.calls += 1
                if os.environ.get("FAIL_AT") and os.environ.get("RANK") == "1" and \\
                        self.calls == int(os.environ["FAIL_AT"]):
                    raise RuntimeError("boom on purpose")
                time.sleep(float(os.environ.get("SLEEP", "0")))
            return self.linear(x)

    def valid(y):
        return (y > -1.5).to(y.dtype)  # targets below -1.5 count for nothing (like padding tokens)

    def masked_mse(outputs, y):
        return ((outputs - y) ** 2 * valid(y)).sum() / valid(y).sum()

    def job():
        counted = dict(loss_fn=masked_mse, batch_count=lambda batch: int(valid(batch[1]).sum())) \
            if os.environ.get("COUNTED") else dict(loss_fn=nn.functional.mse_loss)
        return Job(name="dist_linear", model=Model(), train_dataset=data(int(os.environ.get("M", "53")), 1),
                   val_dataset=data(20, 2), epochs=2, batch_size=4, lr=0.05,
                   shuffle=False, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr), **counted)
''')


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "dist_job.py"
    path.write_text(JOB)
    return path


def _env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _headless(job_file: Path, *args: str, env: dict, timeout: float = 90) -> tuple[int, str, str, float]:
    """`trainmon run JOB --nproc-per-node 2 --headless ARGS` in a session of its own:
    (exit code, stdout, stderr, wall-clock end time)."""
    process = subprocess.Popen([TRAINMON, "run", str(job_file), "--nproc-per-node", str(W), "--headless", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err, time.time()
    finally:
        _kill_group(process)


def _run_dir(stdout: str) -> Path:
    line = next(line for line in stdout.splitlines() if line.startswith("run id="))
    return Path(line.split("dir=", 1)[1].split(" time=", 1)[0])


def _single_process(drop_last: bool, counted: bool = False) -> Trainer:
    """One process over the same global batches: the sampler's order (shuffle off: rank r takes every W-th
    sample of the padded, or trimmed, index list), global batch W·b, the same accumulation."""
    ns: dict = {}
    exec(JOB, ns)
    os.environ["COUNTED"] = "1" if counted else ""
    try:
        job = ns["job"]()
    finally:
        del os.environ["COUNTED"]
    per_rank = M // W if drop_last else -(-M // W)
    indices = list(range(M)) + list(range(per_rank * W - M)) if not drop_last else list(range(per_rank * W))
    job = Job(name="single", model=job.model, train_dataset=Subset(job.train_dataset, indices),
              val_dataset=job.val_dataset, loss_fn=job.loss_fn, epochs=EPOCHS, batch_size=B * W, lr=0.05,
              shuffle=False, optimizer=job.optimizer, batch_count=job.batch_count)
    config = RunConfig.for_job(job, accum=K, drop_last=drop_last, checkpoints=False, val_batch_size=B)  # as the ranks
    trainer = Trainer(job, config)
    assert isinstance(trainer.run(), msg.Finished)
    return trainer


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("drop_last, counted", [(False, False), (True, False), (False, True)],
                         ids=["padded", "drop_last", "job_counts"])
def test_two_ranks_equal_one_process_over_the_same_global_batches(job_file, drop_last, counted):
    """`job_counts`: a job that weights micro-batches by its own count (valid targets, like tokens): the
    window's count is summed over ranks, so each count weighs the same as in one process."""
    code, out, err, _ = _headless(job_file, "--accum", str(K), "--drop-last" if drop_last else "--no-drop-last",
                                  env=_env(COUNTED="1" if counted else ""))
    assert code == 0, out + err
    run_dir = _run_dir(out)
    single = _single_process(drop_last, counted)
    # the final parameters: rank 0's last checkpoint (every rank holds the same model)
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1]
    saved = torch.load(newest, weights_only=True)["model"]
    for name, value in single.model.state_dict().items():
        assert torch.allclose(saved[name], value, atol=1e-6, rtol=0), (name, saved[name], value)
    snapshot = read_snapshot(run_dir)
    assert snapshot is not None and snapshot.world_size == W and [r.rank for r in snapshot.ranks] == [0, 1]
    assert all(r.global_iteration == snapshot.global_iteration for r in snapshot.ranks)
    if not counted:  # the loss shown is the mean over ranks of their last batch losses: the global batch's
        assert snapshot.loss == pytest.approx(single._losses.last, abs=1e-6)
    assert snapshot.val_loss == pytest.approx(single._losses.val_loss, abs=1e-6)
    assert snapshot.global_step == single.progress.global_step
    assert snapshot.global_iteration == single.progress.global_iteration
    real = (M if not drop_last else (M // W) // B * B * W) * EPOCHS
    assert snapshot.samples_seen == real and snapshot.total_samples == real
    assert snapshot.effective_batch_size == B * K * W and snapshot.dataset_size == M
    info = run_info(run_dir)
    assert info["status"] == "finished"
    assert f"samples={real} " in out.splitlines()[-1]
    assert "rank 1" not in out  # only rank 0 prints


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_pause_batch_size_and_stop_over_the_socket_apply_on_both_ranks(job_file):
    env = _env(SLEEP="0.02", M="400")
    started = subprocess.run([TRAINMON, "run", str(job_file), "--nproc-per-node", "2", "--detach", "--epochs", "50"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.strip()
    run_dir = Path(os.environ["TRAINMON_HOME"]) / "runs" / run_id
    info = run_info(run_dir)
    group = os.getpgid(info["pid"])  # torchrun's session: the launcher and both ranks
    client = RunClient(info["socket"]).subscribe()
    events: list = []

    def poll():
        events.extend(client.poll().events)
        return client.latest

    try:
        wait_until(lambda: (s := poll()) is not None and s.global_iteration >= 3, timeout=60, what="training")
        client.send(msg.Pause())
        wait_until(lambda: poll().status == msg.PAUSED and any(isinstance(e, msg.Paused) for e in events),
                   timeout=30, what="the pause")
        paused = next(e for e in events if isinstance(e, msg.Paused))
        time.sleep(1.5)  # both ranks wait: nothing moves, no collective times out
        snap = poll()
        assert snap.global_iteration == paused.global_iteration
        assert [r.global_iteration for r in snap.ranks] == [paused.global_iteration] * 2
        client.send(msg.StepOnce())
        wait_until(lambda: poll().global_iteration == paused.global_iteration + 1, timeout=20, what="one step")
        wait_until(lambda: [r.global_iteration for r in poll().ranks] == [paused.global_iteration + 1] * 2,
                   timeout=20, what="both ranks after one step")
        client.send(msg.SetBatchSize(8))
        client.send(msg.SetAccum(2))
        client.send(msg.Resume())
        wait_until(lambda: poll() and any(isinstance(e, msg.BatchSizeChanged) for e in events), timeout=60,
                   what="the batch size change at the next epoch")
        changed = next(e for e in events if isinstance(e, msg.BatchSizeChanged))
        assert (changed.old, changed.new) == (4, 8)
        accum = next(e for e in events if isinstance(e, msg.AccumChanged))
        assert (accum.old, accum.new) == (1, 2) and accum.global_iteration < changed.global_iteration
        wait_until(lambda: poll().epoch == changed.epoch and poll().iteration_in_epoch >= 9, timeout=30)
        # 200 samples per rank at 8: 25 iterations an epoch on rank 0; rank 1 follows the same count
        assert poll().iterations_in_epoch == 25
        client.send(msg.Stop())
        wait_until(lambda: poll() and any(isinstance(e, msg.Finished) for e in events), timeout=30, what="the stop")
        finished = next(e for e in events if isinstance(e, msg.Finished))
        assert finished.stopped
        final = read_snapshot(run_dir)
        assert [r.global_iteration for r in final.ranks] == [finished.global_iteration] * 2
        wait_until(lambda: _group_gone(group), timeout=30, what="every process of the run to exit")
        assert run_info(run_dir)["status"] == "stopped" and run_info(run_dir)["world_size"] == 2
        # resuming is refused in one line, before anything starts; the run stays as it was
        for how in ("--headless", "--detach"):
            refused = subprocess.run([TRAINMON, "resume", run_id, how], capture_output=True, text=True, env=env,
                                     timeout=120)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert refused.stderr.startswith(f"trainmon: error: run {run_id} trained in 2 processes (torchrun): "
                                             "resuming a distributed run is not supported yet"), refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
            assert run_info(run_dir)["status"] == "stopped" and "resume_request" not in run_info(run_dir)
    finally:
        client.close()
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _group_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


AT_EXIT = textwrap.dedent('''
    import atexit, os

    def _threads_left():
        """At the very end of a rank (this handler was registered first: it runs last), its OS threads."""
        rank = os.environ.get("RANK")
        if rank is not None:
            names = []
            for tid in os.listdir("/proc/self/task"):
                try:
                    names.append(open(f"/proc/self/task/{tid}/comm").read().strip())
                except OSError:
                    pass
            with open(os.path.join(os.environ["THREADS_LEFT"], f"rank{rank}"), "w") as f:
                f.write("\\n".join(names))

    atexit.register(_threads_left)
''')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_rank_leaves_its_process_group_before_the_interpreter_ends(job_file, tmp_path):
    """The gloo group's threads are gone by each rank's last exit handler: the group is torn down by the
    run (destroy_process_group with nothing holding it), not by the interpreter's end, where a rank once
    died of SIGABRT after its run had finished (the rank watch's exit handler held the Trainer and DDP)."""
    hooks, left = tmp_path / "hooks", tmp_path / "left"
    hooks.mkdir()
    left.mkdir()
    (hooks / "sitecustomize.py").write_text(AT_EXIT)
    code, out, err, _ = _headless(job_file, "--accum", str(K),
                                  env=_env(PYTHONPATH=str(hooks), THREADS_LEFT=str(left)))
    assert code == 0, out + err
    threads = {path.name: path.read_text().split("\n") for path in left.iterdir()}
    assert sorted(threads) == ["rank0", "rank1"]
    for rank, names in threads.items():
        assert not [n for n in names if "gloo" in n], (rank, names)


BROKEN_CLOSE = textwrap.dedent('''
    import os

    if os.environ.get("RANK") == "1":  # trainmon's own code fails on rank 1 after its run: leaving the group
        from trainmon.engine.run.distributed import Distributed

        def close(self):
            raise RuntimeError("leaving the group failed (injected)")

        Distributed.close = close
''')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_error_of_trainmon_on_a_follower_rank_is_in_its_output_log(job_file, tmp_path):
    """torchrun shows rank 0's output only: an exception outside the job's code on rank 1 (here after its run,
    where its output capture still runs) leaves its traceback in output.rank1.log, not nowhere."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BROKEN_CLOSE)
    code, out, err, _ = _headless(job_file, "--accum", str(K), env=_env(PYTHONPATH=str(hooks)))
    assert code != 0, out + err
    log = (_run_dir(out) / "output.rank1.log").read_text()
    assert "Traceback (most recent call last)" in log and \
        "RuntimeError: leaving the group failed (injected)" in log, log


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_rank_that_raises_ends_the_run_on_every_rank_with_its_message(job_file):
    code, out, err, ended = _headless(job_file, "--epochs", "30", env=_env(FAIL_AT="5", M="400", SLEEP="0.005"))
    run_dir = _run_dir(out)
    failure = json.loads((run_dir / "ranks" / "failed-1.json").read_text())
    assert code != 0
    info = run_info(run_dir)
    assert info["status"] == "failed", info
    assert info["message"].startswith("rank 1: RuntimeError: boom on purpose"), info["message"]
    assert "trainmon: run failed: rank 1: RuntimeError: boom on purpose" in err
    # from the failure to every process gone (torchrun waits for all its ranks): a few seconds
    assert ended - failure["time"] < 10


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_in_the_foreground_stops_every_rank_together_and_saves(job_file):
    """The terminal's SIGINT reaches `trainmon` (torchrun runs in a session of its own): every rank stops at
    the same agreement, rank 0 saves, and torchrun ends cleanly — no agent traceback, exit 130."""
    process = subprocess.Popen([TRAINMON, "run", str(job_file), "--nproc-per-node", "2", "--headless", "--epochs", "50"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(SLEEP="0.02", M="400"), start_new_session=True)
    try:
        runs = Path(os.environ["TRAINMON_HOME"]) / "runs"

        def training():
            found = list(runs.glob("*/run.json"))
            snapshot = read_snapshot(found[0].parent) if found else None
            return found[0].parent if snapshot is not None and snapshot.global_iteration >= 10 else None

        run_dir = wait_until(training, timeout=90, what="training")
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl+C does to the foreground process group
        out, err = process.communicate(timeout=60)
    finally:
        _kill_group(process)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err and "SignalException" not in err, err
    assert out.splitlines()[-1].startswith("stopped ")
    info = run_info(run_dir)
    assert info["status"] == "stopped" and info["exit_code"] == 130
    final = read_snapshot(run_dir)
    assert [r.global_iteration for r in final.ranks] == [final.global_iteration] * 2
    assert any(p.name.startswith("ckpt-") for p in (run_dir / "checkpoints").iterdir())


# ---- in-process: no torchrun ---------------------------------------------------------------------


def test_torchrun_command_lines():
    from trainmon.engine.run.distributed_launch import torchrun_args

    assert torchrun_args({"nproc_per_node": 2}) == ["--standalone", "--nproc-per-node=2"]
    assert torchrun_args({"nproc_per_node": 8, "nnodes": "2", "node_rank": 1, "rdzv_endpoint": "gpu0:29500"}) == [
        "--nproc-per-node=8", "--nnodes=2", "--node-rank=1", "--rdzv-endpoint=gpu0:29500"]
    from trainmon.cli.start import rank_argv

    assert rank_argv(["run", "job.py", "--nproc-per-node", "2", "--accum=2", "--nnodes=1", "--epochs", "3"]) == [
        "job.py", "--accum=2", "--epochs", "3", "--headless"]


@pytest.mark.parametrize("environ, expected", [
    ({}, None), ({"WORLD_SIZE": "1", "RANK": "0"}, None), ({"WORLD_SIZE": "x", "RANK": "0"}, None),
    ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, (3, 4, 1)),
])
def test_a_rank_is_known_from_torchruns_environment(environ, expected):
    from trainmon.engine.run.distributed import RankEnv

    env = RankEnv.from_env(environ)
    assert (None if env is None else (env.rank, env.world_size, env.local_rank)) == expected


@pytest.mark.parametrize("args, line", [
    (["--nproc-per-node", "0"], "--nproc-per-node must be 1 or more, got 0"),
    (["--nnodes", "2"], "--nnodes, --node-rank and --rdzv-endpoint go with --nproc-per-node N"),
    (["--nproc-per-node", "2", "--node-rank", "1", "--detach"], "--node-rank 1: add --headless on every machine"),
    (["--nproc-per-node", "1", "--nnodes", "2", "--headless"], "--nnodes 2: give --rdzv-endpoint HOST:PORT"),
    (["--nproc-per-node", "2", "--headless", "--drop-last", "--batch-size", "32"],
     "drop_last leaves each of the 2 ranks 26 of the 53 samples, fewer than the batch size 32"),
])
def test_launch_refusals_are_one_line(job_file, args, line):
    from click.testing import CliRunner

    from trainmon.cli.main import cli

    result = CliRunner().invoke(cli, ["run", str(job_file), *args])
    assert result.exit_code == 2, result.output
    assert line in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_the_runs_snapshot_counts_samples_over_ranks_without_padding():
    from trainmon.engine.run.distributed import Distributed, RankEnv

    d = Distributed(RankEnv(0, 2, 0), torch.device("cpu"))
    assert d.per_rank_samples(53, drop_last=False) == 27 and d.padded == 1
    d.ranks = (msg.RankFigures(0, loss=1.0), msg.RankFigures(1, loss=3.0))
    mid = msg.Snapshot(epoch=2, epochs=3, iteration_in_epoch=3, iterations_in_epoch=7, samples_seen=27 + 12,
                       total_samples=81, effective_batch_size=8, loss=1.0)
    run = d.decorate(mid)
    assert (run.samples_seen, run.total_samples, run.effective_batch_size, run.loss) == (53 + 24, 159, 16, 2.0)
    assert run.world_size == 2 and run.ranks == d.ranks and run.dataset_size == 53
    end = msgspec_replace(mid, iteration_in_epoch=7, samples_seen=54)
    assert d.decorate(end).samples_seen == 106


def msgspec_replace(struct, **fields):
    import msgspec

    return msgspec.structs.replace(struct, **fields)


def test_the_earliest_rank_failure_is_the_runs_and_the_watch_reports_it(tmp_path):
    from trainmon.engine.record.rank_failures import FailureWatch, read_failures, root_cause, write_failure

    write_failure(tmp_path, 1, msg.Failed("RuntimeError: boom", "tb"), clock=lambda: 100.0)
    run = root_cause(tmp_path, 0, msg.Failed("RuntimeError: [gloo] Connection closed by peer", ""))
    assert run.message == "rank 1: RuntimeError: boom" and run.traceback == "tb"
    assert [r["rank"] for r in read_failures(tmp_path)] == [1, 0]
    reported: list = []
    watch = FailureWatch(tmp_path, reported.append, done=lambda: False, interval=0.01, grace=0.05).start()
    wait_until(lambda: reported, timeout=30, interval=0.01, what="the watch")
    watch.stop()
    assert reported[0].message == "rank 1: RuntimeError: boom"
    quiet: list = []
    watch = FailureWatch(tmp_path, quiet.append, done=lambda: True, interval=0.01, grace=0.0).start()
    time.sleep(0.1)
    watch.stop()
    assert quiet == []  # rank 0 ended by itself: nothing to do


@pytest.mark.parametrize("speed, spacing", [(None, 1), (float("nan"), 1), (3.0, 1), (25.0, 2), (480.0, 48),
                                            (1e6, 64)])
def test_agreements_come_about_ten_times_a_second(speed, spacing):
    from trainmon.engine.run.distributed import Distributed

    assert Distributed.spacing(speed) == spacing
