"""What trainmon adds to each iteration of a loop, against a bare loop and tqdm measured in the same run.

Part 1, a near-empty loop (what the monitor itself costs, µs per iteration): pre-built batches of 32
from a loader-like object (its length, batch size and dataset known, as a DataLoader's are), a
pre-made 0-d loss tensor, and an optimizer step every 4 iterations on a one-number parameter.
Variants, interleaved round by round so load on the box hits them alike:
  bare       the loop as written;
  tqdm       the loop wrapped in a tqdm bar (output to /dev/null);
  tqdm+item  tqdm and `loss.item()` each iteration (what a loop that prints its loss pays);
  track      `trainmon.track()`: run.epochs, run.batches, run.log (recording a run directory, no viewer).
Prints µs per iteration (median of rounds), the µs each adds over bare, and that as a multiple of
what tqdm adds. A tracked run is timed to the end of its last iteration (its losses read and folded);
the run's end, once a run (its files written durably), is printed apart, like the start-up in part 2.

Part 1b, the built-in engine's bookkeeping: the engine's Trainer on a job of a one-layer model (8 → 2) over
a DataLoader of 32-sample batches, accum 4, no viewer and no run directory, against the same loader,
forward, backward and optimizer steps written as a bare loop: the µs per iteration the engine adds
(its safe point, windows, loss buffer, counters and publication), in rounds interleaved likewise.

Part 2, a small real loop: an MLP 64-128-10 on the digits set, batch 32, one torch thread (about half
a millisecond an iteration, 57 iterations an epoch), a bare, a floor and a tracked loop advanced epoch by
epoch in turn in one process (epoch-paired: all see the same load on the box; the order rotates): the
steady-state ratios (epochs 2..E, each from asking for the epoch to the end of its batches) floor / bare,
tracked / bare and tracked / floor, where the floor is the least any monitor that shows every loss without a
device sync per iteration does (it keeps each loss tensor and reads them all at the epoch's end); the CPU
share of trainmon's threads (named `trainmon-*`, from /proc) over the tracked epochs' time;
and the time `import trainmon; trainmon.track()` takes in a fresh process that has torch imported already
(seconds). Whole-run rounds (bare, then tracked) spread ±10 % on this VM; epoch pairs spread ±1 %.

    python benchmarks/per_iteration.py [--iterations 100000] [--rounds 7] [--epochs 100] [--cpu] [--skip-engine]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Iterator

import torch

ACCUM = 4
CLOCK = time.perf_counter  # --cpu: this process's CPU time instead (steadier on a box others load)
RUN_ENDS: list[float] = []  # seconds each tracked near-empty run took to end (after its last iteration)


class PrebuiltLoader:
    """A loader-like iterable over pre-built `(x, y)` batches, with a DataLoader's `batch_size`, `dataset`
    and `drop_last`, so the monitor knows the epoch's totals without counting each batch."""

    def __init__(self, batches: list, batch_size: int, samples: int) -> None:
        self.batches, self.batch_size, self.dataset, self.drop_last = batches, batch_size, range(samples), False

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def near_empty_setup(iterations: int) -> tuple[PrebuiltLoader, torch.Tensor, torch.optim.Optimizer]:
    x, y = torch.zeros(32, 8), torch.zeros(32, dtype=torch.long)
    loader = PrebuiltLoader([(x, y)] * iterations, 32, 32 * iterations)
    loss = torch.tensor(0.5)
    parameter = torch.nn.Parameter(torch.zeros(1))
    parameter.grad = torch.zeros(1)
    return loader, loss, torch.optim.SGD([parameter], lr=0.0)


def near_empty(variant: str, iterations: int) -> float:
    """Seconds per iteration of the near-empty loop as `variant` (one epoch of `iterations`)."""
    loader, loss, opt = near_empty_setup(iterations)
    if variant == "track":
        import trainmon

        run = trainmon.track(opt, accum=ACCUM, name="bench-per-iteration", quiet=True)
        start = CLOCK()
        for _ in run.epochs(1):
            for i, _batch in enumerate(run.batches(loader)):
                if (i + 1) % ACCUM == 0:
                    opt.step()
                run.log(loss)
            looped = CLOCK()  # every iteration done and folded (the loader's end folds the last span)
        RUN_ENDS.append(CLOCK() - looped)  # the run's end, once a run (its files written whole): not per iteration
        return (looped - start) / iterations
    batches: Any = loader
    if variant.startswith("tqdm"):
        from tqdm import tqdm

        batches = tqdm(loader, file=open(os.devnull, "w"), mininterval=0.1)
    item = variant == "tqdm+item"
    start = CLOCK()
    for i, _batch in enumerate(batches):
        if (i + 1) % ACCUM == 0:
            opt.step()
        if item:
            loss.item()
    elapsed = CLOCK() - start
    if variant.startswith("tqdm"):
        batches.close()
    return elapsed / iterations


