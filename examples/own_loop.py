"""A hand-written PyTorch loop (digits, an MLP, accumulation 4) watched by trainmon: the lines marked
`# trainmon` are all it takes.

    python examples/own_loop.py                      # records a run: `trainmon attach` in another terminal
    nohup python examples/own_loop.py &              # survives the terminal; attach, pause, stop from anywhere
    trainmon exec -- python examples/own_loop.py     # runs it detached and opens the monitor on it

Options: --epochs N, --batch-size B, --accum K, --lr LR.
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmon  # trainmon

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--accum", type=int, default=4)
parser.add_argument("--lr", type=float, default=3e-3)
args = parser.parse_args()

torch.manual_seed(0)
data = load_digits()
x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64), pixels 0..1
y = torch.tensor(data.target)  # (1797,) class indices
train, val = TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])
loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

run = trainmon.track(optimizer, accum=args.accum)  # trainmon
for epoch in run.epochs(args.epochs):  # trainmon (was: range(args.epochs))
    model.train()
    for i, (inputs, targets) in enumerate(run.batches(loader)):  # trainmon (was: loader)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        (loss / args.accum).backward()
        if (i + 1) % args.accum == 0 or i + 1 == len(loader):
            optimizer.step()
            optimizer.zero_grad()
        run.log(loss)  # trainmon
    model.eval()
    with torch.no_grad():
        inputs, targets = val.tensors
        outputs = model(inputs)
        val_loss = nn.functional.cross_entropy(outputs, targets).item()
        acc = (outputs.argmax(1) == targets).float().mean().item()
    run.validation(val_loss, acc=acc)  # trainmon
    print(f"epoch {epoch + 1}: val loss {val_loss:.4f}, acc {acc:.3f}")
