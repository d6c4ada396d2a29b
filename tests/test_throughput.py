"""Throughput in the job's units: the MFU formula, the peak table, the "unknown" wording, and a real tracked
loop over token sequences whose headless lines and exports carry `tokens_per_s=`."""

from __future__ import annotations

import io
import re
import time

import pytest
import torch
from engines import trainmon as run_cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmon
from trainmon.cli.headless import HeadlessPrinter
from trainmon.engine.core import messages as msg
from trainmon.engine.core.peak_flops import device_row, peak_flops, precision_of
from trainmon.engine.core.report import epoch_line, progress_line
from trainmon.engine.core.throughput import (
    Throughput,
    ThroughputMeter,
    model_flops_utilisation,
    throughput_fields,
    throughput_record,
)
from trainmon.engine.record.export import read_records
from trainmon.engine.record.rundir import read_events, read_run
from trainmon.tui.widgets.progress_pane import speed_groups
from trainmon.tui.widgets.throughput_text import mfu_text, throughput_groups

T = 1e12


@pytest.mark.parametrize("achieved,peak,devices,expected", [
    (494.75 * T, 989.5 * T, 1, 0.5),      # half an H100's bf16 peak
    (312 * T, 312 * T, 2, 0.5),          # one A100's peak over two devices
    (30.3 * T, 30.3 * T, 1, 1.0),
    (None, 989.5 * T, 1, None),          # no FLOPs achieved yet (rate not measured)
    (100 * T, None, 1, None),            # no peak figure: unknown, never guessed
    (100 * T, 0.0, 1, None),
    (100 * T, 312 * T, 0, None),
])
def test_mfu_is_achieved_over_peak_times_devices(achieved, peak, devices, expected):
    assert model_flops_utilisation(achieved, peak, devices) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("name,precision,peak,row", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.5 * T, "H100 SXM"),
    ("NVIDIA H100 80GB HBM3", "fp32", 67 * T, "H100 SXM"),
    ("NVIDIA H100 PCIe", "fp16", 756.5 * T, "H100 PCIe"),
    ("NVIDIA H100 NVL", "bfloat16", 835.5 * T, "H100 NVL"),
    ("NVIDIA H200", "bf16", 989.5 * T, "H200 SXM"),
    ("NVIDIA H200 NVL", "fp32", 60 * T, "H200 NVL"),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312 * T, "A100"),
    ("NVIDIA A100 80GB PCIe", "float32", 19.5 * T, "A100"),
    ("NVIDIA L4", "torch.float16", 121 * T, "L4"),
    ("NVIDIA A10", "bf16", 125 * T, "A10"),
    ("Tesla V100-SXM2-16GB", "fp16", 125 * T, "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "fp32", 14 * T, "V100 PCIe"),
    ("Tesla T4", "fp16", 65 * T, "T4"),
    ("Tesla T4", "bf16", None, "T4"),           # a precision the device lacks
    ("NVIDIA L40S", "bf16", None, None),        # not in the table: unknown (not the L4's figure)
    ("NVIDIA A10G", "bf16", None, None),        # not the A10's
    ("NVIDIA GH200 480GB", "bf16", None, None),  # not the H200's
    (None, "fp32", None, None),                 # a CPU
    ("", "bf16", None, None),
])
def test_peak_table_by_device_name_and_precision(name, precision, peak, row):
    assert peak_flops(name, precision) == peak
    assert device_row(name) == row


def test_precision_names_and_a_bad_one():
    assert [precision_of(p) for p in ("bf16-mixed", "16-mixed", "32-true", "torch.bfloat16", "FP32")] == \
        ["bf16", "fp16", "fp32", "bf16", "fp32"]
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, not 'int8'"):
        precision_of("int8")


def test_tokens_per_second_is_the_samples_rate_times_tokens_per_sample_and_mfu_follows():
    meter = ThroughputMeter()
    meter.configure("tokens", flops_per_token=6e9, device_name="NVIDIA H100 80GB HBM3", precision="bf16")
    meter.add_weights({0: 4 * 128, 1: 4 * 128, 3: 2 * 64}, [4, 4, 4, 2])  # iteration 2 gave no weight: left out
    t = meter.figures(100.0)
    assert (meter.counted, meter.counted_samples) == (1152.0, 10)
    assert t.tokens_per_second == pytest.approx(100.0 * 1152 / 10)
    assert t.flops_per_second == pytest.approx(6e9 * 11520)
    assert t.peak_flops == 989.5 * T
    assert t.mfu == pytest.approx(6e9 * 11520 / (989.5 * T))
    assert throughput_fields(t) == f" samples_per_s=100.0 tokens_per_s=11520.0 mfu={t.mfu:.3f}"
    assert meter.figures(None).tokens_per_second is None  # the rate not measured yet
    assert meter.figures(100.0, world_size=2).mfu == pytest.approx(t.mfu / 2)


