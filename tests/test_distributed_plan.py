"""Distributed arithmetic by tables, checked against a real DistributedSampler and DataLoader, and
`trainmon plan --world-size W`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from trainmon.cli.main import main
from trainmon.cli.plan_view import render_distributed_plan
from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.core.distributed_plan import plan_distributed_epoch, plan_distributed_run, rank_samples
from trainmon.engine.core.plan import plan_run

TRAINMON = str(Path(sys.executable).with_name("trainmon"))

# m, W, b, k, drop_last -> per rank: sampler's samples, iterations, last batch, windows, loader's samples;
# over all ranks: padded, optimizer steps, real samples seen, dropped
TABLE = [
    (100, 3, 8, 2, False, 34, 5, 2, [2, 2, 1], 34, 2, 3, 100, 0),  # the example
    (100, 3, 8, 2, True, 33, 4, 8, [2, 2], 32, 0, 2, 96, 4),  # its drop_last variant: 1 by the sampler, 3×1 by loaders
    (1000, 4, 64, 4, False, 250, 4, 58, [4], 250, 0, 1, 1000, 0),  # W divides m: no padding
    (1000, 4, 64, 4, True, 250, 3, 64, [3], 192, 0, 1, 768, 232),
    (10, 4, 2, 1, False, 3, 2, 1, [1, 1], 3, 2, 2, 10, 0),
    (10, 4, 2, 1, True, 2, 1, 2, [1], 2, 0, 1, 8, 2),
    (2, 3, 4, 1, False, 1, 1, 1, [1], 1, 1, 1, 2, 0),  # fewer samples than ranks: one repeated
    (1, 8, 1, 1, False, 1, 1, 1, [1], 1, 7, 1, 1, 0),  # padding repeats the one sample 7 times
    (96, 3, 8, 3, True, 32, 4, 8, [3, 1], 32, 0, 2, 96, 0),
    (97, 3, 8, 3, False, 33, 5, 1, [3, 2], 33, 2, 2, 97, 0),
    (1437, 5, 32, 4, False, 288, 9, 32, [4, 4, 1], 288, 3, 3, 1437, 0),
    (1437, 5, 32, 4, True, 287, 8, 32, [4, 4], 256, 0, 2, 1280, 157),
    (5, 1, 2, 1, False, 5, 3, 1, [1, 1, 1], 5, 0, 3, 5, 0),  # one rank: the single-process numbers
    (0, 2, 4, 1, False, 0, 0, 0, [], 0, 0, 0, 0, 0),
    (0, 2, 4, 1, True, 0, 0, 0, [], 0, 0, 0, 0, 0),
]


@pytest.mark.parametrize(
    "m, w, b, k, drop_last, per_rank, iterations, last, windows, loader_samples, padded, steps, seen, dropped", TABLE
)
def test_distributed_epoch_by_table(m, w, b, k, drop_last, per_rank, iterations, last, windows, loader_samples,
                                    padded, steps, seen, dropped):
    assert rank_samples(m, w, drop_last) == (per_rank, padded)
    e = plan_distributed_epoch(m, w, b, k, drop_last)
    r = e.rank
    assert (e.samples_per_rank, r.iterations, r.last_batch_size, r.window_sizes, r.samples) == (
        per_rank, iterations, last, windows, loader_samples)
    assert (e.padded, e.optimizer_steps, e.samples_seen, e.dropped) == (padded, steps, seen, dropped)
    assert e.effective_batch_size == b * k * w
    assert e.samples_seen + e.padded == w * r.samples  # what all loaders yield: real samples plus duplicates


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "m, w, b, k, drop_last, per_rank, iterations, last, windows, loader_samples, padded, steps, seen, dropped", TABLE
)
def test_the_arithmetic_is_what_torch_yields(shuffle, m, w, b, k, drop_last, per_rank, iterations, last, windows,
                                             loader_samples, padded, steps, seen, dropped):
    from torch.utils.data import DataLoader, DistributedSampler

    e = plan_distributed_epoch(m, w, b, k, drop_last)
    dataset = list(range(m))
    yielded = []
    for rank in range(w):  # the run's one drop_last drives the sampler's and the loader's
        sampler = DistributedSampler(dataset, num_replicas=w, rank=rank, shuffle=shuffle, drop_last=drop_last)
        assert len(sampler) == e.samples_per_rank
        batches = [batch.tolist() for batch in DataLoader(dataset, batch_size=b, sampler=sampler,
                                                           drop_last=drop_last)]
        assert len(batches) == e.rank.iterations
        assert (len(batches[-1]) if batches else 0) == e.rank.last_batch_size
        assert sum(map(len, batches)) == e.rank.samples
        yielded += [i for batch in batches for i in batch]
    assert len(set(yielded)) == e.samples_seen  # real samples: each index once
    assert len(yielded) - len(set(yielded)) == e.padded  # the duplicates, counted apart
    assert m - len(set(yielded)) == e.dropped


@pytest.mark.parametrize("m, b, k, drop_last", [(1000, 64, 4, False), (1000, 64, 4, True), (5, 2, 3, False)])
def test_one_rank_is_the_single_process_plan(m, b, k, drop_last):
    distributed = plan_distributed_run(m, 1, b, k, epochs=3, drop_last=drop_last)
    single = plan_run(m, b, k, epochs=3, drop_last=drop_last)
    assert [s.rank for s in distributed.segments] == single.segments
    assert (distributed.padded, distributed.total_samples_seen, distributed.total_optimizer_steps) == (
        0, single.total_samples, single.total_optimizer_steps)


def test_a_schedule_over_ranks_counts_each_batch_size_once():
    plan = plan_distributed_run(100, 3, 8, 2, epochs=10**8, drop_last=True, batch_growth=2, max_batch_size=16)
    assert [(s.epoch, s.last_epoch, s.batch_size) for s in plan.segments] == [(1, 1, 8), (2, 10**8, 16)]
    assert [(s.rank.iterations, s.optimizer_steps, s.samples_seen, s.dropped) for s in plan.segments] == [
        (4, 2, 96, 4), (2, 1, 96, 4)]
    assert plan.total_iterations_per_rank == 4 + 2 * (10**8 - 1)
    assert plan.total_samples_seen == 96 * 10**8 and plan.total_padded == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((100, 0, 8), "world size must be a whole number >= 1, got 0"),
        ((100, -2, 8), "world size must be a whole number >= 1, got -2"),
        ((100, True, 8), "world size must be a whole number >= 1, got True"),
        ((None, 2, 8), "this dataset has no __len__"),
        ((-1, 2, 8), "samples must be >= 0"),
        ((100, 3, 0), "batch size must be a whole number >= 1"),
        ((100, 3, 8, 0), "accumulation steps must be a whole number >= 1"),
        ((100, 3, 64, 1, 1, True), "drop_last leaves each of the 3 ranks 33 of the 100 samples, fewer than the "
                                   "batch size 64: no batches would run"),
        ((2, 3, 1, 1, 1, True), "drop_last leaves each of the 3 ranks 0 of the 2 samples"),
        ((100, 3, 16, 1, 2, True, 4.0), "fewer than the batch size 64: no batches would run (epoch 2)"),
    ],
)
def test_bad_distributed_plans_raise_one_line(args, fragment):
    with pytest.raises(PlanError) as info:
        plan_distributed_run(*args)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_json_of_the_example():
    result = subprocess.run([TRAINMON, "plan", "--samples", "100", "--batch-size", "8", "--accum", "2",
                             "--world-size", "3", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "samples_per_epoch": 100, "drop_last": False, "world_size": 3, "samples_per_rank": 34, "padded": 2,
        "epochs": [{
            "epoch": 1, "last_epoch": 1, "batch_size": 8, "accum": 2,
            "per_rank": {"samples": 34, "iterations": 5, "last_batch_size": 2, "window_sizes": [2, 2, 1],
                         "full_windows": 2, "last_window_size": 1},
            "optimizer_steps": 3, "samples_seen": 100, "padded": 2, "dropped": 0, "effective_batch_size": 48,
        }],
        "total_iterations_per_rank": 5, "total_optimizer_steps": 3, "total_samples_seen": 100, "total_padded": 2,
        "effective_batch_size": 48,
    }


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """`trainmon ARGS` in this process, through the console entry point: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        status = 0
    except SystemExit as exc:
        status = exc.code or 0
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("extra", [(), ("--json",), ("--accum", "3", "--drop-last", "--epochs", "4")])
def test_world_size_1_prints_what_plan_prints_without_it(capsys, extra):
    base = ("plan", "--samples", "1000", "--batch-size", "64", *extra)
    assert run_main(capsys, *base, "--world-size", "1") == run_main(capsys, *base)


