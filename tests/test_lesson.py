"""The lesson's stops by tables: every number against the engine's arithmetic (no torch here, on purpose)."""

import pytest

from trainmon.engine.core.arithmetic import (
    PlanError,
    batch_size_at,
    epoch_counts,
    last_batch_size,
    window_sizes,
)
from trainmon.engine.core.distributed_plan import plan_distributed_epoch
from trainmon.engine.core.lesson import LessonSettings, lesson_stops
from trainmon.engine.core.lesson_whatif import WhatIf, compare
from trainmon.engine.core.plan import plan_run

TEXTBOOK = LessonSettings(samples=1000, batch_size=64, accum=4)  # `seed-example` with accum 4
TOML_EXAMPLE = LessonSettings(samples=1000, batch_size=100, accum=3)


def table(settings, **kw):
    return [(s.name, s.global_iteration, s.global_step, s.samples_seen, s.epoch_done)
            for s in lesson_stops(settings, **kw)]


def test_textbook_lesson_stops_in_order_with_their_counts():
    assert table(TEXTBOOK) == [
        ("plan", 0, 0, 0, False),
        ("first_iteration", 1, 0, 64, False),
        ("window_filling", 3, 0, 192, False),
        ("optimizer_step", 4, 1, 256, False),
        ("window", 8, 2, 512, False),
        ("window", 12, 3, 768, False),
        ("last_batch", 16, 4, 1000, False),
        ("epoch_end", 16, 4, 1000, True),
        ("validation", 16, 4, 1000, True),
        ("run_end", 16, 4, 1000, True),
    ]


def test_textbook_numbers_and_words():
    stops = {s.name: s for s in lesson_stops(TEXTBOOK)}
    plan = dict(stops["plan"].numbers)
    assert plan == {"samples m": "1000", "batch size b": "64", "iterations per epoch": "16",
                    "last batch": "40 samples", "accumulation steps k": "4", "windows": "4 + 4 + 4 + 4",
                    "optimizer steps per epoch": "4", "effective batch size": "256"}
    assert "16 iterations, the last holding 40 samples" in stops["plan"].text
    assert "1000 // 64 = 15 undercounts" in stops["plan"].text
    assert stops["plan"].question.prompt == "How many iterations will this epoch have?"
    assert stops["plan"].question.answer == "16 = ceil(1000 / 64), not 1000 // 64 = 15"
    assert stops["optimizer_step"].question.answer.startswith("After iteration 4")
    assert dict(stops["optimizer_step"].numbers)["effective batch size"] == "64 × 4 = 256"
    assert dict(stops["last_batch"].numbers) == {"iteration": "16 of 16", "last batch": "40 samples",
                                                 "last window": "4 micro-batches, 232 samples",
                                                 "optimizer step": "4 of 4"}
    assert stops["last_batch"].question.answer == "40 = 1000 − 15 × 64"
    assert "1000 − 15 × 64 = 40 samples left" in stops["last_batch"].text
    assert "16 × 64 = 1024 would be wrong" in stops["epoch_end"].text
    assert stops["epoch_end"].question.answer == "4 = ceil(16 / 4)"
    assert "optimizer step" in stops["optimizer_step"].terms and "micro-batch" in stops["first_iteration"].terms


def test_toml_example_ten_iterations_windows_3_3_3_1():
    stops = lesson_stops(TOML_EXAMPLE)
    assert [(s.name, s.global_iteration, s.global_step) for s in stops if not s.epoch_done] == [
        ("plan", 0, 0), ("first_iteration", 1, 0), ("window_filling", 2, 0), ("optimizer_step", 3, 1),
        ("window", 6, 2), ("window", 9, 3), ("last_batch", 10, 4)]
    assert dict(stops[0].numbers)["windows"] == "3 + 3 + 3 + 1"
    assert dict(stops[0].numbers)["optimizer steps per epoch"] == "4"
    assert "shorter than k = 3, and still gets its own optimizer step: step 4" in stops[6].text


def test_no_questions():
    assert all(s.question is None for s in lesson_stops(TEXTBOOK, questions=False))


@pytest.mark.parametrize("m, b, k, epochs, drop_last", [
    (1000, 64, 4, 1, False), (1000, 64, 4, 3, True), (1000, 100, 3, 2, False), (1437, 32, 1, 1, False),
    (1437, 32, 7, 2, True), (10, 64, 4, 1, False), (1000, 64, 32, 1, False), (1024, 64, 5, 1, False),
    (45, 1, 2, 1, False), (1000, 1000, 1, 2, False),
])
def test_every_stop_agrees_with_the_arithmetic(m, b, k, epochs, drop_last):
    settings = LessonSettings(m, b, k, epochs, drop_last)
    stops = lesson_stops(settings)
    n, steps, samples = epoch_counts(m, b, k, drop_last)
    sizes = window_sizes(n, k)
    ends = {sum(sizes[: j + 1]): j + 1 for j in range(len(sizes))}  # iteration -> steps after it
    run = plan_run(m, b, k, epochs, drop_last)
    for s in stops:
        assert s.global_iteration == (s.epoch - 1) * n + s.iteration
        done = max([v for e, v in ends.items() if e <= s.iteration], default=0)
        assert s.global_step == (s.epoch - 1) * steps + done, s
        assert s.samples_seen == (s.epoch - 1) * samples + sum(
            batch_size_at(i, m, b, drop_last) for i in range(s.iteration)), s
    assert [s.global_iteration for s in stops] == sorted(s.global_iteration for s in stops)
    last = stops[-1]
    assert (last.global_iteration, last.global_step, last.samples_seen) == (
        run.total_iterations, run.total_optimizer_steps, run.total_samples)
    numbers = dict(stops[0].numbers)
    assert numbers["iterations per epoch"] == str(n)
    assert numbers["last batch"].split()[0] == str(last_batch_size(m, b, drop_last))
    assert numbers["optimizer steps per epoch"] == str(steps)
    assert sum(1 for s in stops if s.name == "epoch_end") == epochs
    assert not any(s.epoch_done for s in stops if s.name in ("plan", "first_iteration", "last_batch"))