def test_flops_per_sample_and_the_runs_precision():
    meter = ThroughputMeter()
    meter.configure(flops_per_sample=1e12, device_name="NVIDIA A100-SXM4-80GB")
    t = meter.figures(156.0, precision="bf16")  # precision not configured: the run's own
    assert (t.tokens_per_second, t.mfu) == (None, pytest.approx(0.5))
    assert throughput_fields(t) == " samples_per_s=156.0 mfu=0.500"
    assert mfu_text(t) == "MFU 50.0 % (A100)"
    assert throughput_record(t) == {"samples_per_s": 156.0, "achieved_flops": 156e12, "peak_flops": 312 * T,
                                    "mfu": pytest.approx(0.5)}


def test_on_a_cpu_mfu_is_unknown_in_words_and_left_off_the_lines():
    meter = ThroughputMeter()
    meter.configure("tokens", flops_per_token=1e6, device_name=None)
    meter.add(640.0, 10)
    t = meter.figures(50.0)
    assert (t.peak_flops, t.mfu, t.tokens_per_second) == (None, None, 3200.0)
    assert mfu_text(t) == "MFU: unknown (no peak figure for this device)"
    assert throughput_groups(t) == ["3,200.0 tokens/s", "MFU: unknown (no peak figure for this device)"]
    assert throughput_fields(t) == " samples_per_s=50.0 tokens_per_s=3200.0"  # no mfu= guessed
    snapshot = msg.Snapshot(status=msg.RUNNING, iterations_per_second=5.0, samples_per_second=50.0, throughput=t)
    assert speed_groups(snapshot) == ["5.0 it/s", "50.0 samples/s", "3,200.0 tokens/s",
                                      "MFU: unknown (no peak figure for this device)"]


def test_a_job_without_tokens_or_flops_shows_samples_only():
    t = ThroughputMeter().figures(320.0)
    assert throughput_groups(t) == [] and throughput_fields(t) == " samples_per_s=320.0"
    assert throughput_record(t) == {"samples_per_s": 320.0}
    assert throughput_fields(None) == "" and throughput_record(None) == {}


