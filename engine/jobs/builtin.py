"""Built-in jobs: `digits` (real data, bundled with scikit-learn) and `seed-example` (the textbook case)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine.core.arithmetic import PlanError, is_whole
from trainmon.engine.jobs.job import Job, accuracy


class SmallCNN(nn.Module):
    """Two 3×3 conv layers, a 2×2 max-pool and two linear layers.

    Input `(B, C, H, W)` float; output `(B, classes)` logits. Adaptive pooling to 4×4 lets any
    image size ≥ 1 through.
    """

    def __init__(self, in_channels: int = 1, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_job(val_fraction: float = 0.2) -> Job:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes, no download), a small CNN.

    A fixed split (seed 0, independent of the run's seed): 1437 training and 360 validation images,
    pixels scaled from 0..16 to 0..1, tensors `(N, 1, 8, 8)` float32 and labels `(N,)` int64.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_val = math.ceil(len(labels) * val_fraction)  # 360 of 1797, leaving 1437 to train
    val_idx, train_idx = order[:n_val], order[n_val:]
    return Job(
        name="digits",
        model=SmallCNN(in_channels=1, classes=10),
        train_dataset=TensorDataset(images[train_idx], labels[train_idx]),
        val_dataset=TensorDataset(images[val_idx], labels[val_idx]),
        loss_fn=nn.functional.cross_entropy,
        metrics={"acc": accuracy},
        epochs=5,
        batch_size=32,
        lr=0.05,
        description="8×8 handwritten digits from scikit-learn, small CNN",
    )


MAX_IMAGE_SIZE = 512  # pixels per side for seed-example (1000 images of 3×512×512 float32 are 3 GiB)


def seed_example_job(image_size: int = 16, samples: int = 1000) -> Job:
    """The textbook set-up: 1000 random images `(3, S, S)` with 10 random labels, batch size 64, 10 epochs.

    Its plan shows 16 iterations per epoch with a last batch of 40 samples, not `1000 // 64 = 15`.
    Data is random (seed 0), so the loss stays near ln 10 ≈ 2.30: the job is about the counting.
    `image_size` is the side S in pixels, 1 to `MAX_IMAGE_SIZE` (512); else `PlanError`.
    """
    if not (is_whole(image_size, 1) and image_size <= MAX_IMAGE_SIZE):
        raise PlanError(f"image size must be a whole number from 1 to {MAX_IMAGE_SIZE}, got {image_size!r}")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(samples, 3, image_size, image_size, generator=g)
    labels = torch.randint(0, 10, (samples,), generator=g)
    return Job(
        name="seed-example",
        model=SmallCNN(in_channels=3, classes=10, width=8),
        train_dataset=TensorDataset(images, labels),
        loss_fn=nn.functional.cross_entropy,
        metrics={"acc": accuracy},
        epochs=10,
        batch_size=64,
        lr=0.01,
        description=f"{samples} random {image_size}×{image_size} RGB images, 10 labels",
    )


BUILTIN_JOBS: dict[str, Callable[..., Job]] = {"digits": digits_job, "seed-example": seed_example_job}


def make_builtin(name: str, image_size: int | None = None) -> Job:
    """Build a built-in job by name. Raises `PlanError` for an unknown name."""
    if name not in BUILTIN_JOBS:
        raise PlanError(f"unknown job {name!r}; built-in jobs: {', '.join(BUILTIN_JOBS)}")
    if name == "seed-example" and image_size is not None:
        return seed_example_job(image_size=image_size)
    return BUILTIN_JOBS[name]()