def test_teacher_notes_attach_or_insert_in_order():
    stops = lesson_stops(LessonSettings(1000, 64, 4, epochs=2),
                         notes=(("iteration 6", "half way"), ("epoch_end", "look back"), ("iteration 8", "again"),
                                ("iteration 20", "epoch two")))
    table = [(s.name, s.global_iteration, s.global_step, s.samples_seen, s.note) for s in stops if s.note]
    assert table == [("note", 6, 1, 384, "half way"), ("window", 8, 2, 512, "again"),
                     ("epoch_end", 16, 4, 1000, "look back"), ("note", 20, 5, 1256, "epoch two")]
    assert [s.global_iteration for s in stops] == sorted(s.global_iteration for s in stops)


@pytest.mark.parametrize("where, message", [
    ("iteration 0", "with N from 1 to 16, got 'iteration 0'"),
    ("iteration 17", "with N from 1 to 16, got 'iteration 17'"),
    ("somewhere", "got 'somewhere'"),
])
def test_bad_note_place(where, message):
    with pytest.raises(PlanError, match=message):
        lesson_stops(TEXTBOOK, notes=((where, "x"),))


def test_window_filling_missing_is_one_line():
    with pytest.raises(PlanError, match="this lesson has no window_filling stop"):
        lesson_stops(LessonSettings(1000, 64, 1), notes=(("window_filling", "x"),))


@pytest.mark.parametrize("settings, message", [
    (LessonSettings(0, 64, 4), "at least one batch"),
    (LessonSettings(10, 64, 4, drop_last=True), "no batches would run"),
    (LessonSettings(1000, 0, 4), "batch size must be a whole number >= 1"),
    (LessonSettings(1000, 64, 0), "accumulation steps must be a whole number >= 1"),
    (LessonSettings(1000, 64, 4, epochs=0), "epochs must be a whole number >= 1"),
])
def test_impossible_settings(settings, message):
    with pytest.raises(PlanError, match=message):
        lesson_stops(settings)


@pytest.mark.parametrize("changed, rows, notes", [
    (WhatIf(1000, 64, 4), [("iterations per epoch", "16", "16"), ("last batch", "40 samples", "40 samples"),
                           ("windows", "4 + 4 + 4 + 4", "4 + 4 + 4 + 4"), ("optimizer steps", "4", "4"),
                           ("effective batch size", "256", "256"), ("samples seen per epoch", "1000", "1000")], []),
    (WhatIf(1000, 100, 3), [("iterations per epoch", "16", "10"), ("last batch", "40 samples", "100 samples"),
                            ("windows", "4 + 4 + 4 + 4", "3 + 3 + 3 + 1"), ("optimizer steps", "4", "4"),
                            ("effective batch size", "256", "300"), ("samples seen per epoch", "1000", "1000")],
     ["a run takes a new batch size at the next epoch start (the loader is rebuilt)",
      "a run takes new accumulation steps at the next window start"]),
    (WhatIf(1000, 64, 4, drop_last=True), [
        ("iterations per epoch", "16", "15"), ("last batch", "40 samples", "64 samples"),
        ("windows", "4 + 4 + 4 + 4", "4 + 4 + 4 + 3"), ("optimizer steps", "4", "4"),
        ("effective batch size", "256", "256"), ("samples seen per epoch", "1000", "960")],
     ["drop_last is set when a run starts"]),
    (WhatIf(1000, 64, 4, world_size=3), [
        ("samples per rank", "—", "334 (2 padded)"), ("iterations per epoch", "16", "6"),
        ("last batch", "40 samples", "14 samples"), ("windows", "4 + 4 + 4 + 4", "4 + 2"),
        ("optimizer steps", "4", "2"), ("effective batch size", "256", "768"),
        ("samples seen per epoch", "1000", "1000")],
     ["a new world size is a new run under torchrun"]),
])
def test_what_if_against_the_plan(changed, rows, notes):
    assert compare(WhatIf(1000, 64, 4), changed) == (rows, notes)
    p = plan_distributed_epoch(changed.samples, changed.world_size, changed.batch_size, changed.accum,
                               changed.drop_last)
    after = {label: value for label, _, value in rows}
    assert after["iterations per epoch"] == str(p.rank.iterations)
    assert after["optimizer steps"] == str(p.optimizer_steps)


def test_what_if_refuses_what_no_run_takes():
    with pytest.raises(PlanError, match="no batches would run"):
        compare(WhatIf(1000, 64, 4), WhatIf(10, 64, 4, drop_last=True))


def test_plurals_and_the_run_end_says_epochs():
    from trainmon.engine.core.lesson import plural

    assert [plural(2, w) for w in ("epoch", "micro-batch", "iteration", "sample")] == [
        "2 epochs", "2 micro-batches", "2 iterations", "2 samples"]
    end = lesson_stops(LessonSettings(1000, 64, 4, epochs=2))[-1]
    assert end.text == "2 epochs: 32 iterations, 8 optimizer steps, 2000 samples seen."
