"""`trainmon run FILE_OR_MODULE`: your own job, and every broken variant ending in one clear line."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from engines import untimed

from trainmon.engine import Job
from trainmon.engine.jobs.loader import JobError, load_job

ROOT = Path(__file__).resolve().parents[1]
TRAINMON = str(Path(sys.executable).with_name("trainmon"))

GOOD = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from trainmon.engine import Job

    def job():
        x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
        y = x.sum(1, keepdim=True)
        return Job(name="tiny", model=nn.Linear(4, 1), train_dataset=TensorDataset(x, y),
                   loss_fn=nn.functional.mse_loss, epochs=2, batch_size=32, lr=0.05)
''')


def trainmon(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINMON, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def readme_job_file() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Monitor your own training", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_job_file_trains(tmp_path):
    path = write(tmp_path, "job.py", readme_job_file())
    result = trainmon("run", str(path), "--headless")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("finished epochs=")


@pytest.mark.slow
def test_run_options_override_job_defaults(tmp_path):
    write(tmp_path, "good.py", GOOD)
    result = trainmon("run", "good.py", "--epochs", "3", "--batch-size", "64", "--accum", "2", "--headless",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 3
    assert lines[0].startswith("epoch=1/3 iterations=5/5 steps=3 samples=300 ")  # ceil(300/64) = 5, windows [2,2,1]
    assert " batch_size=64 accum=2 " in lines[0]


@pytest.mark.slow
def test_plan_takes_the_dataset_size_from_a_job_file(tmp_path):
    path = write(tmp_path, "good.py", GOOD)
    result = trainmon("plan", "--job", str(path), "--batch-size", "64", "--json")
    assert result.returncode == 0, result.stderr
    assert '"samples_per_epoch": 300' in result.stdout and '"last_batch_size": 44' in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, source, args, fragment",
    [
        ("missing.py", None, [], "job file not found: missing.py"),
        ("syntax.py", "import torch\ndef job(:\n    pass\n", [], "syntax.py:2: syntax error"),
        ("nojob.py", "x = 1\n", [], "nojob.py defines no job: add `def job() -> Job`"),
        ("named.py", GOOD, [":nope"], "named.py has no attribute 'nope'"),
        ("wrongtype.py", "def job():\n    return {'model': None}\n", [], "job() returned dict, not a trainmon Job"),
        ("raises.py", "def job():\n    return 1 / 0\n", [], "raises.py:2 in job: job() raised ZeroDivisionError"),
        ("empty.py", GOOD.replace("torch.randn(300, 4", "torch.randn(0, 4"), [], "the training dataset is empty"),
        ("outshape.py", GOOD.replace("nn.Linear(4, 1)", "nn.Linear(4, 3)"), [],
         "model output (32, 3) float32 and targets (32, 1) float32 do not match"),
        ("inshape.py", GOOD.replace("nn.Linear(4, 1)", "nn.Linear(5, 1)"), [],
         "the model failed on inputs (32, 4) float32: RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
        ("notpair.py", GOOD.replace("TensorDataset(x, y)", "TensorDataset(x)"), [],
         "each training batch must be an (inputs, targets) pair"),
        ("good.py", GOOD, ["--batch-size", "500", "--drop-last"], "drop_last drops them all"),
        ("good.py", GOOD, ["--batch-size", "0"], "batch size must be a whole number >= 1, got 0"),
        ("good.py", GOOD, ["--epochs", "-2"], "epochs must be a whole number >= 0, got -2"),
        ("good.py", GOOD, ["--accum", "0"], "accumulation steps must be a whole number >= 1, got 0"),
        ("good.py", GOOD, ["--lr", "-1"], "learning rate must be > 0"),
    ],
)
def test_broken_jobs_give_one_line_and_exit_2(tmp_path, name, source, args, fragment):
    if source is not None:
        write(tmp_path, name, source)
    target = name + (args[0] if args and args[0].startswith(":") else "")
    options = [a for a in args if not a.startswith(":")]
    result = trainmon("run", target, *options, "--headless", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trainmon: error: ") and fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.slow
def test_error_inside_the_users_model_shows_the_users_frames(tmp_path):
    source = GOOD.replace("from trainmon.engine import Job", textwrap.dedent('''
        from trainmon.engine import Job

        class Fragile(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(4, 1)
                self.calls = 0

            def forward(self, x):
                self.calls += 1
                if self.training and self.calls > 3:
                    raise RuntimeError("my model broke")
                return self.lin(x)
    ''')).replace("model=nn.Linear(4, 1)", "model=Fragile()")
    write(tmp_path, "fragile.py", source)
    result = trainmon("run", "fragile.py", "--headless", cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert err.startswith("trainmon: run failed: RuntimeError: my model broke (at fragile.py:")
    assert "in forward" in err and 'raise RuntimeError("my model broke")' in err
    assert "engine/run/trainer.py" not in err and "torch/nn" not in err  # trainmon's and torch's frames hidden


def test_load_job_forms(tmp_path, monkeypatch):
    write(tmp_path, "good.py", GOOD)
    package = tmp_path / "mypkg"
    package.mkdir()
    write(package, "__init__.py", "")
    write(package, "jobs.py", GOOD.replace("def job():", "def build():") + "\nINSTANCE = build()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_job(str(tmp_path / "good.py")), Job)
    assert isinstance(load_job(f"{tmp_path / 'good.py'}:job"), Job)
    assert load_job("mypkg.jobs:build").name == "tiny"
    assert load_job("mypkg.jobs:INSTANCE").name == "tiny"
    with pytest.raises(JobError, match="no job file or module named 'nopkg.nothing'"):
        load_job("nopkg.nothing")
    with pytest.raises(JobError, match="defines no job"):
        load_job("mypkg.jobs")


@pytest.mark.slow
@pytest.mark.parametrize("example, check", [
    ("digits_mlp.py", lambda line: float(re.search(r"val_acc=(\S+)", line).group(1)) > 0.9),
    ("diabetes_regression.py", lambda line: float(re.search(r"val_loss=(\S+)", line).group(1)) < 0.8),
    ("sine_gru.py", lambda line: float(re.search(r"val_loss=(\S+)", line).group(1)) < 0.1),
])
def test_examples_train_headless(example, check):
    result = trainmon("run", str(ROOT / "examples" / example), "--headless")
    assert result.returncode == 0, result.stderr
    last_epoch = [line for line in result.stdout.splitlines() if line.startswith("epoch=")][-1]
    assert check(last_epoch), last_epoch


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, fragment",
    [
        (("TensorDataset(x, y),", "TensorDataset(x, y), val_dataset=TensorDataset(x, y, y),"),
         "each validation batch must be an (inputs, targets) pair"),
        (("TensorDataset(x, y),", "TensorDataset(x, y), val_dataset=TensorDataset(x[:, :3], y),"),
         "first validation batch: the model failed on inputs (32, 3) float32"),
        (("TensorDataset(x, y),", "TensorDataset(x, y), val_dataset=TensorDataset(x, y), "
                                  "metrics={'err': lambda o, t: (o - t).abs()},"),
         "metric 'err' must return one number (the batch mean), got (32, 1) float32"),
        (("TensorDataset(x, y),", "TensorDataset(x, y), metrics=[len],"), "Job.metrics must be a dict"),
        (("lr=0.05)", "lr=0.05, optimizer=lambda params, lr: None)"),
         "Job.optimizer(params, lr) must return a torch.optim.Optimizer, got NoneType"),
        (("lr=0.05)", "lr=0.05, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))"),
         "Job.optimizer(params, lr) raised TypeError"),
        (("loss_fn=nn.functional.mse_loss", "loss_fn=lambda o, t: ((o - t) ** 2).mean()"),
         None),  # shapes match here: a control case, must train
        (("y = x.sum(1, keepdim=True)", "y = x.sum(1)"),
         "model output (32, 1) float32 and targets (32,) float32 would broadcast to (32, 32)"),
        (("model=nn.Linear(4, 1)", "model=nn.Linear(4, 1).requires_grad_(False)"),
         "the model has no trainable parameters"),
    ],
)
def test_preflight_catches_validation_metrics_optimizer_and_broadcasting(tmp_path, change, fragment):
    write(tmp_path, "job.py", GOOD.replace(*change))
    result = trainmon("run", "job.py", "--headless", "--epochs", "1", cwd=tmp_path)
    if fragment is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_plateau_scheduler_and_the_lr_each_epoch_trained_at(tmp_path):
    source = GOOD.replace("lr=0.05)", "lr=0.05, lr_scheduler=lambda opt: "
                                      "torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1))")
    write(tmp_path, "steplr.py", source)
    result = trainmon("run", "steplr.py", "--headless", "--epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [re.search(r" lr=(\S+)", line).group(1) for line in result.stdout.splitlines()
            if line.startswith("epoch=")] == ["0.05", "0.005", "0.0005"]
    plateau = GOOD.replace("lr=0.05)", "lr=0.05, lr_scheduler=lambda opt: "
                                       "torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0))")
    write(tmp_path, "plateau.py", plateau)
    result = trainmon("run", "plateau.py", "--headless", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_detached_engine_allows_dataloader_workers_and_captures_job_output(tmp_path):
    import json

    source = GOOD.replace("lr=0.05)", "lr=0.05, num_workers=2)").replace(
        "def job():", "print('hello from the job file', flush=True)\n\ndef job():")
    write(tmp_path, "workers.py", source)
    run_dir = tmp_path / "run"
    started = trainmon("run", "workers.py", "--epochs", "2", "--detach", "--run-dir", str(run_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    while "exit_code" not in json.loads((run_dir / "run.json").read_text()):  # written once the engine is done
        assert time.monotonic() < deadline, (run_dir / "output.log").read_text()
        time.sleep(0.2)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["exit_code"] == 0, (run_dir / "output.log").read_text()
    assert json.loads((run_dir / "snapshot.json").read_text())["samples_seen"] == 600
    assert "hello from the job file" in (run_dir / "output.log").read_text()


# ---------------------------------------------------------------------------------------- issue 9
SQUEEZING = GOOD.replace("y = x.sum(1, keepdim=True)", "y = (x.sum(1) > 0).float()").replace(
    "loss_fn=nn.functional.mse_loss",
    "loss_fn=lambda out, t: nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), t)")


@pytest.mark.slow
def test_preflight_accepts_a_loss_that_squeezes_the_output_itself(tmp_path):
    # model output (B, 1), targets (B,): the loss squeezes before BCE-with-logits, so it is right
    write(tmp_path, "squeeze.py", SQUEEZING)
    result = trainmon("run", "squeeze.py", "--headless", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("warning ")]
    assert result.stdout.splitlines()[-1].startswith("finished epochs=1 iterations=10 ")


@pytest.mark.slow
def test_preflight_warns_instead_of_refusing_a_loss_it_cannot_prove_wrong(tmp_path):
    # a hand-written loss that broadcasts (32, 1) against (32,): no torch warning, so no certainty
    write(tmp_path, "broadcast.py", GOOD.replace("y = x.sum(1, keepdim=True)", "y = x.sum(1)").replace(
        "loss_fn=nn.functional.mse_loss", "loss_fn=lambda out, t: ((out - t) ** 2).mean()"))
    result = trainmon("run", "broadcast.py", "--headless", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning ")]
    assert len(warnings) == 1
    assert warnings[0].startswith('warning epoch=0 message="first training batch: model output (32, 1) float32 and '
                                  'targets (32,) float32 would broadcast to (32, 32) in an element-wise loss, and the '
                                  'loss of the first rows (')
    assert "is not the mean of their one-sample losses" in warnings[0] and "training goes on" in warnings[0]


ONE_SHOT = GOOD.replace("from trainmon.engine import Job", textwrap.dedent('''
    from torch.utils.data import IterableDataset
    from trainmon.engine import Job

    class Stream(IterableDataset):
        """A stream read once: its iterator is made when the job is built."""
        def __init__(self, x, y):
            self.rows = iter(list(zip(x, y)))
        def __len__(self):
            return 300
        def __iter__(self):
            return self.rows
''')).replace("train_dataset=TensorDataset(x, y)", "train_dataset=Stream(x, y)")


@pytest.mark.slow
def test_a_one_shot_stream_trains_all_its_data_once_and_the_empty_epoch_is_a_warning(tmp_path):
    write(tmp_path, "stream.py", ONE_SHOT)
    result = trainmon("run", "stream.py", "--headless", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch=")]
    assert epochs[0].startswith("epoch=1/2 iterations=10/10 steps=10 samples=300 ")  # the preflight took nothing
    assert epochs[1].startswith("epoch=2/2 iterations=0/10 steps=0 samples=300 ")
    warning = ('warning epoch=2 message="epoch 2 ran 0 iterations of the 10 planned: the training data ran out; an '
               'IterableDataset must return a new iterator from each __iter__ call (not warned again)"')
    assert warning in [untimed(line) for line in lines]
    logs = trainmon("logs", str(tmp_path / "run"))
    assert warning in [untimed(line) for line in logs.stdout.splitlines()], logs.stdout + logs.stderr
    plan = trainmon("plan", "--job", "stream.py", "--batch-size", "5", "--json", cwd=tmp_path)  # item 3: a length
    assert '"samples_per_epoch": 300' in plan.stdout and '"iterations": 60' in plan.stdout


DATASET_CLASS = GOOD.replace("from trainmon.engine import Job", textwrap.dedent('''
    from torch.utils.data import Dataset
    from trainmon.engine import Job

    class Squares(Dataset):
        """The README's pattern: a Dataset class defined in the job file."""
        def __init__(self, x, y):
            self.x, self.y = x, y
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i], self.y[i]
''')).replace("train_dataset=TensorDataset(x, y)", "train_dataset=Squares(x, y)")


def wait_until_ended(run_dir: Path, timeout: float = 180) -> dict:
    import json

    deadline = time.monotonic() + timeout
    while "exit_code" not in json.loads((run_dir / "run.json").read_text()):  # written once the engine is done
        assert time.monotonic() < deadline, (run_dir / "output.log").read_text()
        time.sleep(0.2)
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_import_a_dataset_class_from_the_job_file(tmp_path, start_method):
    # spawn (macOS's default) and forkserver (Linux's from Python 3.14) import the job file by name in
    # each worker; a private module name failed there with "DataLoader worker exited unexpectedly"
    source = DATASET_CLASS if start_method == "fork" else DATASET_CLASS.replace(
        "from trainmon.engine import Job", "from trainmon.engine import Job\n"
        "torch.multiprocessing.set_start_method('spawn', force=True)", 1)
    write(tmp_path, "squares.py", source)
    run_dir = tmp_path / "run"
    started = trainmon("run", "squares.py", "--detach", "--num-workers", "2", "--run-dir", str(run_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    info = wait_until_ended(run_dir)
    log = (run_dir / "output.log").read_text()
    assert info["status"] == "finished" and info["exit_code"] == 0, log
    assert info["config"]["num_workers"] == 2
    assert "Error" not in log
    logs = trainmon("logs", str(run_dir)).stdout.splitlines()
    assert logs[-1].startswith("finished epochs=2 iterations=20 steps=20 samples=600 "), logs


@pytest.mark.slow
def test_a_worker_that_dies_before_torch_can_catch_its_error_shows_that_error(tmp_path):
    source = DATASET_CLASS.replace("from trainmon.engine import Job", "from trainmon.engine import Job\n"
                                   "torch.multiprocessing.set_start_method('spawn', force=True)", 1).replace(
        "    def __len__(self):", "    def __setstate__(self, state):  # opening a shard, say\n"
        "        raise FileNotFoundError('shard-7.bin is not on this machine')\n\n"
        "    def __len__(self):", 1)
    assert "__setstate__" in source
    write(tmp_path, "shards.py", source)
    run_dir = tmp_path / "run"
    started = trainmon("run", "shards.py", "--detach", "--num-workers", "1", "--run-dir", str(run_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    info = wait_until_ended(run_dir)
    assert info["status"] == "failed"
    last = trainmon("logs", str(run_dir)).stdout.splitlines()[-1]
    assert untimed(last) == ('failed phase=training message="DataLoader worker exited unexpectedly: FileNotFoundError: '
                            'shard-7.bin is not on this machine"'), last


def test_a_training_script_given_as_a_job_says_how_to_run_it(tmp_path):
    """Issue 21 item 12: `trainmon run train.py` on a script that trains by itself (here it exits while being
    imported, as examples/hf_tiny.py did): one line saying to run it with python or trainmon exec."""
    from trainmon.engine.jobs.loader import JobError, load_job

    script = tmp_path / "train.py"
    script.write_text("import sys\n\ndef main():\n    return 0  # trainer.fit(model)\n\nif __name__ == '__main__':\n"
                      "    main()\nsys.exit(3)\n")
    with pytest.raises(JobError) as refused:
        load_job(str(script))
    assert str(refused.value) == (
        f"train.py called sys.exit(3) while being imported: train.py looks like a training script, not a job "
        f"file — run it with `python {script}`, or `trainmon exec -- python {script}` to watch it (a job file "
        f"defines job() returning a trainmon Job)")
    quiet = tmp_path / "quiet.py"
    quiet.write_text("import torch\n\nif __name__ == '__main__':\n    print('training')\n")
    with pytest.raises(JobError, match="^quiet.py looks like a training script, not a job file"):
        load_job(str(quiet))


@pytest.mark.parametrize("call", ["trainmon.track(opt)", "track(opt)"])
def test_a_track_script_given_as_a_job_is_refused_before_it_trains(tmp_path, call):
    """A new user's trial: `trainmon run train.py` on a track() script trained the whole script (recording a
    run named `trainmon`), then said it was no job file. Its top-level track() call is seen before it runs."""
    from trainmon.engine.jobs.loader import JobError, load_job

    ran = tmp_path / "ran"
    script = tmp_path / "train.py"
    script.write_text("import pathlib\nimport torch\nimport trainmon\nfrom trainmon import track\n\n"
                      "opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)\n"
                      f"pathlib.Path({str(ran)!r}).write_text('trained')\nrun = {call}\n")
    with pytest.raises(JobError, match=r"^train.py looks like a training script, not a job file — run it with "):
        load_job(str(script))
    assert not ran.exists()  # refused before a line of it ran
    job_file = tmp_path / "jobfile.py"  # a job file that uses track() inside a function is still a job file
    job_file.write_text("import trainmon\n\ndef helper(opt):\n    return trainmon.track(opt)\n\n"
                        "def job():\n    raise RuntimeError('job() was called')\n")
    with pytest.raises(JobError, match="job\\(\\) was called"):
        load_job(str(job_file))
    bound = tmp_path / "bound.py"  # a job bound by assignment: a job file, whatever else it calls at import
    bound.write_text("import trainmon\n\ndef make():\n    raise RuntimeError('the bound job was called')\n\n"
                     "job = make\ntracker = type('T', (), {'track': staticmethod(lambda: None)})\ntracker.track()\n")
    with pytest.raises(JobError, match="the bound job was called"):
        load_job(str(bound))
