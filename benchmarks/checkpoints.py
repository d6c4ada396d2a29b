"""What checkpoints cost, measured in one run (a script, not a timed test): one save of the digits
job, one save and one load of a ~100M-parameter model, and what end-of-epoch saves slow a digits run.

Every figure comes from the real path: a `Trainer` with a `CheckpointStore` in a temporary folder,
the save's size and seconds read from its `CheckpointSaved` events (`seconds` is the store's own:
`torch.save`, fsyncs, rename, pruning and the index, most of it on the saver's writer thread while
training goes on; `run_state.capture` is timed apart). Training speed is iterations
per second over epochs 2..E from the run's `EpochEnded` events (the first epoch, with its imports
and warm-up, is left out of every mode alike), so a checkpoints-on run pays for E-1 saves in it.

Modes, each run once per round in an order rotated from round to round; a mode's figure is the
median over rounds of its ratio to the bare loop *of the same round* (best-of-N would hide costs on
a noisy shared machine), and the slowdown is the median of per-round (off / on - 1) speed ratios:

  (a) bare       a hand-written PyTorch loop (benchmarks/_bare_loop.py), plain DataLoader
  (s) bare+SDL   the same loop on torchdata's StatefulDataLoader (what the engine trains from)
  (o) off        the engine in this thread, checkpoints off (--no-checkpoints)
  (n) on         the engine in this thread, a save at every epoch end (the default)

Runs use one intra-op thread unless `--threads` says otherwise: on a shared 2-core machine, two
OpenMP threads stall whenever another process takes a core (a bare digits loop went from ~400 it/s
to 6-120 it/s), and the ratios drown in that noise.

Then the big model: `--big-layers` Linear(W, W) layers (6 × 4096² ≈ 100.7M parameters, 403 MB of
float32) trained by SGD with momentum (so the optimizer holds a second copy), two iterations an
epoch on 8 random samples, a save at each of 3 epoch ends, then `CheckpointStore.load_newest`.
Memory peaks near 2 GB (weights, gradients, momentum, one loaded copy).

    python benchmarks/checkpoints.py [--epochs 20] [--rounds 5] [--skip-big] [--dir /somewhere/on/disk]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs import JobSpec
from trainmon.engine.jobs.job import Job, RunConfig
from trainmon.engine.record.checkpoint_files import CheckpointStore
from trainmon.engine.record.rundir import fsync_dir
from trainmon.engine.run import checkpoint_state as run_state
from trainmon.engine.run.trainer import Trainer

MB = 1e6


def epoch_rate(events: list) -> tuple[float, float]:
    """`(iterations per second, seconds per epoch)` over epochs 2..E from `EpochEnded` events."""
    ends = [e for e in events if isinstance(e, msg.EpochEnded)]
    first, last = ends[0], ends[-1]
    seconds = last.elapsed - first.elapsed
    return (last.global_iteration - first.global_iteration) / seconds, seconds / (len(ends) - 1)


def train(job: Job, folder: Optional[Path], **options: Any) -> tuple[Trainer, list]:
    """Run `job` to its end in this thread, headless (a listener-only channel, as `--headless` uses),
    saving into `folder` (`None`: checkpoints off). Returns the trainer and every event it emitted."""
    events: list = []
    channel = Channel.listener_only(lambda item: None if isinstance(item, msg.Snapshot) else events.append(item))
    config = RunConfig.for_job(job, device="cpu", checkpoints=folder is not None, **options)
    store = CheckpointStore(folder, keep=config.keep_checkpoints) if folder is not None else None
    trainer = Trainer(job, config, channel, checkpoints=store)
    result = trainer.run()
    if not isinstance(result, msg.Finished):
        raise RuntimeError(f"the run failed: {getattr(result, 'message', result)}")
    return trainer, events


def saves(events: list) -> list[msg.CheckpointSaved]:
    return [e for e in events if isinstance(e, msg.CheckpointSaved)]


# ---- digits: speed with and without checkpoints ------------------------------------------------
@contextmanager
def stateful_loaders():
    """Make `torch.utils.data.DataLoader` torchdata's StatefulDataLoader for the bare loop, which looks
    it up at call time (its validation loader too: 2 batches an epoch, next to nothing)."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    plain = torch.utils.data.DataLoader
    torch.utils.data.DataLoader = StatefulDataLoader
    try:
        yield
    finally:
        torch.utils.data.DataLoader = plain


@dataclass
class Round:
    """One mode's run: its speed (it/s over epochs 2..E), and for a checkpoints-on run its saves and
    the seconds `run_state.capture` takes at the end."""

    rate: float
    epoch_seconds: Optional[float] = None
    saves: list = field(default_factory=list)
    capture: Optional[float] = None