def engine_job(iterations: int) -> Any:
    from trainmon.engine import Job

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32 * iterations, 8), torch.randint(0, 2, (32 * iterations,)))
    return Job(name="bench-engine", model=torch.nn.Linear(8, 2), train_dataset=data,
               loss_fn=torch.nn.functional.cross_entropy, epochs=1, batch_size=32, accum=ACCUM)


def engine_loop(variant: str, iterations: int) -> float:
    """Seconds per iteration of one epoch of `engine_job`: the engine's Trainer (`engine`), or the same
    work by hand (`engine-bare`: the loader, forward, loss scaled by 1/accum, backward, a step per window)."""
    job = engine_job(iterations)
    if variant == "engine":
        from trainmon.engine.control.channel import Channel
        from trainmon.engine.jobs.job import RunConfig
        from trainmon.engine.run.trainer import Trainer

        trainer = Trainer(job, RunConfig.for_job(job, seed=0), Channel(up=False))
        start = CLOCK()
        trainer.run()
        return (CLOCK() - start) / iterations
    loader = torch.utils.data.DataLoader(job.train_dataset, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    opt = job.optimizer(job.model.parameters(), 0.01)
    start = CLOCK()
    for i, (x, y) in enumerate(loader):
        (job.loss_fn(job.model(x), y) / ACCUM).backward()
        if (i + 1) % ACCUM == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return (CLOCK() - start) / iterations


def digits_mlp_epochs(kind: str, epochs: int) -> Iterator[float]:
    """The small real loop, one epoch per `next()`: yields each epoch's seconds, from asking the epoch loop
    for the epoch (a tracked run's epoch boundary: the last epoch's end, this one's start) to the end of its
    batches. `kind`: `bare`; `floor`, the least a monitor that shows every loss without a sync per iteration
    can do (the loop keeps each loss tensor and reads them all at the epoch's end, `Tensor.item` each, and
    averages them); `tracked`, `trainmon.track()`. Loops advanced in turn (epoch-paired) see the same load."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    data = torch.utils.data.TensorDataset(torch.tensor(digits.data, dtype=torch.float32) / 16.0,
                                          torch.tensor(digits.target))
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    loss_fn = torch.nn.CrossEntropyLoss()
    run = None
    epoch_loop: Iterator[Any] = iter(range(epochs))
    if kind == "tracked":
        import trainmon

        run = trainmon.track(opt, name="bench-digits-mlp", quiet=True)
        epoch_loop = iter(run.epochs(epochs))
    keep = kind == "floor"
    means = []
    for _ in range(epochs):
        start = CLOCK()
        next(epoch_loop)
        kept = []
        for x, y in (run.batches(loader) if run is not None else loader):
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if run is not None:
                run.log(loss)
            elif keep:
                kept.append(loss)
        if keep:
            values = list(map(torch.Tensor.item, kept))
            means.append(sum(values) / len(values))
            del kept
        yield CLOCK() - start
    next(epoch_loop, None)  # the tracked run ends


KINDS = ("bare", "floor", "tracked")


def paired_epochs(epochs: int, round_: int) -> tuple[dict[str, float], float, float]:
    """One round: a bare, a floor and a tracked loop advanced epoch by epoch in turn (the order rotating each
    epoch and each round). Returns ({kind: its time over epochs 2..`epochs` / bare's}, bare seconds an
    iteration, trainmon's threads' CPU seconds over the tracked epochs' wall seconds)."""
    loops = {kind: digits_mlp_epochs(kind, epochs) for kind in KINDS}
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    threads_before = 0.0
    for epoch in range(epochs):
        shift = (epoch + round_) % len(KINDS)
        for kind in KINDS[shift:] + KINDS[:shift]:
            seconds[kind].append(next(loops[kind]))
        if epoch == 0:
            threads_before = trainmon_thread_seconds()
    threads = trainmon_thread_seconds() - threads_before
    for rest in loops.values():
        next(rest, None)
    steady = {kind: sum(values[1:]) for kind, values in seconds.items()}
    return ({kind: steady[kind] / steady["bare"] for kind in KINDS}, steady["bare"],
            threads / steady["tracked"])


def trainmon_thread_seconds() -> float:
    """CPU seconds (user + system) of this process's threads that trainmon started (named `trainmon-*`),
    from /proc (0 where there is none)."""
    import threading

    ours = {t.native_id for t in threading.enumerate() if t.name.startswith("trainmon")}
    total = 0
    for tid in ours:
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


STARTUP = """
import sys, time, torch
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
t0 = time.perf_counter()
import trainmon
run = trainmon.track(opt, name="bench-startup", quiet=True)
print(time.perf_counter() - t0)
run.close()
"""


def startup_seconds() -> float:
    """Seconds from `import trainmon` to `trainmon.track()` returning, in a fresh process where the script
    has imported torch already (what a user's script pays once). Python's bytecode cache is on, as for an
    installed package: with PYTHONDONTWRITEBYTECODE=1 (this box's default) every module would be compiled
    again each time, some 0.1 s more; the first call writes the cache, so one call, untimed,
    goes before the rounds."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, timeout=120, check=True,
                         env=env)
    return float(out.stdout.strip().splitlines()[-1])


def engine_part(args: Any) -> None:
    iterations = max(1000, args.iterations // 10)  # the loader's collate makes these ~20× slower than part 1
    cost: dict[str, list[float]] = {"engine-bare": [], "engine": []}
    for round_ in range(args.rounds):
        for variant in (("engine-bare", "engine") if round_ % 2 == 0 else ("engine", "engine-bare")):
            cost[variant].append(engine_loop(variant, iterations) * 1e6)
    bare, engine = statistics.median(cost["engine-bare"]), statistics.median(cost["engine"])
    added = [e - b for e, b in zip(cost["engine"], cost["engine-bare"])]
    print(f"built-in engine: {iterations} iterations, DataLoader of 32, Linear 8→2, accum {ACCUM}, {args.rounds} rounds")
    print(f"  bare loop    {bare:7.2f} µs/iteration")
    print(f"  engine       {engine:7.2f} µs/iteration   +{engine - bare:5.2f} µs over bare "
          f"(paired rounds {min(added):+.2f}…{max(added):+.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--variants", default="bare,tqdm,tqdm+item,track")
    parser.add_argument("--skip-real", action="store_true", help="only the near-empty loop")
    parser.add_argument("--skip-engine", action="store_true", help="leave out the built-in engine's bookkeeping")
    parser.add_argument("--cpu", action="store_true", help="time with this process's CPU time (a busy box)")
    args = parser.parse_args()
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    os.environ.setdefault("TRAINMON_HOME", tempfile.mkdtemp(prefix="trainmon-bench-"))  # runs land in a scratch home
    torch.set_num_threads(1)
    variants = args.variants.split(",")
    cost: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants[round_ % len(variants):] + variants[:round_ % len(variants)]:  # order rotates
            cost[variant].append(near_empty(variant, args.iterations) * 1e6)
    bare = statistics.median(cost["bare"])
    added_tqdm = statistics.median(cost["tqdm"]) - bare if "tqdm" in cost else None
    print(f"near-empty loop: {args.iterations} iterations, batch 32, accum {ACCUM}, {args.rounds} rounds "
          f"(median), 1 torch thread")
    for variant, values in cost.items():
        median = statistics.median(values)
        added = median - bare
        versus = ""
        if variant not in ("bare", "tqdm") and added_tqdm is not None:  # a ratio to a cost within noise says nothing
            versus = f"   ×{added / added_tqdm:.1f} tqdm's cost" if added_tqdm >= 0.05 else "   (tqdm's cost: within noise)"
        print(f"  {variant:10s} {median:7.2f} µs/iteration   +{added:5.2f} µs over bare{versus}")
    if RUN_ENDS:
        print(f"  track's run end  {statistics.median(RUN_ENDS) * 1e3:.1f} ms once a run (files written whole; "
              f"not in the figure above)")
    if not args.skip_engine:
        engine_part(args)
    if args.skip_real:
        return
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS}
    threads, startups = [], []
    startup_seconds()  # untimed: writes the bytecode cache
    for round_ in range(args.rounds):
        ratio, bare_s, thread_share = paired_epochs(args.epochs, round_)
        for kind in KINDS:
            ratios[kind].append(ratio[kind])
        threads.append(thread_share)
        startups.append(startup_seconds())
    per_epoch = 57  # ceil(1797 / 32)
    per_iteration = bare_s / ((args.epochs - 1) * per_epoch) * 1e3
    print(f"small real loop: MLP 64-128-10 on digits, batch 32, {args.epochs} epochs (2..{args.epochs} timed), "
          f"~{per_iteration:.2f} ms/iteration bare, {args.rounds} rounds of bare, floor and tracked epoch-paired")
    over_floor = [t / f for t, f in zip(ratios["tracked"], ratios["floor"])]
    for label, values in (("floor / bare (every loss kept, read at the epoch's end)", ratios["floor"]),
                          ("tracked / bare, steady state", ratios["tracked"]),
                          ("tracked / floor", over_floor)):
        print(f"  {label:55s} ×{statistics.median(values):.3f}  (rounds {min(values):.3f}–{max(values):.3f})")
    threads_label = "trainmon's threads"
    print(f"  {threads_label:55s} {statistics.median(threads) * 100:.2f} % of a core  "
          f"(rounds {min(threads) * 100:.2f}–{max(threads) * 100:.2f})")
    print(f"  {'trainmon.track() start-up':55s} {statistics.median(startups):.3f} s  "
          f"(rounds {min(startups):.3f}–{max(startups):.3f})")

if __name__ == "__main__":
    main()
