"""The `hang` and `straggler` rules over rank beats, the many-ranks summary, and what rank 0 receives with
1,000 ranks (engine/core/rank_health.py, engine/run/rank_watch.py driven by a store in memory)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import msgspec
import pytest

from trainmon.cli.runs import ranks_summary
from trainmon.engine.core.alerts import Alerts, AlertSettings
from trainmon.engine.core.messages import RankFigures
from trainmon.engine.core.rank_health import (
    STRAGGLER_BEATS,
    RankBeat,
    RankJudge,
    stuck_ranks,
    summarize,
)
from trainmon.engine.run.rank_watch import RankWatch, mark_hung
from trainmon.tui.widgets.ranks_pane import rank_lines


def _beats(*rows: tuple) -> list[RankBeat]:
    """`(seq, iteration, holding, phase)` per rank, rank order."""
    return [RankBeat(r, *row) for r, row in enumerate(rows)]


@pytest.mark.parametrize("beats, stuck", [
    # rank 1 asleep in its loader, rank 0 holding its batch (blocked in the backward's all-reduce)
    ([(1, 10, 1, "in_code"), (1, 10, 0, "waiting")], [1]),
    # every rank at the same place: the whole run waits (the `stall` alert's case), no rank named
    ([(1, 10, 1, "in_code"), (1, 10, 1, "in_code")], []),
    # rank 0 saving a checkpoint while rank 1 waits at the agreement: never a hang
    ([(1, 10, 0, "saving"), (1, 10, 1, "in_code")], []),
    # two of four behind
    ([(1, 7, 1, "in_code"), (1, 7, 0, "waiting"), (1, 7, 1, "in_code"), (1, 7, 0, "waiting")], [1, 3]),
    # a rank an iteration behind (accumulation: no all-reduce in the others' backward)
    ([(1, 11, 0, "in_code"), (1, 10, 0, "waiting"), (1, 11, 1, "in_code")], [1]),
])
def test_the_ranks_behind_when_nothing_moves(beats, stuck):
    assert [b.rank for b in stuck_ranks(_beats(*beats))] == stuck


def test_a_rank_behind_while_nothing_moves_hangs_after_the_threshold_and_names_its_host():
    judge = RankJudge(2, hang_after=5.0, hosts=("node-a", "node-b"))
    table = [  # (time, rank 0's beat, rank 1's beat) → findings
        (0.0, (1, 10, 0, "in_code"), (1, 10, 0, "in_code"), []),
        (1.0, (2, 10, 1, "in_code"), (2, 10, 0, "waiting"), []),  # positions moved at 1.0
        (5.0, (6, 10, 1, "in_code"), (6, 10, 0, "waiting"), []),  # 4 s still
        (6.0, (7, 10, 1, "in_code"), (7, 10, 0, "waiting"), [("hang", 1)]),
        (9.0, (8, 10, 1, "in_code"), (8, 10, 0, "waiting"), [("hang", 1)]),
        (10.0, (9, 11, 0, "in_code"), (9, 11, 0, "in_code"), []),  # moving again
    ]
    for now, zero, one, expected in table:
        found = judge.observe(_beats(zero, one), now)
        assert [(f.kind, f.rank) for f in found] == expected, now
    found = RankJudge(2, 5.0, ("node-a", "node-b"))
    found.observe(_beats((1, 3, 1, "in_code"), (1, 3, 0, "waiting")), 0.0)
    [f] = found.observe(_beats((2, 3, 1, "in_code"), (2, 3, 0, "waiting")), 7.0)
    assert f.message == ("rank 1 on node-b has not moved for 7 s at iteration 3 (waiting for its next batch: a "
                         "slow or hung data loader?) while the other ranks wait for it")


def test_a_rank_whose_beats_stop_arriving_hangs():
    judge = RankJudge(3, hang_after=5.0)
    assert judge.observe(_beats((1, 0, 0, "training"), (1, 0, 0, "training"), (1, 0, 0, "training")), 0.0) == []
    for t in range(1, 7):  # rank 2's seq stays at 1; the others beat and move
        beats = _beats((1 + t, 5 * t, 0, "training"), (1 + t, 5 * t, 0, "training"))
        found = judge.observe(beats, float(t))
    assert [(f.kind, f.rank, f.message) for f in found] == [
        ("hang", 2, "rank 2 sent no heartbeat for 6 s (its process hung or gone?)")]
    # a rank whose last beat said it ended is silent, not hung (rank 0 may still save for a while)
    ended = RankJudge(2, hang_after=5.0)
    ended.observe(_beats((1, 9, 0, "training"), (1, 9, 0, "ended")), 0.0)
    assert ended.observe(_beats((2, 9, 0, "saving")), 60.0) == []
    # a rank never heard of counts from the first read
    late = RankJudge(2, hang_after=5.0)
    assert late.observe(_beats((1, 0, 0, "training")), 0.0) == []
    assert [f.rank for f in late.observe(_beats((2, 0, 0, "training")), 5.0)] == [1]


@pytest.mark.parametrize("waits, expected", [
    # beats (of 20) in which each of 3 ranks was waiting for its next batch → stragglers
    ((0, 20, 1), [("straggler", 1)]),  # rank 1 always waits for data, the others wait for rank 1
    ((0, 10, 0), []),  # half the time: 50 % < 60 %
    ((2, 14, 3), [("straggler", 1)]),  # 70 %, the median rank 15 %
    ((12, 20, 14), []),  # every rank input-bound: `input_bound`'s case, no rank named
    ((0, 20, 20), []),  # two of three: the median rank waits as much
])
def test_a_straggler_waits_for_its_data_while_the_others_wait_for_it(waits, expected):
    judge = RankJudge(3, hang_after=30.0)
    found: list = []
    for t in range(STRAGGLER_BEATS):
        beats = [RankBeat(r, t, t, 0 if t < w else 1, "training") for r, w in enumerate(waits)]
        found = judge.observe(beats, float(t))
        if t < STRAGGLER_BEATS - 1:
            assert found == []  # judged over a full window only
    assert [(f.kind, f.rank) for f in found] == expected
    if waits == (0, 20, 1):
        assert found[0].message == ("rank 1 waited for its next batch in 100% of the last 20 s, the median rank in "
                                    "5%: the other ranks wait for it in every collective (a slower data path there?)")


def test_beats_round_trip_and_refuse_foreign_values():
    beat = RankBeat(3, 17, 1200, 1, "waiting", 2)
    assert RankBeat.decode(3, beat.encode()) == beat
    assert len(beat.encode()) == len(b"17 1200 1 waiting 2")
    assert RankBeat.decode(0, b"") is None and RankBeat.decode(0, b"\xff\xfe") is None
    assert RankBeat.decode(0, b"1 2 three waiting 1") is None


@pytest.mark.parametrize("rows, hung, line", [
    ([(0, 100, 5.0), (1, 100, 5.0)], (), "2 ranks: iter 100/100/100 (min/median/max)"),
    ([(0, 100, 5.0), (1, 90, 2.0), (2, 100, 5.1), (3, 99, 4.0)], (1,),
     "4 ranks: iter 90/99.5/100 (min/median/max), slowest 1 3, hung 1"),
    ([(r, 1000 - (r % 7 == 3) * 50, None) for r in range(64)], (),
     "64 ranks: iter 950/1000/1000 (min/median/max), slowest 3 10 17"),
])
def test_many_ranks_read_as_a_few_figures(rows, hung, line):
    assert summarize(rows, hung).line() == line


class MemoryStore:
    """torch.distributed's store API, in memory, counting what a reader receives (TCPStore's framing:
    an 8-byte length before each value)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.received = self.messages = 0

    def set(self, key: str, value: bytes) -> None:
        self.values[key] = value

    def check(self, keys: list[str]) -> bool:
        return all(k in self.values for k in keys)

    def multi_get(self, keys: list[str]) -> list[bytes]:
        self.messages += 1
        out = [self.values[k] for k in keys]
        self.received += sum(8 + len(v) for v in out)
        return out


