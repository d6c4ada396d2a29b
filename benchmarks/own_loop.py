"""`trainmon.track()` overhead on a hand-written loop, against the same loop bare and with tqdm, in one run.

The loop: the digits job's CNN at batch 32, accumulation 4, a validation pass each epoch — written the
way most loops are. Three variants, interleaved round by round so load on the box hits them alike:
  bare   the loop as written, no progress display;
  tqdm   the loop with a tqdm bar showing the loss (`loss.item()` every iteration: a sync point, as most
         loops with a bar do), bar output to /dev/null;
  track  the loop with `trainmon.track()` (recording a run directory and serving its socket; no viewer).
Prints iterations per second (over epochs 2..E) and each variant's ratio to bare: the median of the
rounds' ratios (each round measures all three back to back).

    python benchmarks/own_loop.py [--epochs 6] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from trainmon.engine.jobs import JobSpec


def loop(epochs: int, variant: str) -> float:
    """Iterations per second of the hand-written loop over epochs 2..`epochs`, as `variant`."""
    torch.manual_seed(0)
    job = JobSpec("digits").build()
    model, loss_fn, accum = job.model, job.loss_fn, 4
    opt = job.optimizer(model.parameters(), job.lr)
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.DataLoader(job.train_dataset, batch_size=32, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(job.val_dataset, batch_size=256)
    run = bar = None
    epoch_range: object = range(epochs)
    if variant == "track":
        import trainmon

        run = trainmon.track(opt, accum=accum, name="bench-own-loop")
        epoch_range = run.epochs(epochs)
    iterations, first, t1 = 0, 0, time.perf_counter()
    for epoch in epoch_range:
        model.train()
        batches = run.batches(train) if run is not None else train
        if variant == "tqdm":
            from tqdm import tqdm

            bar = tqdm(batches, total=len(train), file=open(os.devnull, "w"), mininterval=0.1)
            batches = bar
        for i, (x, y) in enumerate(batches):
            loss = loss_fn(model(x), y)
            (loss / accum).backward()
            if (i + 1) % accum == 0 or i + 1 == len(train):
                opt.step()
                opt.zero_grad(set_to_none=True)
            if bar is not None:
                bar.set_postfix(loss=loss.item(), refresh=False)
            if run is not None:
                run.log(loss)
            iterations += 1
        model.eval()
        with torch.no_grad():
            for x, y in val:
                loss_fn(model(x), y)
        if epoch == 0:
            t1, first = time.perf_counter(), iterations
    rate = (iterations - first) / (time.perf_counter() - t1)
    if bar is not None:
        bar.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TRAINMON_HOME", tempfile.mkdtemp(prefix="trainmon-bench-"))  # runs land in a scratch home
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rates: dict[str, list[float]] = {"bare": [], "tqdm": [], "track": []}
    for _ in range(args.rounds):
        for variant in rates:
            rates[variant].append(loop(args.epochs, variant))
    print(f"own loop, digits CNN, batch 32, accum 4, {args.epochs} epochs (2..{args.epochs} timed), "
          f"{args.rounds} rounds, {torch.get_num_threads()} torch threads")
    for variant, values in rates.items():
        ratios = [v / b for v, b in zip(values, rates["bare"])]
        print(f"  {variant:6s} {statistics.median(values):8.1f} it/s   ×{statistics.median(ratios):.3f} of bare "
              f"(rounds {min(ratios):.3f}–{max(ratios):.3f})")


if __name__ == "__main__":
    main()
