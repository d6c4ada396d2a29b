"""The Hugging Face callback with the real library: tiny randomly initialised GPT-2 models on the CPU
(nothing downloaded). trainmon's counts must equal the Trainer's own; pause and stop work over the
socket from another process; a dropped viewer never stops the training."""
# ruff: noqa: E402 - the imports below need the framework, skipped first where it is missing

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch
from engines import ls_json, pid_gone, run_info, wait_until
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg
from trainmon.integrations.transformers import ACCUM_FIXED, BATCH_SIZE_FIXED, TrainmonCallback

ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ = 64, 8


class Tokens(torch.utils.data.Dataset):
    """`m` random sequences of SEQ token ids; labels = inputs (GPT-2 shifts them itself)."""

    def __init__(self, m: int, seed: int = 0) -> None:
        self.ids = torch.randint(0, VOCAB, (m, SEQ), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Reference(TrainerCallback):
    """What the Trainer itself did, counted beside trainmon: micro-batches and steps per epoch."""

    def __init__(self) -> None:
        self.micro: list[int] = []
        self.steps: list[int] = []
        self.epoch_ends = 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.micro.append(0)
        self.steps.append(0)

    def on_substep_end(self, args, state, control, **kwargs):
        self.micro[-1] += 1

    def on_step_end(self, args, state, control, **kwargs):
        self.micro[-1] += 1
        self.steps[-1] += 1

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_ends += 1


def tiny_trainer(tmp_path: Path, m: int = 37, callbacks=(), **overrides) -> Trainer:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=2, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=4,
                   num_train_epochs=2, logging_steps=1, learning_rate=1e-3, report_to="none", disable_tqdm=True,
                   save_strategy="no", eval_strategy="epoch", use_cpu=True)
    options.update(overrides)
    return Trainer(model=model, args=TrainingArguments(**options), train_dataset=Tokens(m),
                   eval_dataset=Tokens(8, seed=1), callbacks=list(callbacks))


