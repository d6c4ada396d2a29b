"""The lesson of `trainmon lesson` as data: the ordered stops of an epoch, each with its exact numbers.

Torch-free, so a handout prints without a model and every number is tested by tables against
arithmetic.py and plan.py (tests/test_lesson.py). Nothing here re-derives the arithmetic: each count
comes from `plan_run` / `plan_epoch` or the helpers they use. Terms follow DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from trainmon.engine.core.arithmetic import (
    PlanError,
    check_positive,
    effective_batch_size,
    optimizer_steps_per_epoch,
    window_counts,
    window_samples,
)
from trainmon.engine.core.plan import EpochPlan, plan_run

STOP_NAMES = ("plan", "first_iteration", "window_filling", "optimizer_step", "window", "last_batch", "epoch_end",
              "validation", "run_end")
WINDOW_STOPS = 4  # more middle windows than this share one stop (one advance runs them all)


class NoteError(PlanError):
    """A teacher's note whose place matches no stop; `index` is its place among the notes (0-based)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class LessonSettings:
    """What a lesson trains: `samples` (m) in the training set, batch size b, accumulation steps k,
    `epochs`, `drop_last`, and whether the job has a validation set. Constant b and k (no schedule)."""

    samples: int
    batch_size: int
    accum: int = 1
    epochs: int = 1
    drop_last: bool = False
    validation: bool = False


@dataclass(frozen=True)
class Question:
    """Asked before a stop's training runs (predict), answered when the stop shows (reveal)."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Stop:
    """One moment of the lesson, reached after the run has done exactly these counts.

    `epoch` is 1-based; `iteration` counts the iterations of that epoch done (0 to n); `global_iteration`,
    `global_step` (optimizer steps) and `samples_seen` are run totals at that moment; `epoch_done` says the
    epoch's end (and validation) must have run too. `terms` are DESIGN.md's words that light up;
    `numbers` are `(label, value)` pairs; `note` is the teacher's own text from a lesson file.
    """

    name: str
    title: str
    epoch: int
    iteration: int
    global_iteration: int
    global_step: int
    samples_seen: int
    epoch_done: bool
    terms: tuple[str, ...]
    numbers: tuple[tuple[str, str], ...]
    text: str
    question: Optional[Question] = None
    note: str = ""


def plural(n: int, word: str) -> str:
    """`1 iteration`, `16 iterations`, `4 micro-batches`, `2 epochs`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith(('tch', 'sh', 'ss', 'x')) else 's'}"


def windows_text(plan: EpochPlan) -> str:
    """`4 + 4 + 4 + 4` for up to 8 windows, else counted: `11 × 4 + 1`."""
    if plan.window_sizes is not None and len(plan.window_sizes) <= 8:
        return " + ".join(str(w) for w in plan.window_sizes) or "none"
    full, last = plan.full_windows or 0, plan.last_window_size or 0
    text = f"{full} × {plan.accum}"
    return text if last == plan.accum else f"{text} + {last}"


def _steps_after(i: int, plan: EpochPlan) -> int:
    """Optimizer steps an epoch has made after its first `i` iterations: one per full window, and the
    short last window's own step once the epoch's last iteration ran."""
    n = plan.iterations or 0
    return optimizer_steps_per_epoch(i, plan.accum) if i >= n else i // plan.accum


class _Builder:
    """Collects stops with the run's counters filled in from the plan."""

    def __init__(self, settings: LessonSettings, plan: EpochPlan) -> None:
        self.s, self.p = settings, plan
        self.n = plan.iterations or 0
        self.stops: list[Stop] = []

    def samples(self, epoch: int, i: int) -> int:
        """Samples seen in the run after `i` iterations of 1-based `epoch`: whole epochs plus this one's
        first `i` batches, from real batch sizes."""
        s = self.s
        return (epoch - 1) * (self.p.samples or 0) + window_samples(0, i, s.samples, s.batch_size, s.drop_last)

    def add(self, name: str, title: str, epoch: int, i: int, terms: tuple[str, ...],
            numbers: list[tuple[str, str]], text: str, question: Optional[Question] = None,
            epoch_done: bool = False) -> None:
        steps = optimizer_steps_per_epoch(self.n, self.p.accum) or 0
        self.stops.append(Stop(
            name=name, title=title, epoch=epoch, iteration=i, global_iteration=(epoch - 1) * self.n + i,
            global_step=(epoch - 1) * steps + _steps_after(i, self.p), samples_seen=self.samples(epoch, i),
            epoch_done=epoch_done, terms=terms, numbers=tuple(numbers), text=text, question=question))


