"""`trainmon export` and `--tensorboard DIR`: a real headless run, read back by CSV, JSON and
TensorBoard's own reader, compared with `trainmon logs` and the run directory's loss.json."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from engines import TRAINMON
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainmon.cli.main import cli
from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import general, metric, mib
from trainmon.engine.core.report import event_line
from trainmon.engine.record.export import StepMap
from trainmon.engine.record.rundir import read_events, read_loss

# 3 epochs of digits (1437 samples): batch 32, 64, 64 (growth 2, capped) and accumulation 2, so
# epoch 1 has 45 iterations in 23 steps (a short last window) and the batch size changes once
ARGS = ("--headless", "--epochs", "3", "--accum", "2", "--batch-growth", "2", "--max-batch-size", "64")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished headless run with `--tensorboard`: (run dir, live TensorBoard dir)."""
    base = tmp_path_factory.mktemp("exported")
    run_dir, live = base / "run", base / "live-tb"
    env = {**os.environ, "TRAINMON_HOME": str(base / "home")}
    result = subprocess.run([TRAINMON, *ARGS, "--run-dir", str(run_dir), "--tensorboard", str(live)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr
    return run_dir, live


def export(*args: str) -> "CliRunner.Result":
    return CliRunner().invoke(cli, ["export", *args])


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def texts(folder: Path, tag: str) -> list[tuple[int, str]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(f"{tag}/text_summary")]


def epoch_ends(run_dir: Path) -> list[msg.EpochEnded]:
    return [e for _, e in read_events(run_dir) if isinstance(e, msg.EpochEnded)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_csv_epoch_rows_equal_the_logs_lines_and_iterations_equal_loss_json(run, tmp_path):
    run_dir, _live = run
    result = export(str(run_dir), "--format", "csv", "--out", str(tmp_path / "csv"))
    assert result.exit_code == 0, result.output
    logs = CliRunner().invoke(cli, ["logs", str(run_dir)])
    lines = [dict(f.split("=", 1) for f in line.split()) for line in logs.output.splitlines()
             if line.startswith("epoch=")]
    rows = list(csv.DictReader(open(tmp_path / "csv" / "epochs.csv")))
    assert len(rows) == len(lines) == 3
    for row, line in zip(rows, lines):
        assert f"{row['epoch']}/{row['epochs']}" == line["epoch"]
        for column, key in [("samples_seen", "samples"), ("steps", "steps"), ("batch_size", "batch_size"),
                            ("accum", "accum"), ("global_iteration", "global_iteration"),
                            ("global_step", "global_step"), ("nonfinite", "nonfinite")]:
            assert row[column] == line[key], column
        for name in ("train_loss", "val_loss", "val_acc"):
            assert metric(float(row[name])) == line[name], name
        assert general(float(row["lr"])) == line["lr"]
        assert mib(float(row["peak_rss_mib"])) == line["peak_rss_mib"]
    assert [r["batch_size"] for r in rows] == ["32", "64", "64"]
    iterations = list(csv.DictReader(open(tmp_path / "csv" / "iterations.csv")))
    recent = read_loss(run_dir)["recent"]
    assert [(int(r["global_iteration"]), float(r["loss"])) for r in iterations] == [(x, y) for x, y in recent]
    assert {r["record"] for r in iterations} == {"iteration"}  # a short run: every point exact
    assert [int(r["epoch"]) for r in iterations].count(1) == 45
    assert int(iterations[44]["optimizer_step"]) == 23 and int(iterations[45]["optimizer_step"]) == 24
    events = list(csv.DictReader(open(tmp_path / "csv" / "events.csv")))
    changed = [e for e in events if e["record"] == "batch_size_changed"]
    assert len(changed) == 1 and json.loads(changed[0]["details"]) == {"old": 32, "new": 64}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_jsonl_lines_parse_and_count_the_run(run, tmp_path):
    run_dir, _live = run
    out = tmp_path / "run.jsonl"
    result = export(str(run_dir), "--format", "jsonl", "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [r["record"] for r in records]
    events = [e for _, e in read_events(run_dir)]
    with_lines = [e for e in events if event_line(e) is not None and not isinstance(e, msg.EpochEnded)]
    assert kinds[0] == "run" and records[0]["status"] == "finished"
    assert kinds.count("iteration") == len(read_loss(run_dir)["recent"])
    assert kinds.count("epoch") == len(epoch_ends(run_dir)) == 3
    assert len(records) == 1 + kinds.count("iteration") + 3 + len(with_lines)
    final = [r for r in records if r["record"] == "finished"]
    last = [r for r in records if r["record"] == "iteration"][-1]
    assert last["optimizer_step"] == final[0]["global_step"] == epoch_ends(run_dir)[-1].global_step
    # stdout by default, the same lines
    assert export(str(run_dir), "--format", "jsonl").stdout.splitlines() == out.read_text().splitlines()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tensorboard_export_reads_back_on_both_step_axes(run, tmp_path):
    run_dir, _live = run
    assert export(str(run_dir), "--format", "tensorboard", "--out", str(tmp_path / "it")).exit_code == 0
    recent = read_loss(run_dir)["recent"]
    loss = scalars(tmp_path / "it", "train/loss")
    assert [s for s, _ in loss] == [int(x) for x, _ in recent]
    assert [v for _, v in loss] == pytest.approx([y for _, y in recent], rel=1e-6)  # float32 in the file
    ends = epoch_ends(run_dir)
    assert scalars(tmp_path / "it", "epoch/val_loss") == [(e.global_iteration, pytest.approx(e.val_loss, rel=1e-6))
                                                          for e in ends]
    assert "global iterations" in texts(tmp_path / "it", "trainmon/step_axis")[0][1]

    result = export(str(run_dir), "--format", "tensorboard", "--out", str(tmp_path / "st"), "--step",
                    "optimizer_step")
    assert result.exit_code == 0, result.output
    by_step = scalars(tmp_path / "st", "train/loss")
    assert [s for s, _ in by_step] == list(range(1, ends[-1].global_step + 1))
    # step 1 = iterations 1 and 2 (32 samples each); step 23 = iteration 45 alone (the short window)
    assert by_step[0][1] == pytest.approx((recent[0][1] + recent[1][1]) / 2, rel=1e-6)
    assert by_step[22][1] == pytest.approx(recent[44][1], rel=1e-6)
    assert [s for s, _ in scalars(tmp_path / "st", "epoch/val_loss")] == [e.global_step for e in ends]
    assert "optimizer steps" in texts(tmp_path / "st", "trainmon/step_axis")[0][1]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_live_tensorboard_holds_the_loss_json_values(run):
    run_dir, live = run
    recent = read_loss(run_dir)["recent"]
    loss = scalars(live, "train/loss")
    assert [s for s, _ in loss] == [int(x) for x, _ in recent]
    assert [v for _, v in loss] == pytest.approx([y for _, y in recent], rel=1e-6)
    ends = epoch_ends(run_dir)
    assert [v for _, v in scalars(live, "epoch/val_loss")] == pytest.approx([e.val_loss for e in ends], rel=1e-6)
    assert [(s, int(v)) for s, v in scalars(live, "epoch/batch_size")] == [(45, 32), (68, 64), (91, 64)]
    assert any(t.startswith("batch_size_changed old=32 new=64") for _, t in texts(live, "events"))
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    assert settings["options"]["tensorboard"] == str(live)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_lost_run_exports_what_it_recorded(run, tmp_path):
    run_dir, _live = run
    copy = tmp_path / "lost"
    shutil.copytree(run_dir, copy)
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "status": "running"}))  # no engine holds its lock
    result = export(str(copy), "--format", "jsonl")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["status"] == "lost"
    assert [r["record"] for r in records].count("epoch") == 3


def test_step_map_follows_accumulation_changes_and_short_windows():
    steps = StepMap()
    steps.epoch_started(msg.EpochStarted(1, 2, batch_size=10, accum=2, iterations=7, last_batch_size=3,
                                         global_iteration=0))
    steps.accum_changed(msg.AccumChanged(2, 3, epoch=1, global_iteration=4))  # windows [1,2] [3,4] then by 3
    assert [steps.step_of(x) for x in range(1, 8)] == [1, 1, 2, 2, 3, 3, 3]
    assert steps.weight_of(7) == 3 and steps.weight_of(6) == 10
    steps.steps_done = 3
    steps.epoch_started(msg.EpochStarted(2, 2, batch_size=10, accum=3, iterations=7, last_batch_size=3,
                                         global_iteration=7))
    assert [steps.step_of(x) for x in range(8, 15)] == [4, 4, 4, 5, 5, 5, 6]  # the last window is short
    assert (steps.epoch_of(7), steps.epoch_of(8)) == (1, 2)
    assert StepMap().step_of(1) is None  # nothing recorded yet


@pytest.mark.parametrize("args, fragment", [
    (["export", "nope-no-such-run", "--format", "csv"], "no run matches 'nope-no-such-run'"),
])
def test_unknown_run_is_one_line(args, fragment):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"trainmon: error: {fragment} (see `trainmon ls`)"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_out_that_is_not_empty_is_refused_unless_forced(run, tmp_path):
    run_dir, _live = run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    result = export(str(run_dir), "--format", "csv", "--out", str(tmp_path / "full"))
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"trainmon: error: {tmp_path / 'full'} exists and is not empty "
                                          "(give another --out, or --force to write into it)"]
    assert export(str(run_dir), "--format", "csv", "--out", str(tmp_path / "full"), "--force").exit_code == 0
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep" and (tmp_path / "full" / "epochs.csv").exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_missing_tensorboard_package_is_one_line(run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    run_dir, _live = run
    for args in (["export", str(run_dir), "--format", "tensorboard", "--out", str(tmp_path / "tb")],
                 ["--headless", "--tensorboard", str(tmp_path / "tb")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.splitlines() == [
            "trainmon: error: TensorBoard files need the tensorboard package: pip install tensorboard"]
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_bad_format_is_one_line(run):
    run_dir, _live = run
    result = subprocess.run([TRAINMON, "export", str(run_dir), "--format", "xml"], capture_output=True, text=True,
                            timeout=50)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("trainmon: error: ")
    assert "'xml' is not one of 'csv', 'jsonl', 'tensorboard'" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_tensorboard_folder_that_cannot_be_made_never_stops_the_run(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = subprocess.run([TRAINMON, "--headless", "--epochs", "1", "--run-dir", str(tmp_path / "run"),
                             "--tensorboard", str(tmp_path / "a-file" / "tb")],
                            capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("finished epochs=1")
    assert [line for line in result.stderr.splitlines() if "TensorBoard" in line] == [
        f"trainmon: no TensorBoard output: [Errno 20] Not a directory: '{tmp_path / 'a-file' / 'tb'}'"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_resumed_run_goes_on_in_the_same_tensorboard_folder(tmp_path):
    run_dir, live = tmp_path / "run", tmp_path / "tb"
    first = subprocess.run([TRAINMON, "--headless", "--epochs", "1", "--run-dir", str(run_dir), "--tensorboard",
                            str(live)], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([TRAINMON, "resume", str(run_dir), "--epochs", "2", "--headless"], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    recent = read_loss(run_dir)["recent"]
    loss = scalars(live, "train/loss")
    assert [s for s, _ in loss] == [int(x) for x, _ in recent] == list(range(1, 91))
    assert [v for _, v in loss] == pytest.approx([y for _, y in recent], rel=1e-6)
    assert [s for s, _ in scalars(live, "epoch/val_loss")] == [45, 90]