@pytest.mark.parametrize("kwargs,error", [
    ({"unit": "words"}, "unit must be one of samples, tokens, not 'words'"),
    ({"flops_per_sample": -1}, "flops_per_sample must be a number > 0"),
    ({"flops_per_sample": 1.0, "flops_per_token": 1.0, "unit": "tokens"}, "not both"),
    ({"flops_per_token": 1.0}, 'flops_per_token needs unit="tokens"'),
    ({"precision": "int4"}, "precision must be one of"),
])
def test_bad_units_are_one_line_errors(kwargs, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        trainmon.track(quiet=True, **kwargs)


SEQUENCES, LENGTH, VOCAB = 96, 16, 32


def token_data() -> TensorDataset:
    """Next-token pairs over a repeating pattern: inputs `(N, T)`, targets `(N, T)`, token ids < VOCAB."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, VOCAB, (SEQUENCES, 1), generator=g)
    tokens = (starts + torch.arange(LENGTH + 1)) % VOCAB
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


def test_a_tracked_loop_counting_tokens_prints_tokens_per_s_and_exports_it():
    """A tiny embedding language model over token sequences, its loss a per-token mean weighted by its tokens:
    epoch and progress lines carry `tokens_per_s=` (the samples rate × 16 tokens a sequence), on a CPU the MFU
    is unknown and said so, and the export's epoch rows hold the same figures."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(VOCAB, 16), nn.Linear(16, VOCAB))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(token_data(), batch_size=8)
    params = sum(p.numel() for p in model.parameters())
    run = trainmon.track(optimizer, unit="tokens", flops_per_token=6 * params, quiet=True)
    out = io.StringIO()
    run.tracker.channel.listener = HeadlessPrinter(out=out, progress_every=0.0)
    run.tracker.core.speed.eta.settle_seconds = 0.5  # the rate shows after 0.5 s of training, not 3 s
    run.tracker.channel.polled = True  # `screen` below reads snapshots as a viewer does: publications at a viewer's rate
    screen: list[list[str]] = []
    for _ in run.epochs(3):
        for x, y in run.batches(loader):
            loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss, weight=y.numel())  # the sequence's tokens: a Python int from the shape, no sync
            time.sleep(0.03)  # a slower model's compute: the rate settles within the first epochs
        latest = run.tracker.core.last_snapshot
        screen.append(speed_groups(latest))
    lines = out.getvalue().splitlines()
    epochs = [line for line in lines if line.startswith("epoch=")]
    progress = [line for line in lines if line.startswith("progress ")]
    assert len(epochs) == 3
    settled = [line for line in epochs if "tokens_per_s=n/a" not in line]
    assert settled, epochs  # the last epoch at least has a measured rate
    for line in settled + [p for p in progress if "tokens_per_s=n/a" not in p]:
        samples = float(re.search(r" samples_per_s=([\d.]+)", line).group(1))
        tokens = float(re.search(r" tokens_per_s=([\d.]+)", line).group(1))
        assert tokens == pytest.approx(samples * LENGTH, abs=0.05 * LENGTH + 0.05)  # both printed to 0.1
        assert " mfu=" not in line  # a CPU: no peak figure, no guess
    assert any("tokens_per_s=" in p and "tokens_per_s=n/a" not in p for p in progress), progress[-3:]
    assert "MFU: unknown (no peak figure for this device)" in screen[-1]
    assert any(group.endswith(" tokens/s") for group in screen[-1])

    ended = [e for _, e in read_events(run.tracker.run_path) if isinstance(e, msg.EpochEnded)]
    last = ended[-1].throughput
    assert isinstance(last, Throughput) and last.unit == "tokens" and last.counts_flops and last.mfu is None
    assert last.tokens_per_second == pytest.approx(last.samples_per_second * LENGTH)
    assert epoch_line(ended[-1]).endswith(throughput_fields(last))  # new fields go last
    rows = read_records(read_run(run.tracker.run_path)).epochs
    assert rows[-1]["tokens_per_s"] == pytest.approx(last.tokens_per_second)
    assert rows[-1]["samples_per_s"] == last.samples_per_second and rows[-1]["mfu"] is None
    assert "tokens_per_s=" in progress_line(msg.Snapshot(throughput=last))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_trainmon_logs_prints_the_epochs_tokens_per_s(tmp_path):
    """The same figures from the run directory through the real CLI (`trainmon logs ID`)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(token_data(), batch_size=4)
    run = trainmon.track(optimizer, unit="tokens", quiet=True)
    run.tracker.core.speed.eta.settle_seconds = 0.5  # the rate shows after 0.5 s of training, not 3 s
    for _ in run.epochs(2):
        for x, y in run.batches(loader):
            loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss, weight=y.numel())
            time.sleep(0.02)
    result = run_cli("logs", run.id)
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch=2/2")]
    assert len(epochs) == 1
    samples = float(re.search(r" samples_per_s=([\d.]+)", epochs[0]).group(1))
    tokens = float(re.search(r" tokens_per_s=([\d.]+)", epochs[0]).group(1))
    assert tokens == pytest.approx(samples * LENGTH, abs=0.05 * LENGTH + 0.05)  # both printed to 0.1


def test_a_built_in_job_counting_tokens_records_tokens_per_s():
    """A built-in job whose `batch_count` counts tokens (`count_unit="tokens"`): its epochs carry tokens/s,
    the samples rate × 16 tokens a sequence; with FLOPs per token on a CPU, MFU is unknown."""
    from trainmon.engine.control.channel import Channel
    from trainmon.engine.core.report import event_line
    from trainmon.engine.jobs.job import Job, RunConfig
    from trainmon.engine.run.trainer import Trainer

    def per_token(outputs, targets):
        time.sleep(0.02)  # a slower model's compute: the rate settles within the first epochs
        return nn.functional.cross_entropy(outputs.flatten(0, 1), targets.flatten())

    torch.manual_seed(0)
    job = Job(name="tokens", model=nn.Sequential(nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB)),
              train_dataset=token_data(), loss_fn=per_token, batch_count=lambda batch: batch[1].numel(),
              count_unit="tokens", flops_per_token=1e5, epochs=3, batch_size=8, shuffle=False)
    seen: list = []
    trainer = Trainer(job, RunConfig(epochs=3, batch_size=8, device="cpu", checkpoints=False),
                      channel=Channel(listener=seen.append))
    trainer.core.speed.eta.settle_seconds = 0.3  # the rate shows after 0.3 s of training, not 3 s
    trainer.run()
    ended = [e for e in seen if isinstance(e, msg.EpochEnded)]
    last = ended[-1].throughput
    assert last.unit == "tokens" and last.samples_per_second is not None and last.mfu is None
    assert last.tokens_per_second == pytest.approx(last.samples_per_second * LENGTH)
    assert f" tokens_per_s={last.tokens_per_second:.1f}" in event_line(ended[-1])
    running = [s.throughput for s in seen if isinstance(s, msg.Snapshot) and s.throughput is not None
               and s.throughput.tokens_per_second is not None]
    assert running and mfu_text(running[-1]) == "MFU: unknown (no peak figure for this device)"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_speed_line_on_screen_says_mfu_is_unknown_on_a_cpu():
    """A real digits run that gives FLOPs per sample, on a CPU, in the app: the speed line shows samples/s and
    says the MFU is unknown rather than guess one."""
    from test_tui_pilot import settle

    from trainmon.engine.jobs import JobSpec
    from trainmon.engine.jobs.job import RunConfig
    from trainmon.engine.run.threaded import ThreadRun
    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.widgets.quiet import FlowStatic

    job = JobSpec("digits").build()
    job.flops_per_sample = 6 * sum(p.numel() for p in job.model.parameters())
    run = ThreadRun(job, RunConfig.for_job(job, epochs=400)).start()
    app = TrainmonApp(run)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.RUNNING and s.samples_per_second is not None)
        await pilot.pause(0.3)
        text = app.query_one("#speed", FlowStatic)._last_text
        assert " samples/s" in text and "MFU: unknown (no peak figure for this device)" in text, text
        await pilot.press("q", "y")
        await pilot.pause(0.5)
    run.join(10)
    assert not run.alive