def bare(epochs: int, stateful: bool = False) -> Round:
    from _bare_loop import bare_loop

    if stateful:
        with stateful_loaders():
            return Round(bare_loop(epochs))
    return Round(bare_loop(epochs))


def engine(epochs: int, root: Path, on: bool) -> Round:
    folder = Path(tempfile.mkdtemp(prefix="ckpt-", dir=root)) / "checkpoints" if on else None
    trainer, events = train(JobSpec("digits").build(), folder, epochs=epochs)
    if not on:
        return Round(*epoch_rate(events))
    found = saves(events)
    if len(found) != epochs:
        raise RuntimeError(f"expected {epochs} epoch-end saves, got {len(found)}")
    # a save's cost besides the store's own seconds: gathering the state (references, no copies at an epoch end)
    t0 = time.perf_counter()
    run_state.capture(trainer, None, "epoch end")
    return Round(*epoch_rate(events), found, time.perf_counter() - t0)


MODES = {
    "a": "bare PyTorch loop, DataLoader",
    "s": "bare loop, StatefulDataLoader",
    "o": "engine, checkpoints off",
    "n": "engine, save at every epoch end",
}


def digits(epochs: int, rounds: int, root: Path) -> dict:
    runs = {
        "a": lambda: bare(epochs),
        "s": lambda: bare(epochs, stateful=True),
        "o": lambda: engine(epochs, root, on=False),
        "n": lambda: engine(epochs, root, on=True),
    }
    names = list(runs)
    rates: dict[str, list[float]] = {m: [] for m in names}
    saved: list[msg.CheckpointSaved] = []
    captures: list[float] = []
    epochs_off: list[float] = []  # seconds an epoch takes in (o)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for m in order:
            run = runs[m]()
            rates[m].append(run.rate)
            saved += [s for s in run.saves if s.epoch > 1]  # the first save pays one-off costs: left out
            captures += [run.capture] if run.capture is not None else []
            epochs_off += [run.epoch_seconds] if m == "o" else []
        print(f"  round {r + 1}: " + "  ".join(f"({m}) {rates[m][-1]:7.1f}" for m in names) + " it/s",
              file=sys.stderr, flush=True)
    return {"rates": rates, "seconds": [s.seconds for s in saved], "sizes": [s.size for s in saved],
            "captures": captures, "epochs_off": epochs_off}


def digits_breakdown(root: Path, repeats: int = 15) -> tuple[list[tuple[str, int]], dict[str, float]]:
    """Where one digits checkpoint's bytes and seconds go, from the state after one epoch.

    Bytes: each part of the state `torch.save`d alone (each file has ~1.3 kB of zip framing, so the
    parts sum to more than the whole). Seconds (medians of `repeats`), the store's steps done apart:
    serialising into memory, writing the bytes, fsyncing the file, renaming and fsyncing the folder."""
    folder = Path(tempfile.mkdtemp(prefix="ckpt-", dir=root)) / "checkpoints"
    trainer, _ = train(JobSpec("digits").build(), folder, epochs=1)
    state, _ = run_state.capture(trainer, None, "epoch end")
    parts = []
    for key, value in state.items():
        buf = io.BytesIO()
        torch.save(value, buf)
        parts.append((key, buf.tell()))
    steps: dict[str, list[float]] = {"serialise": [], "write": [], "fsync file": [], "rename + fsync folder": []}
    for i in range(repeats):
        t0 = time.perf_counter()
        buf = io.BytesIO()
        torch.save(state, buf)
        t1 = time.perf_counter()
        tmp, path = folder / f".part-{i}.tmp", folder / f"part-{i}.pt"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, buf.getbuffer())
            t2 = time.perf_counter()
            os.fsync(fd)
            t3 = time.perf_counter()
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(folder)
        t4 = time.perf_counter()
        for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            steps[name].append(seconds)
    return sorted(parts, key=lambda kv: -kv[1]), {name: statistics.median(v) for name, v in steps.items()}


# ---- a ~100M-parameter model -------------------------------------------------------------------
def big_job(layers: int, width: int) -> Job:
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(width, width) for _ in range(layers)))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, width, generator=g), torch.randn(8, width, generator=g))
    return Job(name="big-linear", model=model, train_dataset=data, loss_fn=nn.functional.mse_loss,
               optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9), batch_size=4, lr=1e-4)


