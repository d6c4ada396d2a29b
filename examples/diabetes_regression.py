"""A regression: scikit-learn's bundled diabetes data (442 patients, 10 features), an MLP, MSE loss.

    trainmon run examples/diabetes_regression.py --accum 2
"""

import torch
from sklearn.datasets import load_diabetes
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine import Job


def mean_absolute_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean |prediction − target| over the batch, in the standardised target's units."""
    return (outputs - targets).abs().mean()


def job() -> Job:
    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)  # (442, 10), already centred and scaled
    y = torch.tensor(data.target, dtype=torch.float32).unsqueeze(1)  # (442, 1)
    y = (y - y.mean()) / y.std()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:352], order[352:]
    return Job(
        name="diabetes",
        model=nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1)),
        train_dataset=TensorDataset(x[train], y[train]),
        val_dataset=TensorDataset(x[val], y[val]),
        loss_fn=nn.functional.mse_loss,
        optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        metrics={"mae": mean_absolute_error},
        epochs=30,
        batch_size=32,
        lr=1e-2,
    )
