"""Engine overhead against a bare PyTorch loop, measured in one run (a script, not a timed test).

Trains the digits job the same number of epochs (with a validation pass each epoch) as:
  (a) a bare hand-written PyTorch loop in the main thread;
  (b) the engine in the main thread, a consumer thread polling snapshots at 10 Hz;
  (c) the engine in a worker thread, the main thread polling at 10 Hz;
The detached engine with viewers and the whole TUI are measured by benchmarks/viewers.py.
Prints iterations/s for each and the ratio to (a). Each mode runs `--repeats` times, interleaved,
and the best run counts (the least disturbed by other load).

    python benchmarks/overhead.py [--epochs 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import torch

from trainmon.engine.control.channel import Channel
from trainmon.engine.jobs import JobSpec
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.trainer import Trainer


def bare(epochs: int) -> float:
    """(a) The loop a user would write by hand. Returns iterations per second."""
    from _bare_loop import bare_loop

    return bare_loop(epochs, skip_first=False)


def poll_until(channel_poll, done: threading.Event, hz: float = 10.0) -> int:
    polls = 0
    while not done.is_set():
        channel_poll()
        polls += 1
        time.sleep(1.0 / hz)
    channel_poll()
    return polls


def engine_main_thread(epochs: int) -> float:
    """(b) Engine in the main thread; a consumer thread polls at 10 Hz."""
    job = JobSpec("digits").build()
    channel = Channel()
    done = threading.Event()
    consumer = threading.Thread(target=poll_until, args=(channel.poll, done))
    consumer.start()
    t0 = time.perf_counter()
    result = Trainer(job, RunConfig.for_job(job, epochs=epochs, device="cpu"), channel).run()
    elapsed = time.perf_counter() - t0
    done.set()
    consumer.join()
    return result.global_iteration / elapsed


def engine_worker_thread(epochs: int) -> float:
    """(c) Engine in a worker thread; the main thread polls at 10 Hz."""
    job = JobSpec("digits").build()
    channel = Channel()
    done = threading.Event()
    box = {}

    def work():
        box["result"] = Trainer(job, RunConfig.for_job(job, epochs=epochs, device="cpu"), channel).run()
        done.set()

    t0 = time.perf_counter()
    worker = threading.Thread(target=work)
    worker.start()
    poll_until(channel.poll, done)
    worker.join()
    return box["result"].global_iteration / (time.perf_counter() - t0)


MODES = {
    "a": ("bare PyTorch loop, main thread", bare),
    "b": ("engine, main thread, 10 Hz poller", engine_main_thread),
    "c": ("engine, worker thread, 10 Hz poller", engine_worker_thread),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="abc")
    args = parser.parse_args()
    modes = args.modes
    best = {m: 0.0 for m in modes}
    for r in range(args.repeats):
        for m in modes:
            rate = MODES[m][1](args.epochs)
            best[m] = max(best[m], rate)
            print(f"  run {r + 1} ({m}) {rate:8.1f} it/s", file=sys.stderr, flush=True)
    print(f"digits job, batch 32, {args.epochs} epochs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads, best of {args.repeats}")
    for m in modes:
        ratio = best[m] / best["a"] if "a" in best else float("nan")
        print(f"({m}) {MODES[m][0]:42s} {best[m]:8.1f} it/s   {ratio:5.2f}x (a)")


if __name__ == "__main__":
    main()
