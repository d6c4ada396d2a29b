"""What watching a Hugging Face Trainer with trainmon costs: the same tiny GPT-2 job (2 layers, built from a
config, nothing downloaded; CPU) trained with and without `TrainmonCallback`, times as ratios to the bare run
measured in the same run. The Hugging Face section of `frameworks.py`, kept in a file of its own.

Modes: (a) bare: no progress bar, no trainmon; (b) HF's tqdm progress bar; (c) TrainmonCallback, no bar;
(d) both. Every mode logs the loss at each optimizer step (`logging_steps=1`, what the callback's loss
needs), so the difference is the callback's own cost. Every mode runs `--rounds` times, interleaved, and the
median counts; only `trainer.train()` is timed: wall seconds, and CPU seconds of this process (trainmon's
socket and telemetry threads included), which others' load on a shared box disturbs less. The bar writes to
/dev/null here, so its terminal cost is
left out; trainmon records a run directory (in a temporary TRAINMON_HOME) and samples device telemetry, as
it does for a user. Under two minutes on 2 cores.

    python benchmarks/frameworks_hf.py [--epochs 6] [--rounds 5]
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
from frameworks import report  # the same print-out as the Lightning section's

Mode = tuple[str, Callable[[], tuple[float, float, int]]]  # label, train once -> (wall s, CPU s, iterations)


def interleaved(modes: list[Mode], rounds: int) -> list[tuple[str, float, float, int, list[float]]]:
    """Run each mode `rounds` times, interleaved; per mode `(label, median wall s, median CPU s, iterations,
    wall s of each round)`."""
    wall: dict[str, list[float]] = {label: [] for label, _ in modes}
    cpu: dict[str, list[float]] = {label: [] for label, _ in modes}
    iterations: dict[str, int] = {}
    for _ in range(rounds):
        for label, run in modes:
            seconds, cpu_seconds, iterations[label] = run()
            wall[label].append(seconds)
            cpu[label].append(cpu_seconds)
    return [(label, statistics.median(wall[label]), statistics.median(cpu[label]), iterations[label], wall[label])
            for label, _ in modes]


def transformers_section(epochs: int, rounds: int) -> None:
    try:
        import transformers
        from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback
    except ImportError:
        print('\ntransformers: skipped (pip install "trainmon[transformers]")')
        return
    from trainmon.integrations.transformers import TrainmonCallback

    seq, vocab, m = 16, 64, 203  # 203 samples at batch size 8: 26 micro-batches an epoch, the last holding 3
    ids = torch.randint(0, vocab, (m, seq), generator=torch.Generator().manual_seed(0))

    class Tokens(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return m

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": ids[i], "labels": ids[i]}

    out = tempfile.mkdtemp(prefix="trainmon-bench-hf-")

    def mode(progress_bar: bool, trainmon: bool) -> Callable[[], tuple[float, float, int]]:
        def run() -> tuple[float, float, int]:
            torch.manual_seed(0)
            model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=32, n_layer=2, n_head=2,
                                               bos_token_id=0, eos_token_id=0))
            args = TrainingArguments(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=8,
                                     gradient_accumulation_steps=4, logging_steps=1, save_strategy="no",
                                     report_to="none", use_cpu=True, disable_tqdm=not progress_bar)
            trainer = Trainer(model=model, args=args, train_dataset=Tokens(),
                              callbacks=[TrainmonCallback()] if trainmon else [])
            trainer.remove_callback(PrinterCallback)  # no-op with the bar; without it, no dict per step
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
                start, start_cpu = time.perf_counter(), time.process_time()
                trainer.train()
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            return seconds, cpu_seconds, epochs * len(trainer.get_train_dataloader())
        return run

    rows = interleaved([("(a) bare (no bar, no trainmon)", mode(False, False)),
                        ("(b) HF's progress bar", mode(True, False)),
                        ("(c) TrainmonCallback, no bar", mode(False, True)),
                        ("(d) progress bar + TrainmonCallback", mode(True, True))], rounds)
    report(f"transformers {transformers.__version__}: tiny GPT-2 (2 layers, d=32), batch 8, "
           f"gradient_accumulation_steps=4, {epochs} epochs, medians of {rounds} rounds", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same CPU share for every mode on a shared box
    with tempfile.TemporaryDirectory(prefix="trainmon-bench-") as home:
        os.environ["TRAINMON_HOME"] = home  # the runs recorded here go away with it
        transformers_section(args.epochs, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
