"""Every rank in view (issue 13): the Ranks pane in the Devices pane's place when world_size > 1, the
straggler and uneven memory named in words, many ranks summarised, b·k·W and the mean loss over ranks."""

from __future__ import annotations

from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import progress_line
from trainmon.tui.app import TrainmonApp
from trainmon.tui.teaching import glossary
from trainmon.tui.widgets.accum_pane import effective_text
from trainmon.tui.widgets.devices_pane import DevicesPane
from trainmon.tui.widgets.ranks_pane import RanksPane, rank_lines, read_ranks


def rank(r: int, iteration: int = 37, rate: float = 371.0, memory: float = 61_200.0, host: str = "gpu-a",
         loss: float = 0.41) -> msg.RankFigures:
    return msg.RankFigures(rank=r, host=host, global_iteration=iteration, iterations_per_second=rate,
                           loss=loss, memory_mib=memory, memory_source="torch allocated", device=f"cuda:{r % 8}")


def distributed(ranks: list[msg.RankFigures], **changes) -> msg.Snapshot:
    """The digits job (m=1437, b=32, k=4) on len(ranks) ranks: 719 samples and 23 iterations per rank and epoch,
    epoch 2 at iteration 14 (2 of a window of 4 accumulated), samples seen over all ranks."""
    w = len(ranks)
    base = dict(world_size=w, ranks=tuple(ranks), iteration_in_epoch=14, iterations_in_epoch=23, last_batch_size=15,
                global_iteration=37, total_iterations=115, global_step=9, total_steps=30, steps_in_epoch=3,
                steps_per_epoch=6, samples_seen=1437 + 14 * 32 * w, effective_batch_size=32 * 4 * w,
                iterations_per_second=371.0, samples_per_second=371.0 * 32 * w, history_version=37, loss=0.4258)
    base.update(changes)
    return digits_mid_run(**base)


def first_epoch() -> list:
    """Epoch 1 of `distributed()`: 23 iterations and 6 steps per rank, the 1437 samples over all ranks, validated."""
    return [msg.EpochEnded(epoch=1, epochs=5, iterations=23, iterations_planned=23, steps=6, samples_seen=1437,
                           train_loss=0.9, val_loss=0.612, val_metrics={"acc": 0.8611}, batch_size=32, accum=4,
                           lr=0.05, elapsed=6.0, global_iteration=23, global_step=6)]


def two_even() -> list[msg.RankFigures]:
    return [rank(0, rate=371.2, loss=0.4127, memory=61_200.0), rank(1, rate=369.8, loss=0.4390, memory=61_180.0)]


def four_uneven() -> list[msg.RankFigures]:
    return [rank(0, loss=0.40), rank(1, memory=45_000.0, loss=0.43), rank(2, iteration=25, rate=250.0, loss=0.45),
            rank(3, rate=368.0, loss=0.39)]


def many_snapshot() -> msg.Snapshot:
    """64 ranks on 8 hosts over m = 2,000,000 samples: 31,250 per rank, 977 iterations per rank and epoch."""
    return distributed(many(), dataset_size=2_000_000, iteration_in_epoch=257, iterations_in_epoch=977,
                       last_batch_size=18, global_iteration=1234, total_iterations=4885, global_step=309,
                       total_steps=1225, steps_in_epoch=64, steps_per_epoch=245, window_position=1,
                       window_samples=32, samples_seen=2_000_000 + 257 * 32 * 64, total_samples=10_000_000,
                       iterations_per_second=742.0, samples_per_second=742.0 * 32 * 64, history_version=1234)


def many(w: int = 64) -> list[msg.RankFigures]:
    ranks = [rank(r, iteration=1234 - r % 3, rate=742.0 + r % 5, memory=61_200.0 + 10 * (r % 4),
                  host=f"node-{r // 8}") for r in range(w)]
    ranks[17] = rank(17, iteration=1180, rate=650.1, memory=61_200.0, host="node-2")
    ranks[42] = rank(42, iteration=1234, rate=744.0, memory=79_000.0, host="node-5")
    return ranks


# ---------------------------------------------------------------- what stands out (no app)
def test_even_ranks_have_no_straggler_and_even_memory():
    reading = read_ranks(two_even())
    assert (reading.slow, reading.memory, reading.leader_iteration) == ((), None, 37)


def test_slowest_rank_and_uneven_memory_found():
    reading = read_ranks(four_uneven())
    assert reading.slow == (2,)
    assert round(reading.slow_by[2], 2) == 0.33  # 250 it/s against the others' median 371
    assert reading.memory == (0, 1)  # 61,200 MiB is > 1.2 × 45,000 MiB
    assert reading.behind(four_uneven()[2]) == 12


def test_a_rank_a_little_slower_is_not_a_straggler():
    assert read_ranks([rank(0, rate=100.0), rank(1, rate=91.0)]).slow == ()  # 9% slower
    assert read_ranks([rank(0, rate=100.0), rank(1, rate=89.0)]).slow == (1,)


