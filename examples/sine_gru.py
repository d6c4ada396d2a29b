"""A small sequence model on a stream: a GRU predicts the next value of noisy sine waves.

The training data is an `IterableDataset` without a length, so trainmon shows indeterminate bars
and no ETA; each epoch ends when the stream does (200 sequences here).

    trainmon run examples/sine_gru.py
"""

import math

import torch
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from trainmon.engine import Job

STEPS = 24


def waves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` sequences `(n, STEPS, 1)` and their next values `(n, 1)`."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    freq = 0.2 + 0.3 * torch.rand(n, 1, generator=g)
    t = torch.arange(STEPS + 1, dtype=torch.float32)
    series = torch.sin(phase + freq * t) + 0.05 * torch.randn(n, STEPS + 1, generator=g)
    return series[:, :STEPS].unsqueeze(-1), series[:, STEPS:]


class WaveStream(IterableDataset):
    """Yields `(sequence (STEPS, 1), next value (1,))` pairs; a new draw every epoch, no `__len__`."""

    def __init__(self, count: int) -> None:
        self.count, self.epoch = count, 0

    def __iter__(self):
        self.epoch += 1
        x, y = waves(self.count, seed=self.epoch)
        return iter(zip(x, y))


class NextValue(nn.Module):
    """GRU over `(B, STEPS, 1)` → the next value `(B, 1)`."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def job() -> Job:
    val_x, val_y = waves(200, seed=10_000)
    return Job(
        name="sine-gru",
        model=NextValue(),
        train_dataset=WaveStream(200),
        val_dataset=TensorDataset(val_x, val_y),
        loss_fn=nn.functional.mse_loss,
        optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        epochs=12,
        batch_size=16,
        lr=1e-2,
    )