def _core(rank: int, iteration: int, holding: int, phase: str, emitted: list) -> SimpleNamespace:
    hot = SimpleNamespace(n=0, asked=1.0, handed=2.0 if holding else 0.5)
    core = SimpleNamespace(
        progress=SimpleNamespace(global_iteration=iteration, epoch=1),
        health=SimpleNamespace(hot=hot, liveness=lambda: SimpleNamespace(phase=phase)),
        alerts=Alerts(AlertSettings(hang_after=3.0), clock=lambda: 0.0),
        channel=SimpleNamespace(lock=threading.RLock()), control=SimpleNamespace(status="running"))
    core.alert = lambda kind, message, key="", at=None, rank=None, host=None: (
        core.alerts.fire(kind, key) and emitted.append((kind, rank, host, at, message)))
    return core


def test_what_rank_0_receives_with_1000_ranks():
    """1,000 simulated ranks beat once a second into one store; rank 0 reads them all with one `multi_get`.
    Rank 999 falls asleep in its loader at t=10 while the others hold their batches: one `hang`, naming it."""
    world, store, emitted, clock = 1000, MemoryStore(), [], [0.0]
    hosts = tuple(f"node-{r // 8}" for r in range(world))
    iteration = [0]
    asleep = {"on": False}
    watches = []
    for r in range(world):
        core = _core(r, 0, 0, "training", emitted)
        watches.append(RankWatch(core, store, r, world, hosts, clock=lambda: clock[0]))
    for second in range(20):
        clock[0] = float(second)
        asleep["on"] = second >= 10
        if not asleep["on"]:
            iteration[0] += 15
        for w in reversed(watches):  # rank 0 last: it reads what every rank wrote this second
            p, hot = w.core.progress, w.core.health.hot
            p.global_iteration = iteration[0]
            sleeping = asleep["on"] and w.rank == world - 1
            hot.handed = 0.5 if sleeping else (2.0 if asleep["on"] else 0.5)
            w.core.health.liveness = (lambda s=sleeping: SimpleNamespace(phase="waiting" if s else "in_code"))
            w.beat()
    per_beat = store.received / store.messages
    assert store.messages == 20  # one message a second, whatever the world size
    assert 20_000 < per_beat < 30_000, per_beat  # ~26 B a rank: about 26 kB a second at 1,000 ranks
    assert [(k, r, h, at) for k, r, h, at, _ in emitted] == [("hang", 999, "node-124", 150)]
    # for comparison, what viewers get from rank 0: every rank's figures in each snapshot (≤ 10 a second)
    figures = tuple(RankFigures(r, hosts[r], 150, 15.0, 0.123, 812.5, "host RSS", "cpu") for r in range(world))
    snapshot_ranks = len(msgspec.json.encode(figures))
    assert 100_000 < snapshot_ranks < 200_000, snapshot_ranks
    print(f"\n1,000 ranks: rank 0 receives {per_beat:,.0f} B in 1 multi_get a second from the store; "
          f"the snapshot's ranks part is {snapshot_ranks:,} B (JSON)")


