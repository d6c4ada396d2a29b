"""The `hang` and `straggler` rules over the ranks' heartbeats, and the few figures that sum up many ranks.

Under torchrun every rank's heartbeat leaves a `RankBeat` in torch.distributed's store about once a second
(engine/run/rank_watch.py); rank 0's watch reads them all and feeds them here. Torch-free: the rules are
tested by tables, and a simulation with 1,000 ranks measures what rank 0 receives.

A rank's *position* is its completed iterations doubled, plus one while it holds a batch it has not
finished: when one rank sleeps in its data loader, the others block in the next collective with their
batch in hand, so the sleeper is the one rank behind although no rank's iteration count moves.

A straggler cannot fall iterations behind under DDP (every backward waits for every rank), and beats
written up to a second apart cannot compare sub-second lags; what sets it apart is where its time goes:
sampled at each beat, it is waiting for its next batch far more often than the median rank, whose time
goes to waiting for it inside the collectives instead. A rank slow in its compute (a slower GPU) looks
like the others from here; the Ranks pane's it/s from the agreements is the place to see that.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional, Sequence

HANG_AFTER = 30.0  # seconds a rank may fall silent, or stay behind while no rank moves, before `hang`
STRAGGLER_BEATS = 20  # beats (about 20 s) over which a rank's data wait is judged
STRAGGLER_SHARE = 0.6  # waiting for its data in at least this share of them: `straggler`, when it is also
STRAGGLER_MARGIN = 0.4  # this much above the median rank's share (every rank input-bound: `input_bound`'s case)
ENDED = "ended"  # a rank's last beat: its run ended (the others may still save, validate, finish)
EXCUSED = ("paused", "validating", "saving", "starting", ENDED)  # phases that are never a hang


@dataclass(frozen=True)
class RankBeat:
    """One rank's heartbeat: `seq` counts its beats, `iteration` its completed iterations (global),
    `holding` 1 while it holds a batch it has not finished, `phase` its liveness phase, `epoch` 1-based."""

    rank: int
    seq: int
    iteration: int
    holding: int = 0
    phase: str = "training"
    epoch: int = 0

    @property
    def position(self) -> int:
        return 2 * self.iteration + self.holding

    def encode(self) -> bytes:
        """The store value, a few ASCII fields (about 20 bytes)."""
        return f"{self.seq} {self.iteration} {self.holding} {self.phase} {self.epoch}".encode()

    @classmethod
    def decode(cls, rank: int, raw: bytes) -> Optional["RankBeat"]:
        """The beat in `raw`, `None` when it is not one (an empty or foreign value)."""
        try:
            seq, iteration, holding, phase, epoch = raw.decode().split()
            return cls(rank, int(seq), int(iteration), int(holding), phase, int(epoch))
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass(frozen=True)
class Finding:
    """A rank that looks unhealthy now: `kind` `hang` or `straggler`, a one-line `message`."""

    kind: str
    rank: int
    message: str


@dataclass
class RankJudge:
    """Rank 0's view of every rank's beats over time (its own monotonic clock: hosts' clocks never meet).

    `observe(beats, now)` takes the beats read at `now` (seconds) and returns what holds now: `hang` for a
    rank whose beats stopped arriving for `hang_after` s, or — while no rank's position moved for
    `hang_after` s — for the ranks behind the others (excused phases aside); `straggler` for a rank found
    waiting for its next batch in ≥ `STRAGGLER_SHARE` of the last `STRAGGLER_BEATS` reads, `STRAGGLER_MARGIN`
    above the median rank's share, while the run moves.
    """

    world_size: int
    hang_after: float = HANG_AFTER
    hosts: Sequence[str] = ()
    _seq_at: dict[int, tuple[int, float]] = field(default_factory=dict)  # rank → (seq, when it last changed)
    _moved: tuple[tuple[int, ...], float] = ((), 0.0)  # every rank's position, when any last changed
    _waiting: dict[int, list[bool]] = field(default_factory=dict)
    last: dict[int, RankBeat] = field(default_factory=dict)

    def host(self, rank: int) -> str:
        return self.hosts[rank] if rank < len(self.hosts) else ""

    def observe(self, beats: Sequence[RankBeat], now: float) -> list[Finding]:
        for b in beats:
            seen = self._seq_at.get(b.rank)
            if seen is None or seen[0] != b.seq:
                self._seq_at[b.rank] = (b.seq, now)
            self.last[b.rank] = b
        for rank in range(self.world_size):  # a rank not heard of yet counts from the first read
            self._seq_at.setdefault(rank, (-1, now))
        found: list[Finding] = []
        silent = {r for r, (_, at) in self._seq_at.items() if now - at >= self.hang_after
                  and not (r in self.last and self.last[r].phase == ENDED)}
        for r in sorted(silent):
            found.append(Finding("hang", r, f"rank {r}{_on(self.host(r))} sent no heartbeat for "
                                            f"{now - self._seq_at[r][1]:.0f} s (its process hung or gone?)"))
        known = [self.last[r] for r in sorted(self.last)]
        positions = tuple(b.position for b in known)
        if positions != self._moved[0]:
            self._moved = (positions, now)
        still = now - self._moved[1]
        if len(known) == self.world_size and still >= self.hang_after:
            for b in stuck_ranks(known):
                if b.rank not in silent:
                    found.append(Finding("hang", b.rank, hang_message(b, self.host(b.rank), still)))
        elif len(known) == self.world_size:
            found.extend(self._stragglers(known))
        return found

    def _stragglers(self, known: Sequence[RankBeat]) -> list[Finding]:
        shares = {}
        for b in known:
            history = self._waiting.setdefault(b.rank, [])
            history.append(not b.holding and b.phase not in EXCUSED)  # asked for its next batch, not given yet
            del history[:-STRAGGLER_BEATS]
            shares[b.rank] = sum(history) / STRAGGLER_BEATS if len(history) == STRAGGLER_BEATS else None
        if any(s is None for s in shares.values()):
            return []  # judged over a full window only
        median = statistics.median(shares.values())
        return [Finding("straggler", r, f"rank {r}{_on(self.host(r))} waited for its next batch in {s:.0%} of "
                                        f"the last {STRAGGLER_BEATS} s, the median rank in {median:.0%}: the "
                                        f"other ranks wait for it in every collective (a slower data path there?)")
                for r, s in shares.items() if s >= STRAGGLER_SHARE and s - median >= STRAGGLER_MARGIN]


def stuck_ranks(beats: Sequence[RankBeat]) -> list[RankBeat]:
    """The ranks behind the others when no rank moves: those at the lowest position, when not every rank
    is there (all equal: the whole run waits, the `stall` alert's case); excused phases never count."""
    lowest = min(b.position for b in beats)
    behind = [b for b in beats if b.position == lowest]
    if len(behind) == len(beats) or any(b.phase in EXCUSED for b in beats):
        return []
    return behind


def hang_message(b: RankBeat, host: str, still: float) -> str:
    return (f"rank {b.rank}{_on(host)} has not moved for {still:.0f} s at iteration {b.iteration} "
            f"({_doing(b.phase)}) while the other ranks wait for it")


def _doing(phase: str) -> str:
    return {"waiting": "waiting for its next batch: a slow or hung data loader?",
            "in_code": "inside its iteration",
            "stalled": "stalled",
            }.get(phase, f"phase {phase}")


def _on(host: str) -> str:
    return f" on {host}" if host else ""


# ---- many ranks at a glance ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RankSummary:
    """min / median / max of the ranks' iterations and it/s, the `k` slowest ranks (slowest first) and
    the hung ranks: what `ls` and the Ranks pane show first, whatever the world size."""

    world_size: int
    iterations: tuple[int, float, int]
    rates: Optional[tuple[float, float, float]]
    slowest: tuple[int, ...]
    hung: tuple[int, ...] = ()

    def line(self) -> str:
        """`64 ranks: iter 118/120/121 (min/median/max), slowest 7 3 40, hung 7` (one line, `ls`)."""
        lo, mid, hi = self.iterations
        text = f"{self.world_size} ranks: iter {lo}/{mid:g}/{hi} (min/median/max)"
        if self.slowest:
            text += ", slowest " + " ".join(map(str, self.slowest))
        if self.hung:
            text += ", hung " + " ".join(map(str, self.hung))
        return text


def summarize(iterations: Sequence[tuple[int, int, Optional[float]]], hung: Sequence[int] = (), k: int = 3,
              ) -> Optional[RankSummary]:
    """The summary of `(rank, global_iteration, iterations/s or None)` rows; `None` for no rows. The
    slowest are the `k` lowest by it/s (where known), then by iteration, ties by rank."""
    if not iterations:
        return None
    counts = [it for _, it, _ in iterations]
    rates = [r for _, _, r in iterations if r is not None]
    order = sorted(iterations, key=lambda row: (row[2] if row[2] is not None else float("inf"), row[1], row[0]))
    median = statistics.median(counts) if len(set(counts)) > 1 or rates else None
    slow = tuple(r for r, it, rate in order[:k] if len(iterations) > 1 and (
        (rate is not None and rates and rate < statistics.median(rates)) or (median is not None and it < median)))
    return RankSummary(len(iterations), (min(counts), statistics.median(counts), max(counts)),
                       (min(rates), statistics.median(rates), max(rates)) if rates else None,
                       slow, tuple(sorted(hung)))