def lesson_stops(settings: LessonSettings, questions: bool = True,
                 notes: tuple[tuple[str, str], ...] = ()) -> list[Stop]:
    """The lesson's stops in order: the plan, iteration 1, the window filling, the first optimizer step,
    the middle windows, the last (short) batch, the epoch's end, validation, then each later epoch's end.

    Every count comes from `plan_run`. Without `questions`, no stop carries a `Question`; `notes` are the
    teacher's `(where, text)` pairs (see `_add_notes`). Raises `PlanError` (one line) for settings
    `plan_run` refuses, an epoch with no iterations, or a note whose `where` matches nothing.
    """
    check_positive("epochs", settings.epochs)
    run = plan_run(settings.samples, settings.batch_size, settings.accum, settings.epochs, settings.drop_last)
    p = run.segments[0]
    m, b, k, n = settings.samples, p.batch_size, p.accum, p.iterations or 0
    if n == 0:
        raise PlanError("a lesson needs at least one batch: the training set is empty")
    last, steps, eff = p.last_batch_size, p.optimizer_steps, effective_batch_size(b, k)
    full, last_window = window_counts(n, k)
    out = _Builder(settings, p)
    ask = (lambda prompt, answer: Question(prompt, answer)) if questions else (lambda prompt, answer: None)
    shortcut = m // b

    # -- the plan, before anything runs
    if settings.drop_last and m % b:
        batches = (f"with drop_last the loader yields floor({m} / {b}) = {plural(n, 'iteration')} of {b} samples "
                   f"and throws away the last {m - n * b}")
    elif m % b:
        batches = (f"an epoch is ceil({m} / {b}) = {plural(n, 'iteration')}, the last holding {last} samples. "
                   f"The shortcut {m} // {b} = {shortcut} undercounts: it forgets the short last batch")
    else:
        batches = f"b divides m: an epoch is {m} / {b} = {plural(n, 'iteration')} of {b} samples each"
    answer = f"{n} = {'floor' if settings.drop_last else 'ceil'}({m} / {b})" + (
        f", not {m} // {b} = {shortcut}" if m % b and not settings.drop_last else "")
    out.add("plan", "The plan of an epoch", 1, 0, ("sample", "batch size", "iteration", "epoch"), [
        ("samples m", str(m)), ("batch size b", str(b)), ("iterations per epoch", str(n)),
        ("last batch", plural(last, "sample")), ("accumulation steps k", str(k)), ("windows", windows_text(p)),
        ("optimizer steps per epoch", str(steps)), ("effective batch size", str(eff)),
    ], f"The training set holds m = {m} samples and the loader takes b = {b} at a time, so {batches}. With k = {k} "
       f"accumulation steps the windows are {windows_text(p)}: {plural(steps, 'optimizer step')} an epoch.",
        ask("How many iterations will this epoch have?", answer))

    # -- iteration 1: one micro-batch (an epoch of one batch goes straight to its last batch)
    if n > 1:
        window = ("With k = 1 every iteration is a window of its own: optimizer step 1 lands at once." if k == 1 else
                  f"Its gradient goes into the accumulation window (1 of {min(k, n)} micro-batches); "
                  "no optimizer step yet: the weights have not changed.")
        out.add("first_iteration", "Iteration 1: the first micro-batch", 1, 1,
                ("micro-batch", "batch size", "iteration") + (("optimizer step",) if k == 1 else ()), [
                    ("iteration", f"1 of {n}"), ("micro-batch", plural(b, "sample")),
                    ("samples seen", str(out.samples(1, 1))), ("optimizer steps", str(_steps_after(1, p))),
                ], f"The loader handed over micro-batch 1 of {n}: {plural(b, 'sample')}. One forward and one "
                   f"backward pass on it is one iteration. {window}")

    # -- the first window filling, then its step landing (when the epoch is longer than one window)
    w0 = min(k, n)
    if w0 < n and k > 1:
        if w0 > 2:
            i = w0 - 1
            held = window_samples(0, i, m, b, settings.drop_last)
            out.add("window_filling", f"Iteration {i}: the window fills", 1, i, ("accumulation window", "iteration"), [
                ("iteration", f"{i} of {n}"), ("window", f"{i} of {k} micro-batches"),
                ("samples in the window", str(held)), ("optimizer steps", "0"),
            ], f"{plural(i, 'micro-batch')} ({held} samples) went forward and backward; their gradients add up "
               f"in the window, each micro-batch's loss weighted by its share of the window's samples ({b} / {eff}). "
               "The optimizer waits for the window to fill.")
        when = f"After iteration {w0}, when window 1 holds k = {k} micro-batches"
        out.add("optimizer_step", f"Iteration {w0}: the optimizer step lands", 1, w0,
                ("optimizer step", "accumulation window", "effective batch size"), [
                    ("iteration", f"{w0} of {n}"), ("optimizer step", f"1 of {steps}"),
                    ("effective batch size", f"{b} × {k} = {eff}"), ("samples seen", str(out.samples(1, w0))),
                ], f"Window 1 is full: {plural(w0, 'micro-batch')}, {window_samples(0, w0, m, b, settings.drop_last)} "
                   f"samples. optimizer.step() updates the weights once with their summed gradient: optimizer step 1. "
                   f"The effective batch size b × k = {b} × {k} = {eff} samples stand behind this one update. "
                   "The next window starts empty.", ask("When does the next optimizer step land?", when))
    if w0 < n:
        _middle_windows(out, full)

    # -- the last batch and the last window's step
    start = n - last_window
    held = window_samples(start, last_window, m, b, settings.drop_last)
    short_batch = last < b
    text = (f"The loader had {m} − {n - 1} × {b} = {last} samples left, so the last micro-batch holds {last}, not {b}. "
            if short_batch else f"The last micro-batch is a full {b} samples. ")
    window_no = full + (last_window != k)
    if last_window != k:
        text += (f"The last window holds only {plural(last_window, 'micro-batch')} ({held} samples), shorter than "
                 f"k = {k}, and still gets its own optimizer step: step {steps}. Gradients never leak into the next "
                 "epoch.")
    else:
        text += (f"Window {window_no} is full ({plural(k, 'micro-batch')}, {held} samples): optimizer step {steps} "
                 "lands and the epoch's gradients are all used.")
    out.add("last_batch", f"Iteration {n}: the last batch" + (" is short" if short_batch else ""), 1, n,
            ("batch size", "iteration", "accumulation window", "optimizer step"), [
                ("iteration", f"{n} of {n}"), ("last batch", plural(last, "sample")),
                ("last window", f"{plural(last_window, 'micro-batch')}, {held} samples"),
                ("optimizer step", f"{steps} of {steps}"),
            ], text, ask("How many samples will the last batch hold?", f"{last}" + (
                f" = {m} − {n - 1} × {b}" if short_batch else "")) if n > 1 else None)

    # -- the epoch's end and validation
    wrong = n * b
    counted = (f" (counted from real batch sizes: {n} × {b} = {wrong} would be wrong)" if wrong != p.samples else "")
    pitfall = (f" The shortcut {m} // {b} = {shortcut} undercounts by {n - shortcut}."
               if m % b and not settings.drop_last else "")
    out.add("epoch_end", "Epoch 1 ends", 1, n, ("epoch", "samples seen", "optimizer step"), [
        ("iterations", str(n)), ("optimizer steps", str(steps)), ("samples seen", str(p.samples)),
    ], f"One full pass over the training set: {plural(n, 'iteration')}, {plural(steps, 'optimizer step')}, "
       f"{p.samples} samples seen{counted}.{pitfall}",
        ask("How many optimizer steps will this epoch have made?", f"{steps} = ceil({n} / {k})"), epoch_done=True)
    if settings.validation:
        val = ("The model is evaluated on the validation set: forward passes only, no gradients, no optimizer steps. "
               "The iteration and step counters do not move.")
    else:
        val = ("This job has no validation set, so nothing is evaluated. A job with one evaluates after each "
               "epoch: forward passes only, no gradients, no optimizer steps.")
    out.add("validation", "Validation", 1, n, ("validation",), [("optimizer steps", str(steps))], val,
            epoch_done=True)

    # -- the later epochs, one stop each, then the run's end
    for e in range(2, settings.epochs + 1):
        out.add("epoch_end", f"Epoch {e} ends", e, n, ("epoch", "global iteration / step"), [
            ("global iteration", f"{e * n} of {run.total_iterations}"),
            ("optimizer step", f"{e * steps} of {run.total_optimizer_steps}"),
            ("samples seen", str(out.samples(e, n))),
        ], f"Epoch {e}: the same {plural(n, 'iteration')} and {plural(steps, 'optimizer step')} again. The global "
           f"counters go on over the whole run: iteration {e * n}, optimizer step {e * steps}.", epoch_done=True)
    out.add("run_end", "The run is done", settings.epochs, n, ("epoch", "global iteration / step"), [
        ("epochs", str(settings.epochs)), ("iterations", str(run.total_iterations)),
        ("optimizer steps", str(run.total_optimizer_steps)), ("samples seen", str(run.total_samples)),
    ], f"{plural(settings.epochs, 'epoch')}: {plural(run.total_iterations, 'iteration')}, "
       f"{plural(run.total_optimizer_steps, 'optimizer step')}, {run.total_samples} samples seen.", epoch_done=True)
    _add_notes(out, notes)
    return out.stops


