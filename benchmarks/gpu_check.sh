#!/usr/bin/env bash
# GPU checks of trainmon for a box with CUDA (the tests stay CPU-only): one summary line per check.
#
#   bash benchmarks/gpu_check.sh            # with trainmon installed in the active environment
#
# Checks: `trainmon devices --json` sees the GPU through NVML and torch; the digits job trains at fp32,
# bf16 and fp16 with accumulation 4 (fp16 with its grad scaler: steps applied/skipped); a forced
# out-of-memory (a capped memory fraction, a growing batch size) goes back and finishes; no host-device
# sync happens inside the loop between publications (torch.cuda.set_sync_debug_mode, counted by the
# loop function it came from). Exit status: 0 all passed, 1 a check failed, 2 no CUDA device here.
set -u
PY=${PYTHON:-python}
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: needs a CUDA device (torch.cuda.is_available() is False here); nothing checked"
    exit 2
fi
export TRAINMON_HOME
TRAINMON_HOME=$(mktemp -d)
trap 'rm -rf "$TRAINMON_HOME"' EXIT
failed=0

check() {  # check NAME COMMAND...: run it, print ok/FAIL with its last output line
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "ok    $name: $(printf '%s\n' "$out" | tail -1 | cut -c1-160)"
    else
        echo "FAIL  $name: $(printf '%s\n' "$out" | tail -3 | tr '\n' ' ' | cut -c1-300)"
        failed=1
    fi
}

check "devices --json" "$PY" -c "
import json, subprocess, sys
d = json.loads(subprocess.run(['trainmon', 'devices', '--json'], capture_output=True, text=True, check=True).stdout)
gpus = d.get('gpus') or []
assert gpus, 'no GPU in trainmon devices --json'
print(f\"{len(gpus)} GPU(s): {gpus[0].get('name')}, NVML used {gpus[0].get('memory_used_mib')} MiB\")"

for precision in fp32 bf16 fp16; do
    check "digits --precision $precision --accum 4" \
        trainmon --headless --epochs 3 --accum 4 --precision "$precision" --device cuda
done

check "OOM guard: a growing batch size out of a capped GPU memory goes back and finishes" "$PY" - <<'PY'
import torch
from trainmon.engine.core import messages as msg
from trainmon.engine.control.channel import Channel
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.jobs.builtin import seed_example_job
from trainmon.engine.run.trainer import Trainer

torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * 2**30 / torch.cuda.get_device_properties(0).total_memory))
job = seed_example_job(image_size=256)  # 1000 images 3x256x256; batches 32, 64, ... 1000 outgrow 1.5 GiB
events = []
channel = Channel(listener=lambda item: events.append(item))
result = Trainer(job, RunConfig.for_job(job, epochs=7, batch_size=32, batch_growth=2.0, device="cuda"), channel).run()
reverted = [e for e in events if isinstance(e, msg.BatchSizeReverted)]
assert reverted, "no out-of-memory was reached: raise the image size or lower the memory cap"
assert isinstance(result, msg.Finished), getattr(result, "message", result)
print(reverted[0].message)
PY

check "no sync inside the loop between publications" "$PY" - <<'PY'
import collections, traceback, warnings
import torch
from trainmon.engine.control.channel import Channel
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.jobs.builtin import digits_job
from trainmon.engine.run.trainer import Trainer

where = collections.Counter()

def on_warning(message, category, filename, lineno, file=None, line=None):
    frames = [f.name for f in traceback.extract_stack()]
    inside = [n for n in ("_train_iteration", "_optimizer_step", "_publish", "_validate", "_save") if n in frames]
    where[inside[-1] if inside else "elsewhere"] += 1

warnings.showwarning = on_warning
job = digits_job()
trainer = Trainer(job, RunConfig.for_job(job, epochs=2, accum=4, device="cuda"), Channel())
torch.cuda.set_sync_debug_mode("warn")
try:
    trainer.run()
finally:
    torch.cuda.set_sync_debug_mode(0)
bad = where["_train_iteration"] + where["_optimizer_step"]
print(f"syncs by place: {dict(where)}")
assert bad == 0, f"{bad} syncs inside iterations or steps"
PY

# issue 13 on a GPU: torchrun with NCCL (one rank: this box lends one GPU; NCCL refuses two ranks on one device)
check "torchrun + NCCL, one rank, headless" "$PY" -m trainmon run examples/digits_mlp.py \
    --nproc-per-node 1 --epochs 2 --accum 2 --headless

# issue 12 on a GPU: a tracked loop on CUDA (losses kept as device tensors, read at publication)
check "trainmon.track() loop on CUDA" "$PY" - <<'PY'
import os, tempfile
os.environ.setdefault("TRAINMON_HOME", tempfile.mkdtemp())
import torch, trainmon
from torch import nn
model = nn.Linear(64, 10).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = torch.utils.data.TensorDataset(torch.randn(512, 64), torch.randint(0, 10, (512,)))
run = trainmon.track(opt, accum=4)
for _ in run.epochs(2):
    for x, y in run.batches(torch.utils.data.DataLoader(data, batch_size=32)):
        loss = nn.functional.cross_entropy(model(x.cuda()), y.cuda())
        (loss / 4).backward()
        if run.window_end:
            opt.step(); opt.zero_grad()
        run.log(loss)
print("steps", run.tracker.progress.global_step)
assert run.tracker.progress.global_step == 8
PY

exit $failed
