"""The loop a user would write by hand, on the digits job (shared by the benchmarks).

    python benchmarks/_bare_loop.py EPOCHS      # prints iterations/s over epochs 2..E
"""

from __future__ import annotations

import sys
import time

import torch

from trainmon.engine.jobs import JobSpec


def bare_loop(epochs: int, skip_first: bool = True) -> float:
    """Iterations per second of a hand-written loop with a validation pass each epoch: over epochs
    2..E with `skip_first` (after imports and warm-up, like the engine's figure), else over all."""
    job = JobSpec("digits").build()
    model, loss_fn = job.model, job.loss_fn
    opt = job.optimizer(model.parameters(), job.lr)
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.DataLoader(job.train_dataset, batch_size=32, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(job.val_dataset, batch_size=256)
    iterations, first, t1 = 0, 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            iterations += 1
        model.eval()
        with torch.no_grad():
            for x, y in val:
                loss_fn(model(x), y)
        if epoch == 0 and skip_first:
            t1, first = time.perf_counter(), iterations
    return (iterations - first) / (time.perf_counter() - t1)


if __name__ == "__main__":
    print(f"{bare_loop(int(sys.argv[1])):.3f}")