def _middle_windows(out: _Builder, full: int) -> None:
    """Windows 2 .. before the last: one stop each, or one stop for all beyond `WINDOW_STOPS`."""
    p, k, n = out.p, out.p.accum, out.n
    ends = [w * k for w in range(2, full + 1) if w * k < n]  # the window ending at n is the last batch's stop
    if not ends:
        return
    if len(ends) > WINDOW_STOPS:
        first, end = 2, ends[-1] // k
        out.add("window", f"Iterations {k + 1} to {ends[-1]}: windows {first} to {end}", 1, ends[-1],
                ("accumulation window", "optimizer step"), [
                    ("iteration", f"{ends[-1]} of {n}"), ("optimizer step", f"{end} of {p.optimizer_steps}"),
                    ("samples seen", str(out.samples(1, ends[-1]))),
                ], f"Windows {first} to {end} fill and step the same way, {plural(k, 'micro-batch')} each: optimizer "
                   f"steps {first} to {end}.")
        return
    for e in ends:
        w = e // k
        out.add("window", f"Iteration {e}: optimizer step {w} lands", 1, e,
                ("accumulation window", "optimizer step"), [
                    ("iteration", f"{e} of {n}"), ("optimizer step", f"{w} of {p.optimizer_steps}"),
                    ("samples seen", str(out.samples(1, e))),
                ], f"Window {w}: {plural(k, 'more micro-batch')} forward and backward, then optimizer step {w}.")


