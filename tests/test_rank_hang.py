"""`hang` under torchrun, as a user meets it: 2 ranks over gloo on the CPU, rank 1's dataset sleeps 10 s
mid-epoch; `trainmon logs` names rank 1 and its host while the sleep lasts (rank 0's loop is blocked in
the next collective the whole time: the watch runs on a thread of its own, through the store)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from engines import TRAINMON, ls_json, trainmon, wait_until

JOB = textwrap.dedent('''
    import os, time
    import torch
    from torch import nn
    from torch.utils.data import Dataset
    from trainmon.engine.jobs.job import Job

    class Data(Dataset):
        """Rank 1 sleeps SLEEP s once, 4 s after its first sample, and writes when it fell asleep and woke."""
        first = None
        def __len__(self):
            return 4000
        def __getitem__(self, i):
            now = time.time()
            Data.first = Data.first or now
            if os.environ.get("RANK") == "1" and Data.first > 0 and now - Data.first > 4:
                Data.first = -1.0
                log = os.environ["SLEEP_LOG"]
                open(log, "a").write(f"asleep {time.time():.3f}\\n")
                time.sleep(float(os.environ["SLEEP"]))
                open(log, "a").write(f"awake {time.time():.3f}\\n")
            time.sleep(0.002)
            return torch.full((5,), float(i % 7)), torch.tensor([float(i % 3)])

    def job():
        return Job(name="sleepy_rank", model=nn.Linear(5, 1), train_dataset=Data(), epochs=1, batch_size=4,
                   lr=0.01, shuffle=False, loss_fn=nn.functional.mse_loss)
''')


def _sleep_times(log: Path) -> dict[str, float]:
    if not log.exists():
        return {}
    return {word: float(at) for word, at in (line.split() for line in log.read_text().splitlines() if line)}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_rank_asleep_in_its_loader_is_a_hang_named_by_rank_and_host_while_it_sleeps(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    log, out = tmp_path / "sleep.log", tmp_path / "out.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINMON_HOME": str(tmp_path / "home"), "SLEEP": "10",
           "SLEEP_LOG": str(log), "TRAINMON_ALERTS": json.dumps({"hang_after": 2})}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    process = subprocess.Popen([TRAINMON, "run", str(tmp_path / "job.py"), "--nproc-per-node", "2", "--headless",
                                "--no-checkpoints"], stdout=out.open("w"), stderr=subprocess.STDOUT, text=True,
                               env=env, start_new_session=True)
    try:
        line = wait_until(lambda: [x for x in out.read_text().splitlines() if x.startswith("run id=")], timeout=90,
                          what="the run's first line")[0]
        run_id = line.split()[1].split("=", 1)[1]
        wait_until(lambda: "asleep" in _sleep_times(log), timeout=90, what="rank 1 to fall asleep")

        def hang_lines() -> list[str]:
            out = trainmon("logs", run_id, timeout=60, env=env).stdout
            return [x.split(" time=")[0] for x in out.splitlines() if x.startswith("alert kind=hang")]

        hang = wait_until(hang_lines, timeout=30, interval=0.3, what="the hang alert")
        seen = time.time()
        row = wait_until(lambda: [r for r in ls_json(env) if r["id"] == run_id and (r["ranks"] or {}).get("hung")],
                         timeout=30, what="ls to show the hung rank")[0]
        table = trainmon("ls", env=env).stdout
        times = _sleep_times(log)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun's session: the launcher and both ranks
        process.wait(timeout=10)
    assert "awake" not in times or seen < times["awake"], (seen, times)  # told while rank 1 sleeps
    assert seen - times["asleep"] < 9  # within seconds: 2 s of threshold, beats once a second, `logs` polled
    [alert] = hang
    host = socket.gethostname()
    assert alert.startswith(f'alert kind=hang message="rank 1 on {host} has not moved for '), alert
    assert "(waiting for its next batch: a slow or hung data loader?) while the other ranks wait for it" in alert
    assert alert.endswith(f' rank=1 host="{host}"') or f'rank=1 host="{host}"' in alert, alert
    assert row["ranks"]["world_size"] == 2 and row["ranks"]["hung"] == [1], row["ranks"]
    assert any(line.startswith(run_id) and "(rank 1 hung)" in line for line in table.splitlines()), table


SCRIPT = textwrap.dedent('''
    import os, sys, time
    import torch
    import torch.distributed as dist
    import trainmon

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 4000
        def __getitem__(self, i):
            if os.environ["RANK"] == "1" and i == 201:  # rank 1's 101st sample, once
                open(os.environ["SLEEP_LOG"], "a").write(f"asleep {time.time():.3f}\\n")
                time.sleep(float(os.environ["SLEEP"]))
                open(os.environ["SLEEP_LOG"], "a").write(f"awake {time.time():.3f}\\n")
            time.sleep(0.002)
            return torch.full((4,), float(i % 5)), torch.tensor(i % 2)

    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    run = trainmon.track(optimizer, name="sleepy_ranks", quiet=True)
    if run.id:
        print(f"RUN {run.id}", flush=True)
    data = Data()
    sampler = torch.utils.data.distributed.DistributedSampler(data, shuffle=False)
    for _ in run.epochs(1):
        for x, y in run.batches(torch.utils.data.DataLoader(data, batch_size=4, sampler=sampler)):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss)
''')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_tracked_loop_under_torchrun_names_the_rank_asleep_in_its_loader(tmp_path):
    """`trainmon.track()` in a script torchrun starts (its own DDP and sampler): the same `hang`."""
    (tmp_path / "script.py").write_text(SCRIPT)
    log, out = tmp_path / "sleep.log", tmp_path / "out.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINMON_HOME": str(tmp_path / "home"), "SLEEP": "10",
           "SLEEP_LOG": str(log), "TRAINMON_ALERTS": json.dumps({"hang_after": 2})}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                "--nproc-per-node=2", str(tmp_path / "script.py")], stdout=out.open("w"),
                               stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        line = wait_until(lambda: [x for x in out.read_text().splitlines() if "RUN " in x], timeout=90,
                          what="rank 0's run id")[0]
        run_id = line.split("RUN ", 1)[1].split()[0]
        wait_until(lambda: "asleep" in _sleep_times(log), timeout=90, what="rank 1 to fall asleep")

        def hang_lines() -> list[str]:
            text = trainmon("logs", run_id, timeout=60, env=env).stdout
            return [x.split(" time=")[0] for x in text.splitlines() if x.startswith("alert kind=hang")]

        hang = wait_until(hang_lines, timeout=30, interval=0.3, what="the hang alert")
        seen = time.time()
        times = _sleep_times(log)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert "awake" not in times or seen < times["awake"], (seen, times)
    [alert] = hang
    host = socket.gethostname()
    assert alert.startswith(f'alert kind=hang message="rank 1 on {host} has not moved for '), alert
    assert f' rank=1 host="{host}"' in alert, alert
