"""What watching a framework's training with trainmon costs: each framework section trains the same small job
with and without trainmon's callback and prints times as ratios to the bare run measured in the same run.

Sections (one function each in `SECTIONS`; a new framework adds its own):
  lightning  the digits MLP under Lightning, accumulate_grad_batches=4:
             (a) bare: no progress bar, no trainmon; (b) Lightning's default progress bar;
             (c) TrainmonCallback in place of the bar; (d) both.
Every mode runs `--rounds` times, interleaved (a, b, c, d, a, b, ...), and the median counts. The progress
bar writes to /dev/null here, so its terminal cost is left out; trainmon records a run directory (in a
temporary TRAINMON_HOME) and samples device telemetry, as it does for a user. Under two minutes on 2 cores.

    python benchmarks/frameworks.py [--only lightning] [--epochs 15] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import torch

Mode = tuple[str, Callable[[], int]]  # (label, train once -> iterations)
Row = tuple[str, float, float, int, list[float]]  # label, median wall s, median CPU s, iterations, all wall s


def interleaved(modes: list[Mode], rounds: int) -> list[Row]:
    """Run each mode `rounds` times, interleaved; per mode the median wall seconds and the median CPU
    seconds of this process (all its threads: trainmon's telemetry and socket threads count), which a
    shared box disturbs less than wall time."""
    wall: dict[str, list[float]] = {label: [] for label, _ in modes}
    cpu: dict[str, list[float]] = {label: [] for label, _ in modes}
    iterations: dict[str, int] = {}
    for _ in range(rounds):
        for label, run in modes:
            start, start_cpu = time.perf_counter(), time.process_time()
            iterations[label] = run()
            wall[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    return [(label, statistics.median(wall[label]), statistics.median(cpu[label]), iterations[label], wall[label])
            for label, _ in modes]


def report(title: str, rows: list[Row]) -> None:
    """Print a section: each mode's medians, iterations/s and ratios to the first (bare) mode."""
    print(f"\n{title}")
    bare, bare_cpu = rows[0][1], rows[0][2]
    for label, median, cpu, iterations, seconds in rows:
        spread = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {label:<36} wall {median:6.2f} s x{median / bare:.3f}   CPU {cpu:6.2f} s x{cpu / bare_cpu:.3f}   "
              f"{iterations / median:5.0f} it/s   (wall per round: {spread})")


# ---- Lightning ------------------------------------------------------------------------------------
def lightning_section(epochs: int, rounds: int) -> None:
    try:
        import lightning as L
    except ImportError:
        print('\nlightning: skipped (pip install "trainmon[lightning]")')
        return
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available" lines per run
    warnings.filterwarnings("ignore", module="lightning")
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from trainmon.integrations.lightning import TrainmonCallback

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.tensor(data.target)
    train, val = TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])

    class DigitsMLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

        def train_dataloader(self):
            return DataLoader(train, batch_size=32, shuffle=True)

        def val_dataloader(self):
            return DataLoader(val, batch_size=len(val))

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            loss = nn.functional.cross_entropy(self.model(inputs), targets)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            inputs, targets = batch
            self.log("val_loss", nn.functional.cross_entropy(self.model(inputs), targets), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    def mode(progress_bar: bool, trainmon: bool) -> Callable[[], int]:
        def run() -> int:
            torch.manual_seed(0)  # a run is timed whole: the Trainer, the module and fit()
            trainer = L.Trainer(max_epochs=epochs, accumulate_grad_batches=4, accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_model_summary=False,
                                enable_progress_bar=progress_bar, num_sanity_val_steps=0,
                                callbacks=[TrainmonCallback()] if trainmon else [])
            module = DigitsMLP()
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
                trainer.fit(module)
            return trainer.fit_loop.epoch_loop.batch_progress.total.completed
        return run

    rows = interleaved([("(a) bare (no bar, no trainmon)", mode(False, False)),
                        ("(b) Lightning's progress bar", mode(True, False)),
                        ("(c) TrainmonCallback, no bar", mode(False, True)),
                        ("(d) progress bar + TrainmonCallback", mode(True, True))], rounds)
    report(f"lightning {L.__version__}: digits MLP, batch 32, accumulate_grad_batches=4, {epochs} epochs, "
           f"medians of {rounds} rounds", rows)


SECTIONS: dict[str, Callable[[int, int], None]] = {"lightning": lightning_section}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    unknown = [name for name in args.only.split(",") if name not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # the same CPU share for every mode on a shared box
    with tempfile.TemporaryDirectory(prefix="trainmon-bench-") as home:
        os.environ["TRAINMON_HOME"] = home  # the runs recorded here go away with it
        for name in args.only.split(","):
            SECTIONS[name](args.epochs, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