def big(layers: int, width: int, epochs: int, root: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="ckpt-big-", dir=root)) / "checkpoints"
    job = big_job(layers, width)
    params = sum(p.numel() for p in job.model.parameters())
    try:
        t0 = time.perf_counter()
        trainer, events = train(job, folder, epochs=epochs, checkpoint_every=1, keep_checkpoints=1)
        run_seconds = time.perf_counter() - t0
        found = saves(events)
        t0 = time.perf_counter()
        run_state.capture(trainer, None, "epoch end")
        capture = time.perf_counter() - t0
        del trainer
        loads = []
        for _ in range(2):  # the file was just written: the first read may come from the page cache too
            t0 = time.perf_counter()
            state, _, _ = CheckpointStore(folder).load_newest()
            loads.append(time.perf_counter() - t0)
            del state
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return {"params": params, "seconds": [s.seconds for s in found], "size": found[-1].size, "loads": loads,
            "capture": capture, "run_seconds": run_seconds}


# ---- report ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big-layers", type=int, default=6)
    parser.add_argument("--big-width", type=int, default=4096)
    parser.add_argument("--big-epochs", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared 2-core machine two OpenMP threads "
                             "stall whenever another process runs, and a digits run varies 20-fold)")
    parser.add_argument("--dir", help="where the temporary checkpoint folders go (default: the system's temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _bare_loop
    root = Path(tempfile.mkdtemp(prefix="tm-ckpt-bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        d = digits(args.epochs, args.rounds, root)
        parts, steps = digits_breakdown(root)
        b = None if args.skip_big else big(args.big_layers, args.big_width, args.big_epochs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    rates = d["rates"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, checkpoints in {root.parent}")
    print(f"\ndigits job, batch 32, {args.epochs} epochs, {args.rounds} rounds (it/s over epochs 2..E; "
          f"ratios: median over rounds of the same round's ratio)")
    for m, name in MODES.items():
        ratio = med(x / a for x, a in zip(rates[m], rates["a"]))
        print(f"  ({m}) {name:34s} {med(rates[m]):8.1f} it/s   {ratio:5.3f}x (a)")
    slowdown = med(o / n - 1 for o, n in zip(rates["o"], rates["n"]))
    per_round = ", ".join(f"{o / n - 1:+.1%}" for o, n in zip(rates["o"], rates["n"]))
    sdl = med(a / s - 1 for a, s in zip(rates["a"], rates["s"]))
    print(f"  slowdown of (n) against (o): {slowdown:+.2%} (median; rounds {per_round}); target <= 2%")
    print(f"  StatefulDataLoader against DataLoader, bare loop: {sdl:+.2%} (median of (a)/(s) - 1)")
    print(f"\none digits checkpoint (median of {len(d['seconds'])} epoch-end saves, epoch 1's left out)")
    mean = statistics.mean(d["seconds"])
    print(f"  size {med(d['sizes']) / 1e3:8.1f} kB    save {med(d['seconds']) * 1e3:6.2f} ms median, {mean * 1e3:.2f} ms "
          f"mean, {max(d['seconds']) * 1e3:.1f} ms max (torch.save, fsync, rename, prune, index)    "
          f"capture {med(d['captures']) * 1e3:5.2f} ms")
    print("  its steps done apart: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in steps.items()))
    print("  its parts, each torch.save'd alone: " + ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in parts[:5])
          + f"; {len(parts) - 5} more of {max(v for _, v in parts[5:]) / 1e3:.1f} kB or less")
    epoch = med(d["epochs_off"])
    blocked = med(d["captures"]) + steps["serialise"]  # the loop waits for these; a writer thread does the rest
    print(f"  the loop waits for capture + serialise only (the file is written beside training): "
          f"{blocked * 1e3:.2f} ms = {blocked / epoch:+.2%} of an epoch of (o), {epoch * 1e3:.0f} ms; "
          f"the whole save would be {(mean + med(d['captures'])) / epoch:+.2%}")
    if b is not None:
        print(f"\n~100M-parameter model: {args.big_layers} x Linear({args.big_width}, {args.big_width}), "
              f"{b['params'] / 1e6:.1f}M parameters, SGD momentum, {args.big_epochs} epoch-end saves")
        save = med(b["seconds"])
        print(f"  size {b['size'] / MB:8.1f} MB    save {save:6.2f} s ({b['size'] / MB / save:5.0f} MB/s; saves "
              + ", ".join(f"{s:.2f}" for s in b["seconds"]) + f" s)    capture {b['capture'] * 1e3:.2f} ms")
        print("  load_newest " + ", ".join(f"{s:.2f} s" for s in b["loads"])
              + f"    (whole run {b['run_seconds']:.1f} s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s, peak memory {peak:.1f} GB")


if __name__ == "__main__":
    main()
