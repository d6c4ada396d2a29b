"""A Hugging Face Trainer run watched by trainmon: a tiny GPT-2 (2 layers, randomly initialised, nothing
downloaded) learns a character-level text on the CPU with gradient accumulation 4. The lines marked
`# trainmon` are all it takes.

    python examples/hf_tiny.py                       # records a run: `trainmon attach` in another terminal
    nohup python examples/hf_tiny.py &               # survives the terminal; attach, pause, stop from anywhere
    trainmon exec -- python examples/hf_tiny.py      # runs it detached and opens the monitor on it

Options: --epochs N, --max-steps S, --batch-size B, --accum K, --lr LR. Needs `pip install "trainmon[transformers]"`.
"""

import argparse
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from trainmon.integrations.transformers import TrainmonCallback  # trainmon

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=float, default=10)
parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0")
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--accum", type=int, default=4)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--output-dir", default="/tmp/trainmon-hf-tiny")
args = parser.parse_args()

TEXT = ("an epoch is one full pass over the training set. a batch goes through one forward and one backward "
        "pass. the optimizer steps once per accumulation window. ") * 8
SEQ = 32
vocab = sorted(set(TEXT))
codes = torch.tensor([vocab.index(c) for c in TEXT])


class Chars(torch.utils.data.Dataset):
    """Windows of SEQ characters, every 3rd start: (input_ids, labels) with labels = input_ids (GPT-2 shifts)."""

    def __init__(self, codes: torch.Tensor) -> None:
        self.codes, self.starts = codes, range(0, len(codes) - SEQ, 3)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        window = self.codes[self.starts[i]:self.starts[i] + SEQ]
        return {"input_ids": window, "labels": window}


cut = int(len(codes) * 0.9)
train, val = Chars(codes[:cut]), Chars(codes[cut:])  # 362 and 31 samples: the last batch of 8 holds 2
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=SEQ, n_embd=32, n_layer=2, n_head=2,
                                   bos_token_id=0, eos_token_id=0))
interactive = sys.stderr.isatty()
training_args = TrainingArguments(
    output_dir=args.output_dir, num_train_epochs=args.epochs, max_steps=args.max_steps,
    per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
    gradient_accumulation_steps=args.accum, learning_rate=args.lr, logging_steps=1, eval_strategy="epoch",
    save_strategy="no", report_to="none", use_cpu=True,
    disable_tqdm=not interactive,  # HF's bar beside trainmon in a terminal; none in a nohup log
)
trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=val,
                  callbacks=[TrainmonCallback()])  # trainmon
if not interactive:
    trainer.remove_callback(PrinterCallback)  # no dict per logged step in nohup.out: trainmon shows the figures
trainer.train()
state = trainer.state
print(f"trainer: global_step={state.global_step} epoch={state.epoch:.4f} "
      f"max_steps={state.max_steps} num_train_epochs={state.num_train_epochs}", flush=True)