def events(run_path: Path) -> list[dict]:
    lines = (Path(run_path) / "events.jsonl").read_text().splitlines()
    return [json.loads(line)["event"] for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("overrides", [
    {},                                              # 2 epochs of 10 micro-batches: windows 4, 4, 2
    {"max_steps": 4},                                # the cut comes first: 3 steps, then 1 of the 2nd epoch
    {"num_train_epochs": 1.5},                       # max_steps = ceil(1.5 · 3) = 5
    {"num_train_epochs": 1, "dataloader_drop_last": True, "gradient_accumulation_steps": 3},
], ids=["epochs", "max_steps", "fractional_epochs", "drop_last"])
def test_counts_equal_the_trainers(tmp_path, overrides):
    reference, callback = Reference(), TrainmonCallback(telemetry=False)
    trainer = tiny_trainer(tmp_path, callbacks=[reference, callback], **overrides)
    trainer.train()
    state, t = trainer.state, callback.tracker
    p = t.progress

    sizes = [len(batch["input_ids"]) for batch in trainer.get_train_dataloader()]  # what the loader yields
    assert p.global_step == state.global_step == sum(reference.steps)
    assert p.global_iteration == sum(reference.micro)
    assert p.samples_seen == sum(sum(sizes[:count]) for count in reference.micro)
    assert p.epoch == len(reference.micro) == reference.epoch_ends == math.ceil(state.epoch)
    assert isinstance(t.result, msg.Finished) and not t.result.stopped
    ended = [e for e in events(t.run_path) if e["type"] == "EpochEnded"]
    assert [e["iterations"] for e in ended] == reference.micro
    assert [e["steps"] for e in ended] == reference.steps
    assert [e["accum"] for e in ended] == [trainer.args.gradient_accumulation_steps] * len(ended)
    assert [e["iterations_planned"] for e in ended] == [len(sizes)] * len(ended)
    assert t.max_steps == state.max_steps and t.config.epochs == state.num_train_epochs
    rows = ls_json()
    assert [(r["status"], r["global_step"], r["global_iteration"]) for r in rows] == [
        ("finished", state.global_step, p.global_iteration)]


@pytest.mark.timeout(120)
def test_losses_and_validation_are_the_trainers(tmp_path):
    """The loss is the Trainer's logged `loss` (never divided by k), each weighted by its window's samples;
    the epoch's validation is `on_evaluate`'s."""
    callback = TrainmonCallback(telemetry=False)
    trainer = tiny_trainer(tmp_path, callbacks=[callback])
    trainer.train()
    history = trainer.state.log_history
    logged = {h["step"]: h["loss"] for h in history if "loss" in h}
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    window_samples = [16, 16, 5]  # 37 samples at batch size 4: micro-batches 4·9 + 1, windows of 4, 4, 2
    ended = [e for e in events(callback.tracker.run_path) if e["type"] == "EpochEnded"]
    assert len(ended) == 2 and len(logged) == 6
    for epoch, event in enumerate(ended):
        losses = [logged[3 * epoch + i + 1] for i in range(3)]
        mean = sum(w * x for w, x in zip(window_samples, losses)) / sum(window_samples)
        assert event["train_loss"] == pytest.approx(mean, rel=1e-9)
        assert event["train_loss"] > 3.0  # about ln(64) ≈ 4.2 at random init: a loss divided by k=4 is ~1
        assert event["val_loss"] == pytest.approx(evals[epoch], rel=1e-9)
    losses = callback.tracker._losses
    assert losses.last == pytest.approx(logged[6]) and losses.window_loss == pytest.approx(logged[6])


@pytest.mark.timeout(120)
def test_batch_size_and_accum_keys_are_dimmed_with_a_reason(tmp_path):
    callback = TrainmonCallback(telemetry=False)
    trainer = tiny_trainer(tmp_path, callbacks=[callback], num_train_epochs=1)
    trainer.train()
    control = callback.tracker._control
    assert (control.batch_size_off, control.accum_off) == (BATCH_SIZE_FIXED, ACCUM_FIXED)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_import_trainmon_never_imports_transformers_and_a_missing_extra_says_what_to_install():
    code = ("import sys, trainmon, trainmon.integrations; assert 'transformers' not in sys.modules\n"
            "sys.modules['transformers'] = None\n"
            "try:\n    import trainmon.integrations.transformers\nexcept ImportError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'pip install "trainmon[transformers]"' in result.stdout


def snapshot_of(client: RunClient) -> msg.Snapshot:
    """The newest snapshot the viewer holds (waits for the first one after subscribing)."""
    def newest():
        client.poll()
        return client.latest

    return wait_until(newest, timeout=30, interval=0.05, what="a snapshot")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_pause_resume_and_stop_over_the_socket_and_a_dropped_viewer(trainmon_home, tmp_path):
    """`examples/hf_tiny.py` as a user runs it (a process of its own): pause holds the iteration count
    still, resume moves it on, a viewer killed mid-run changes nothing, stop ends the process as stopped
    with trainmon's global step equal to the Trainer's."""
    env = {**os.environ, "TRAINMON_HOME": str(trainmon_home), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "script.log", "w")
    script = subprocess.Popen([sys.executable, str(ROOT / "examples" / "hf_tiny.py"), "--epochs", "1000",
                               "--output-dir", str(tmp_path / "out")], stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)
    follower = None
    try:
        rows = wait_until(lambda: [r for r in ls_json(env) if r["global_iteration"] > 0], timeout=90,
                          what="the script's run to start iterating")
        run_id = rows[0]["id"]
        run_dir = Path(rows[0]["path"])
        client = RunClient(run_info(run_dir)["socket"]).subscribe()

        client.send(msg.Pause())
        wait_until(lambda: snapshot_of(client).status == msg.PAUSED, timeout=30, what="paused")
        held = snapshot_of(client).global_iteration
        time.sleep(1.0)
        assert snapshot_of(client).global_iteration == held

        client.send(msg.Resume())
        wait_until(lambda: snapshot_of(client).global_iteration > held, timeout=30, what="moving on after resume")

        # a viewer that dies without a word (SIGKILL) never stops the training
        follower = subprocess.Popen([str(Path(sys.executable).with_name("trainmon")), "logs", "-f", run_id],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(1.5)
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=10)
        before = snapshot_of(client).global_iteration
        wait_until(lambda: snapshot_of(client).global_iteration > before + 2, timeout=30,
                   what="training going on after the viewer died")
        assert script.poll() is None

        client.send(msg.Stop())
        assert script.wait(timeout=60) == 0
        client.close()
        row = [r for r in ls_json(env) if r["id"] == run_id][0]
        assert row["status"] == "stopped"
        printed = (tmp_path / "script.log").read_text()
        assert f"trainer: global_step={row['global_step']} " in printed, printed[-2000:]
        finished = [e for e in events(run_dir) if e["type"] == "Finished"]
        assert len(finished) == 1 and finished[0]["stopped"] is True
    finally:
        for process in (script, follower):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL) if process is script else process.kill()
                process.wait(timeout=10)
        log.close()
        assert pid_gone(script.pid)


FAILING_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from transformers import TrainerCallback
from test_transformers import tiny_trainer
from trainmon.integrations.transformers import TrainmonCallback

class Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("boom at step 2")

tiny_trainer(Path({tmp!r}), callbacks=[TrainmonCallback(telemetry=False), Boom()], num_train_epochs=1).train()
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_exception_inside_train_leaves_a_failed_run(trainmon_home, tmp_path):
    """The Trainer has no hook for a failure: the callback finishes the run at interpreter exit, as failed."""
    script = tmp_path / "failing.py"
    script.write_text(FAILING_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)))
    env = {**os.environ, "TRAINMON_HOME": str(trainmon_home)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert result.returncode == 1 and "boom at step 2" in result.stderr
    rows = ls_json(env)
    assert [(r["status"], r["global_step"]) for r in rows] == [("failed", 2)]
    assert "boom at step 2" in rows[0]["message"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_train_call_records_a_second_run(tmp_path):
    callback = TrainmonCallback(telemetry=False)
    trainer = tiny_trainer(tmp_path, callbacks=[callback], num_train_epochs=1)
    trainer.train()
    first = callback.tracker
    trainer.train()
    assert callback.tracker is not first and callback.tracker.progress.global_step == trainer.state.global_step == 3
    assert sorted((r["status"], r["global_step"]) for r in ls_json()) == [("finished", 3), ("finished", 3)]


class Regression(torch.nn.Module):
    """A plain torch module, wrapped for the Trainer: keyword inputs `x` (B, 3) and `labels` (B, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x, labels):
        return {"loss": torch.nn.functional.mse_loss(self.linear(x), labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, m: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(m, 3, generator=g), torch.randn(m, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


@pytest.mark.timeout(120)
def test_a_plain_torch_module_counts_its_short_last_batch(tmp_path):
    """23 samples at batch size 5: micro-batches 5, 5, 5, 5, 3 (the input's first dimension, no input_ids)."""
    reference, callback = Reference(), TrainmonCallback(telemetry=False)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=5,
                             gradient_accumulation_steps=2, num_train_epochs=3, logging_steps=1, report_to="none",
                             disable_tqdm=True, save_strategy="no", use_cpu=True)
    trainer = Trainer(model=Regression(), args=args, train_dataset=Rows(23), callbacks=[reference, callback])
    trainer.train()
    p = callback.tracker.progress
    assert (p.global_step, p.global_iteration, p.samples_seen) == (trainer.state.global_step, 15, 69)
    assert reference.micro == [5, 5, 5] and reference.steps == [3, 3, 3] and trainer.state.global_step == 9


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_epochs_training_loss_is_its_own_when_log_windows_would_cross_epochs(tmp_path):
    """Issue 21 item 10: logging_steps=2 with 3 steps an epoch made the log at step 4 cover steps 3 and 4 (two
    epochs); the callback asks the Trainer to log at each epoch's end, so epoch 1's loss is steps 1–3's."""
    callback = TrainmonCallback(telemetry=False)
    trainer = tiny_trainer(tmp_path, callbacks=[callback], logging_steps=2, eval_strategy="no")
    trainer.train()
    logged = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    assert [step for step, _ in logged] == [2, 3, 4, 6]  # windows (0,2] (2,3] | (3,4] (4,6]: none spans two epochs
    ended = [e for e in events(callback.tracker.run_path) if e["type"] == "EpochEnded"]
    # epoch 1: steps 1-2 hold 8 micro-batches of 4 samples (32), step 3 the last two (4 + 1 = 5 samples)
    (_, loss_2), (_, loss_3) = logged[:2]
    assert ended[0]["train_loss"] == pytest.approx((loss_2 * 32 + loss_3 * 5) / 37, rel=1e-6)


def nan_from(model: torch.nn.Module, nan_at: int = 20) -> torch.nn.Module:
    """`model` with its training loss NaN at its `nan_at`-th training forward pass (1-based, a forward hook
    registered before the Trainer's); the NaN gradients then turn its weights NaN, so every later loss is NaN."""
    forwards = [0]

    def hook(module, args, out):
        if module.training:
            forwards[0] += 1
            if forwards[0] == nan_at:
                out["loss"] = out["loss"] * float("nan")
        return out

    model.register_forward_hook(hook)
    return model


@pytest.mark.timeout(120)
def test_a_nan_the_trainers_log_filter_hides_is_counted_and_alerted(tmp_path):
    """Issue 23 item 6: `logging_nan_inf_filter` (on by default) logs a running mean in place of a NaN, so
    the logged losses look healthy; trainmon reads the model's own loss: 21 non-finite losses (forward 20
    onwards), one `nan` alert at global iteration 20, and no epoch shows a NaN span's stand-in as a number."""
    callback = TrainmonCallback(telemetry=False)
    torch.manual_seed(0)
    model = nan_from(GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=2, n_head=2,
                                                bos_token_id=0, eos_token_id=0)))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                             gradient_accumulation_steps=2, num_train_epochs=2, logging_steps=1,
                             learning_rate=1e-3, report_to="none", disable_tqdm=True, save_strategy="no",
                             use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(80), callbacks=[callback])
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 20 and all(math.isfinite(x) for x in logged)  # the filter: every logged loss a number
    t = callback.tracker
    assert t.core.losses.nonfinite == 21 and math.isnan(t.core.losses.last)
    seen = events(t.run_path)
    assert [(e["global_iteration"], e["epoch"]) for e in seen if e["type"] == "NonFiniteLoss"] == [
        (i, 1 if i <= 20 else 2) for i in range(20, 41)]
    alerts = [e for e in seen if e["type"] == "Alert"]
    assert [(a["kind"], a["epoch"], a["global_iteration"]) for a in alerts] == [("nan", 1, 20)]
    ended = [e for e in seen if e["type"] == "EpochEnded"]
    assert [e["nonfinite"] for e in ended] == [1, 20]
    assert ended[0]["train_loss"] is not None and ended[1]["train_loss"] is None  # epoch 2 held no finite loss


@pytest.mark.timeout(120)
def test_a_trainer_counting_tokens_records_tokens_per_s(tmp_path):
    """`TrainmonCallback(unit="tokens")`: each `(B, T)` input counts B·T tokens, so tokens/s is T × samples/s;
    with FLOPs per token on a CPU the MFU is unknown (no peak figure), never guessed."""
    callback = TrainmonCallback(telemetry=False, unit="tokens", flops_per_token=1e6)
    trainer = tiny_trainer(tmp_path, callbacks=[callback])
    trainer.train()
    meter = callback.tracker.core.throughput
    assert (meter.counted, meter.counted_samples) == (2 * 37 * SEQ, 2 * 37)  # every micro-batch, both epochs
    t = meter.figures(10.0)
    assert (t.tokens_per_second, t.counts_flops, t.peak_flops, t.mfu) == (10.0 * SEQ, True, None, None)
    with pytest.raises(ValueError, match="unit must be one of samples, tokens"):
        TrainmonCallback(unit="words")