def test_without_rates_the_rank_furthest_behind_is_slow():
    ranks = [msg.RankFigures(rank=0, global_iteration=100), msg.RankFigures(rank=1, global_iteration=80)]
    assert read_ranks(ranks).slow == (1,)
    ranks = [msg.RankFigures(rank=0, global_iteration=100), msg.RankFigures(rank=1, global_iteration=95)]
    assert read_ranks(ranks).slow == ()


def test_rows_say_what_stands_out_in_words():
    text = "\n".join(rank_lines(four_uneven(), width=42, height=20))
    assert "slowest: rank 2[/], 33% slower, −12 it" in text
    assert "uneven memory: rank 0[/] = 1.36× rank 1" in text
    assert "−12 it" in text.splitlines()[3]  # rank 2's row: behind the leader


def test_narrow_pane_drops_the_loss_column_first():
    wide = rank_lines(two_even(), width=42, height=10)
    narrow = rank_lines(two_even(), width=34, height=10)
    assert "loss" in wide[0] and "behind" in wide[0]
    assert "loss" not in narrow[0] and "it/s" in narrow[0]
    assert all(len(line) <= 34 for line in narrow[1:3])


def test_many_ranks_are_summarised_within_the_height():
    lines = rank_lines(many(), width=42, height=11)
    text = "\n".join(lines)
    assert len(lines) <= 11
    assert "median" in lines[0]
    assert "slowest: rank 17" in text and "uneven memory: rank 42" in text
    rows = [line.split()[0].strip("[]/byelowmagnt") for line in lines[5:-2]]
    assert len(rows) == 3  # rank 0, the slowest, the most memory (the least is rank 0 or like it)


def test_a_short_pane_keeps_the_notes():
    lines = rank_lines(many(), width=42, height=4)
    assert len(lines) == 4 and "slowest" in lines[-2] and "uneven memory" in lines[-1]


# ---------------------------------------------------------------- effective batch size, glossary, log line
def test_effective_batch_size_counts_the_ranks():
    assert effective_text(32, 4, 2) == "32 × 4 × 2 ranks = 256"
    assert effective_text(32, 1, 2) == "32 × 2 ranks = 64"
    assert effective_text(32, 4) == "32 × 4 = 128"
    assert effective_text(32, 1) == "32"


def test_glossary_on_two_ranks():
    rows = dict(glossary(distributed(two_even())))
    assert "split over 2 ranks: 719 each (1 padded duplicate)" in rows["sample"]
    assert "ceil(719 / 32) = 23" in rows["iteration"]
    assert rows["effective batch size"] == ("samples behind one update: b × k × world size = 32 × 4 × 2 = 256"
                                            " (the short last window has fewer)")  # 23 iterations: 5 × 4 + 3
    assert "over all ranks" in rows["samples seen"]
    assert "mean over the 2 ranks" in rows["rank / world size"]


def test_glossary_on_one_rank_is_unchanged():
    rows = dict(glossary(digits_mid_run()))
    assert "rank / world size" not in rows
    assert rows["effective batch size"].startswith("samples behind one update: b × k = 32 × 4 = 128")


def test_progress_line_names_the_world_size_only_when_distributed():
    assert progress_line(distributed(two_even())).endswith(" world_size=2")
    assert "world_size" not in progress_line(digits_mid_run())


# ---------------------------------------------------------------- the app (Pilot)
async def _shown(snapshot: msg.Snapshot, size: tuple[int, int] = (100, 30)) -> tuple[str, str, str, bool, bool]:
    app = TrainmonApp(ScriptedRun(snapshot))
    async with app.run_test(size=size) as pilot:
        app.animation_level = "none"
        await pilot.pause()
        app.poll_engine()
        await pilot.pause(0.1)
        ranks = app.query_one(RanksPane)
        return (str(ranks.render()), str(app.query_one("#accum").render()), str(app.query_one("#loss-values").render()),
                ranks.display, app.query_one(DevicesPane).display)


async def test_two_even_ranks_in_the_devices_place():
    ranks, accum, loss, shown, devices = await _shown(distributed(two_even()))
    assert shown and not devices
    assert "ranks in step · memory even" in ranks
    assert "32 × 4 × 2 ranks = 256" in accum
    assert "mean over 2 ranks" in loss


async def test_four_ranks_straggler_and_memory_at_80x24():
    ranks, *_ = await _shown(distributed(four_uneven()), size=(80, 24))
    lines = ranks.splitlines()
    assert lines[-2:] == ["◂ slowest: rank 2, 33% slower", "◂ uneven memory: rank 0"]  # 34 cells: parts left out
    # the slowest rank's row first, the loss column left out
    assert lines[1].startswith("2      25 −12 it 250.0 61,200")


async def test_sixty_four_ranks_stay_bounded():
    app = TrainmonApp(ScriptedRun(many_snapshot()))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.poll_engine()
        await pilot.pause(0.1)
        pane = app.query_one(RanksPane)
        lines = str(pane.render()).splitlines()
        assert len(lines) <= pane.content_size.height
        assert pane.border_title == "Ranks · 64 on 8 hosts"
        assert "median" in lines[0] and "slowest: rank 17" in lines[-2]


async def test_one_rank_shows_the_devices_pane():
    ranks, accum, loss, shown, devices = await _shown(digits_mid_run())
    assert devices and not shown
    assert "ranks" not in accum and "mean over" not in loss
