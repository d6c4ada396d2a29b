"""A PyTorch Lightning script (digits, an MLP, accumulate_grad_batches=4) watched by trainmon: the lines
marked `# trainmon` are all it takes. Needs `pip install "trainmon[lightning]"`.

    python examples/lightning_digits.py              # records a run: `trainmon attach` in another terminal
    nohup python examples/lightning_digits.py &      # survives the terminal; attach, pause, stop from anywhere
    trainmon exec -- python examples/lightning_digits.py

Options: --epochs N, --batch-size B (a viewer may change it: the loaders are rebuilt each epoch from
self.batch_size), --accum K, --lr LR, --max-steps S, --no-progress-bar (trainmon in place of Lightning's bar).
"""

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainmon.integrations.lightning import TrainmonCallback  # trainmon

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--accum", type=int, default=4)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--max-steps", type=int, default=-1)
parser.add_argument("--no-progress-bar", action="store_true")
args = parser.parse_args()


class DigitsMLP(L.LightningModule):
    def __init__(self, batch_size: int, lr: float) -> None:
        super().__init__()
        self.batch_size, self.lr = batch_size, lr
        self.model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        data = load_digits()
        x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64), pixels 0..1
        y = torch.tensor(data.target)  # (1797,) class indices
        self.train_set, self.val_set = TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=len(self.val_set))

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        loss = nn.functional.cross_entropy(self.model(inputs), targets)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        inputs, targets = batch
        outputs = self.model(inputs)
        self.log("val_loss", nn.functional.cross_entropy(outputs, targets), prog_bar=True)
        self.log("val_acc", (outputs.argmax(1) == targets).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


if __name__ == "__main__":
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=args.epochs, max_steps=args.max_steps, accumulate_grad_batches=args.accum, accelerator="cpu",
        reload_dataloaders_every_n_epochs=1,  # so a new batch size from a viewer takes effect at the next epoch
        enable_progress_bar=not args.no_progress_bar, logger=False, enable_checkpointing=False,
        callbacks=[TrainmonCallback()],  # trainmon
    )
    trainer.fit(DigitsMLP(args.batch_size, args.lr))
    print(f"epochs {trainer.current_epoch}, global_step {trainer.global_step}")
