"""The glossary of DESIGN.md, each term in one sentence computed with the live run's numbers."""

from __future__ import annotations

from trainmon.engine.core.arithmetic import (
    iterations_per_epoch,
    last_batch_size,
    optimizer_steps_per_epoch,
    window_counts,
)
from trainmon.engine.core.distributed_plan import rank_samples
from trainmon.engine.core.format import SCREEN, count, general
from trainmon.engine.core.messages import Snapshot


def _windows_text(n: int, k: int) -> str:
    """`11 × 4 + 1` for 45 micro-batches in windows of 4 (counted, never listed)."""
    full, last = window_counts(n, k)
    if not n:
        return "none"
    short = last != k
    text = f"{full} × {k}" if full > 1 else (str(k) if full else "")
    if short:
        text = f"{text} + {last}" if text else str(last)
    return text


def glossary(s: Snapshot) -> list[tuple[str, str]]:
    """`(term, sentence)` pairs for the teaching screen, using the numbers of snapshot `s`."""
    m, b, k, w = s.dataset_size, s.batch_size, s.accum, max(1, s.world_size)
    rows: list[tuple[str, str]] = []
    if m is None:
        rows.append(("sample", "one training example; this dataset has no length, so every total is unknown"))
    else:
        rows.append(("sample", f"one training example; this run's training set holds m = {m} samples"))
    if m is not None and w > 1:  # each rank's loader batches its own share of the training set
        share, padded = rank_samples(m, w, s.drop_last)
        extra = (f" ({padded} padded duplicate{'s' if padded != 1 else ''})" if padded else
                 f" (the last {m - share * w} left out)" if m != share * w else "")
        rows[-1] = ("sample", f"{rows[-1][1]}, split over {w} ranks: {share} each{extra}; below, m = {share}")
        m = share
    n = iterations_per_epoch(m, b, s.drop_last) if b else None
    last = last_batch_size(m, b, s.drop_last) if b else None
    rows.append(("batch (micro-batch)", "the samples that go through one forward and one backward pass together"))
    if m is not None and n:
        if s.drop_last:
            tail = f"drop_last throws away the last {m - n * b} samples each epoch"
        elif b > m:  # the loader yields what the set holds: one batch of m samples
            tail = f"more than the {m} samples the set holds, so each epoch is one batch of all {m}"
        else:
            tail = f"the last batch holds m − (n−1)·b = {m} − {n - 1} × {b} = {last} samples"
        rows.append(("batch size", f"b = {b} samples per batch; {tail}"))
        op = "floor" if s.drop_last else "ceil"
        rows.append(("iteration", f"one forward + backward pass on one batch; iterations per epoch = {op}({m} / {b}) = {n}"
                     + ("" if s.drop_last or m % b == 0 else f" — the last batch holds {last} samples")
                     + (f" (the shortcut {m} // {b} = {m // b} undercounts)" if m % b and not s.drop_last else "")))
    else:
        rows.append(("batch size", f"b = {b} samples per batch"))
        rows.append(("iteration", "one forward + backward pass on one batch; the epoch ends when the loader does"))
    weighting = ("; how each is weighted is the loop's own" if s.tracked else
                 ", each weighted by its share of the window's samples,")
    rows.append(("accumulation steps", f"k = {k}: " + ("every iteration is an optimizer step" if k == 1 else
                 f"the gradients of {k} micro-batches are summed{weighting} before one update")))
    if n:
        short = window_counts(n, k)[1] != k
        rows.append(("accumulation window", f"the micro-batches between two optimizer steps; this epoch's windows: "
                     f"{_windows_text(n, k)}" + (" — the short last window gets its own step" if short else "")))
        rows.append(("optimizer step", f"one optimizer.step(); steps per epoch = ceil({n} / {k}) = "
                     f"{optimizer_steps_per_epoch(n, k)}"))
    else:
        rows.append(("accumulation window", "the micro-batches between two optimizer steps; the last one of an epoch"
                     " can be shorter and still gets its own step"))
        rows.append(("optimizer step", "one optimizer.step(), at the end of each window"))
    product = f"b × k = {b} × {k} = {b * k}" if w == 1 else f"b × k × world size = {b} × {k} × {w} = {b * k * w}"
    if m is not None and n and n <= k and b * k > m and not s.drop_last and w == 1:  # one window: the whole set
        rows.append(("effective batch size", f"samples behind one update: here the whole training set, {m} samples"
                     f" ({product} is more than the set holds)"))
    else:
        rows.append(("effective batch size", f"samples behind one update: {product}"
                     + (" (the short last window has fewer)" if n and window_counts(n, k)[1] != k else "")))
    if m is not None and n:
        samples = n * b if s.drop_last else m
        each = " on each rank" if w > 1 else ""
        iterations = f"{n} iteration{'' if n == 1 else 's'}"
        rows.append(("epoch", f"one full pass over the training set: {iterations}, {samples} samples{each}; "
                     f"this run does {s.epochs}"))
    else:
        rows.append(("epoch", f"one full pass over the training set; this run does {s.epochs}"))
    naive = s.global_iteration * b * w
    shortcut = f"{s.global_iteration} × {b}" + (f" × {w}" if w > 1 else "")
    rows.append(("samples seen", f"{s.samples_seen} so far" + (" over all ranks" if w > 1 else "")
                 + ", counted from real batch sizes"
                 + (f" (iterations × b{' × ranks' if w > 1 else ''} = {shortcut} = {naive} would be wrong)"
                    if naive != s.samples_seen else "")))
    rows.append(("global iteration / step", f"counters over the whole run: iteration {s.global_iteration} of "
                 f"{count(s.total_iterations)}, optimizer step {s.global_step} of {count(s.total_steps)}; right even"
                 " when b or k change"))
    if s.batch_growth != 1:
        cap = f", capped at {s.max_batch_size}" if s.max_batch_size else ""
        g = general(s.batch_growth, SCREEN)
        rows.append(("batch-size schedule", f"b_t = b_0 · {g}^t for epoch t from 0{cap}; now b = {b}"))
    else:
        rows.append(("batch-size schedule", f"b_t = b_0 · g^t; here g = 1, so b stays {b} unless you change it"
                     + (" (the loop builds its loaders: b is the loop's own)" if s.batch_size_off else "")))
    if w > 1:
        hosts = len({r.host for r in s.ranks if r.host})
        on = f" on {hosts} hosts" if hosts > 1 else ""
        rows.append(("rank / world size", f"one process of a distributed run / how many there are: {w} ranks{on}, "
                     f"each training on its own share with b = {b}; the loss shown is the mean over the {w} ranks"))
    return rows