def _figures(r: int, iteration: int = 120, rate: float = 15.0, hung: bool = False) -> RankFigures:
    return RankFigures(r, f"node-{r // 8}", iteration, rate, 0.5, 800.0, "host RSS", "cpu", hung=hung)


def test_the_hung_ranks_are_marked_in_the_snapshot_and_cleared():
    ranks = tuple(_figures(r) for r in range(4))
    marked = mark_hung(ranks, frozenset({1, 3}))
    assert [r.hung for r in marked] == [False, True, False, True]
    assert marked[0] is ranks[0]  # unchanged figures are not copied
    assert [r.hung for r in mark_hung(marked, frozenset())] == [False] * 4


def test_the_ranks_pane_names_the_hung_rank_first_even_among_64():
    ranks = [_figures(r, 120 if r != 41 else 119, 15.0 if r != 41 else 0.0, hung=r == 41) for r in range(64)]
    lines = rank_lines(ranks, width=60, height=12)
    text = "\n".join(lines)
    assert len(lines) <= 12 and "median" in lines[0]
    assert "[b]◂ hung: rank 41[/], the others wait for it" in text
    assert any(line.startswith("[b red]41 node-5 ") for line in lines), lines


def test_ls_json_sums_up_the_ranks():
    ranks = [_figures(r, 120 - (r == 5) * 20, 15.0 - (r == 5) * 10, hung=r == 5) for r in range(64)]
    assert ranks_summary(ranks) == {"world_size": 64, "iteration": [100, 120, 120],
                                    "iterations_per_second": [5.0, 15.0, 15.0], "slowest": [5], "hung": [5]}
    assert ranks_summary([]) is None