@pytest.mark.parametrize("value, fragment", [
    ("0", "world size must be a whole number >= 1, got 0"),
    ("-3", "world size must be a whole number >= 1, got -3"),
    ("two", "'two' is not a valid integer"),
])
def test_bad_world_size_exits_2_with_one_line(capsys, value, fragment):
    status, out, err = run_main(capsys, "plan", "--samples", "100", "--batch-size", "8", "--world-size", value)
    assert (status, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and err.startswith("trainmon: error: ") and fragment in err


def test_text_view_labels_per_rank_and_padded_figures():
    buffer = io.StringIO()
    render_distributed_plan(plan_distributed_run(100, 3, 8, 2), Console(file=buffer, width=200, highlight=False))
    text = buffer.getvalue()
    assert "trainmon plan — 100 samples per epoch over 3 ranks: per rank" in text
    assert "per rank: 34 samples = ceil(100 / 3); padded: 2 in all" in text
    assert "over all 3 ranks" in text
    assert "total iterations per rank 5   total optimizer steps 3   total samples seen 100 (+ 2 padded)" in text
    assert "each rank's loader yields 5 iterations, the last holding 2 samples" in text
    row = next(line for line in text.splitlines() if line.startswith("│     1 │"))
    assert row.replace("│", " ").split() == ["1", "8", "2", "5", "2", "2", "2", "1", "3", "34"]


def test_text_view_with_drop_last_says_what_is_dropped():
    buffer = io.StringIO()
    render_distributed_plan(plan_distributed_run(100, 3, 8, 2, drop_last=True),
                            Console(file=buffer, width=200, highlight=False))
    text = buffer.getvalue()
    assert "per rank: 33 samples = floor(100 / 3); padded: none (drop_last: the sampler drops the last 1 sample" in text
    assert "note: 4 real samples per epoch no rank sees (drop_last): 1 left by the sampler, 1 by each of the 3" in text
