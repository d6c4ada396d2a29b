"""What recording the job's output costs a job that prints a lot: the same print loop with and without
`OutputCapture` (fds 1 and 2 through a pipe, a reader thread teeing to the old fd, a writer thread to the
rotating file), and the digits training loop printing a line every iteration, with and without.

    python benchmarks/output_capture.py [LINES]      # stdout goes to /dev/null (as a fast terminal would)

Each figure runs in a fresh process (the capture is process-wide): the prints best of 3, training best of 3,
off and on interleaved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

PRINTS = '''
import sys, time
from pathlib import Path
capture = None
if sys.argv[2] == "on":
    from trainmon.engine.record.output_capture import OutputCapture
    capture = OutputCapture(Path(sys.argv[3])).start()
n = int(sys.argv[1])
start = time.perf_counter()
for i in range(n):
    print(f"step {i} loss 0.123456 lr 0.001 some more words to make it a line of about 80 characters ..")
sys.stdout.flush()
took = time.perf_counter() - start
if capture is not None:
    capture.stop()
print(f"{took:.4f}", file=sys.stderr)
'''

TRAINING = '''
import sys, time
from pathlib import Path
import torch
from trainmon.engine.jobs import JobSpec
torch.set_num_threads(1)  # a 2-core box shared with the capture's threads
capture = None
if sys.argv[2] == "on":
    from trainmon.engine.record.output_capture import OutputCapture
    capture = OutputCapture(Path(sys.argv[3])).start()
job = JobSpec("digits").build()
model, loss_fn = job.model, job.loss_fn
opt = job.optimizer(model.parameters(), job.lr)
train = torch.utils.data.DataLoader(job.train_dataset, batch_size=32, shuffle=True)
start, n = time.perf_counter(), 0
for epoch in range(int(sys.argv[1])):
    for x, y in train:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        n += 1
        print(f"epoch {epoch} iteration {n} loss {loss.item():.4f}", flush=True)
took = time.perf_counter() - start
if capture is not None:
    capture.stop()
print(f"{n / took:.1f}", file=sys.stderr)
'''


def run(code: str, arg: str, mode: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-c", code, arg, mode, folder], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, check=True, env=os.environ)
        return float(result.stderr.strip().splitlines()[-1])


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    off = min(run(PRINTS, str(lines), "off") for _ in range(3))
    on = min(run(PRINTS, str(lines), "on") for _ in range(3))
    print(f"{lines} prints of ~90 bytes: {off:.3f} s plain, {on:.3f} s captured "
          f"({lines / off / 1e3:.0f}k vs {lines / on / 1e3:.0f}k lines/s, ×{on / off:.2f})")
    pairs = [(run(TRAINING, "2", "off"), run(TRAINING, "2", "on")) for _ in range(3)]  # interleaved: a busy box
    off, on = max(p[0] for p in pairs), max(p[1] for p in pairs)
    print(f"digits, batch 32, a flushed line every iteration: {off:.0f} it/s plain, {on:.0f} it/s captured "
          f"(×{on / off:.3f})")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