def _add_notes(out: _Builder, notes: tuple[tuple[str, str], ...]) -> None:
    """Put the teacher's `(where, text)` notes in: `where` names a stop (`STOP_NAMES`: the note goes on the
    first stop of that name) or is `iteration N`, a global iteration from 1 to the run's last (the note goes
    on the stop there, or a new `note` stop takes its place in order). Raises `NoteError` (one line) for a
    `where` that matches nothing."""
    for j, (where, text) in enumerate(notes):
        try:
            index = _note_index(out.stops, where)
        except PlanError as exc:
            raise NoteError(j, str(exc)) from None
        if index is None:
            number = int(where.split()[1])
            epoch, i = (number - 1) // out.n + 1, (number - 1) % out.n + 1
            out.add("note", f"Iteration {number}", epoch, i, (), [
                ("iteration", f"{i} of {out.n}"), ("epoch", str(epoch)),
                ("samples seen", str(out.samples(epoch, i))),
            ], "")
            index = len(out.stops) - 1
        s = out.stops[index]
        out.stops[index] = replace(s, note=f"{s.note}\n{text}" if s.note else text)
    out.stops.sort(key=lambda s: (s.global_iteration, s.epoch_done))  # stable: the built order stays


def _note_index(stops: list[Stop], where: str) -> Optional[int]:
    """Index of the stop a note at `where` belongs on; `None` for `iteration N` with no stop there yet."""
    if where in STOP_NAMES:
        for j, s in enumerate(stops):
            if s.name == where:
                return j
        raise PlanError(f"this lesson has no {where} stop")
    parts = where.split()
    last = max(s.global_iteration for s in stops)
    if len(parts) != 2 or parts[0] != "iteration" or not parts[1].isdigit() or not 1 <= int(parts[1]) <= last:
        raise PlanError(f"must be one of {', '.join(STOP_NAMES)} or 'iteration N' with N from 1 to {last}, "
                        f"got {where!r}")
    number = int(parts[1])
    return next((j for j, s in enumerate(stops) if s.global_iteration == number and not s.epoch_done), None)
