"""An image classifier: scikit-learn's 8×8 digits with a two-layer MLP, Adam, a step LR schedule.

    trainmon run examples/digits_mlp.py            # the monitor
    trainmon run examples/digits_mlp.py --headless # plain lines
"""

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine import Job, accuracy


def job() -> Job:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64), pixels 0..1
    y = torch.tensor(data.target)  # (1797,) class indices
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    train, val = order[:1500], order[1500:]
    return Job(
        name="digits-mlp",
        model=nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10)),
        train_dataset=TensorDataset(x[train], y[train]),
        val_dataset=TensorDataset(x[val], y[val]),
        loss_fn=nn.functional.cross_entropy,
        optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
        metrics={"acc": accuracy},
        epochs=8,
        batch_size=64,
        lr=3e-3,
    )
