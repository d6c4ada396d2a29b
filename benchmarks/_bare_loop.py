"""The loop a user would write by hand, on the digits job: prints iterations/s over epochs 2..E.

    python benchmarks/_bare_loop.py EPOCHS
"""

from __future__ import annotations

import sys
import time

import torch

from trainmon.engine.jobs import JobSpec


def main(epochs: int) -> None:
    job = JobSpec("digits").build()
    model, loss_fn = job.model, job.loss_fn
    opt = job.optimizer(model.parameters(), job.lr)
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.DataLoader(job.train_dataset, batch_size=32, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(job.val_dataset, batch_size=256)
    iterations, t1 = 0, None
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
        if epoch == 0:  # like the engine's figure: epochs 2..E, after imports and warm-up
            t1, first = time.perf_counter(), iterations
    print(f"{(iterations - first) / (time.perf_counter() - t1):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
