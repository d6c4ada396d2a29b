"""Every rank's heartbeat through torch.distributed's store, and rank 0's watch over them: `hang`, `straggler`.

A thread of its own on every rank (never the loop's: when one rank sleeps, the others' loops block in the
next collective) writes the rank's `RankBeat` to the store torchrun's rendezvous gives, about once a
second: one `set` of ~20 bytes, no collective, nothing on the hot path. Rank 0's thread then reads every
rank's beat with one `multi_get` and judges them (engine/core/rank_health.py), raising `hang` / `straggler`
named by rank and host through the run core, and clearing them when they end.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
from typing import Any, Callable, Optional, Sequence

import msgspec

from trainmon.engine.core.rank_health import ENDED, HANG_AFTER, RankBeat, RankJudge
from trainmon.engine.core.status import RunStatus

PREFIX = "trainmon/beat/"  # the store's keys: one per rank
HOSTS = "trainmon/host/"  # each rank's host name, written once (when the caller does not know them)
BEAT_EVERY = 1.0  # seconds between two beats


def default_store() -> Any:
    """The process group's store (torchrun's TCPStore behind a PrefixStore), or `None` without one."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()  # private, but the one store every rank already shares
    except Exception:  # noqa: BLE001 - no store: no rank watch, the run goes on
        return None


class RankWatch:
    """This rank's beat writer and, on rank 0, the judge (see the module docstring).

    `core`: this rank's `RunCore` (its `health` gives the phase and the hot stamps); `store`: anything with
    `set(key, bytes)`, `check(keys)` and `multi_get(keys)`, or `None`: the process group's, looked for at
    each beat until there is one (a tracked script may join its group after `track()`); `hosts`: each
    rank's host name (rank order), or `()`: exchanged through the store once.
    `start()` returns it; it ends with the run's final status or `stop()`; it never raises into the run."""

    def __init__(self, core: Any, store: Any, rank: int, world_size: int, hosts: Sequence[str] = (),
                 interval: float = BEAT_EVERY, hang_after: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_hung: Optional[Callable[[frozenset[int]], None]] = None) -> None:
        self.core, self.store, self.rank, self.world_size = core, store, rank, world_size
        self.interval, self.clock, self.on_hung = interval, clock, on_hung
        self.host = socket.gethostname()
        settings = getattr(core.alerts, "settings", None)
        after = hang_after or getattr(settings, "hang_after", None) or HANG_AFTER
        self.judge = RankJudge(world_size, after, tuple(hosts))
        self._keys = [f"{PREFIX}{r}" for r in range(world_size)]
        self._host_keys = [] if hosts else [f"{HOSTS}{r}" for r in range(world_size)]
        self._host_written = False
        self._present = False  # rank 0: every key written once (`multi_get` of a missing key would block)
        self._seq = 0
        self._stop = threading.Event()
        self._raised: set[tuple[str, int]] = set()
        self.hung: frozenset[int] = frozenset()

    def start(self) -> "RankWatch":
        self._thread = threading.Thread(target=self._run, name="trainmon-rank-watch", daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # never left inside a store call while the interpreter ends (SIGABRT)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch and wait (at most `timeout` seconds) for its last beat: before the process group
        is left or the process ends, so no store call is cut off under it."""
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        atexit.unregister(self.stop)  # the exit handler held the watch, its core and the loop (a rank's DDP
        # model and process group) to the interpreter's end, where gloo's threads were torn down (SIGABRT)

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not RunStatus(self.core.control.status).final:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a store that went away (the run ends) never breaks the run
                pass
        try:  # a last beat says this rank ended: its silence from now on is no hang
            if self.store is not None:
                self.store.set(self._keys[self.rank], self.own_beat(ENDED).encode())
        except Exception:  # noqa: BLE001 - the store may be gone with the run
            pass

    def own_beat(self, phase: Optional[str] = None) -> RankBeat:
        """This rank's beat now, from the stamps its loop leaves (floats and ints, read without a lock);
        `phase`: instead of the loop's."""
        core = self.core
        health, p = core.health, core.progress
        hot = health.hot
        self._seq += 1
        return RankBeat(self.rank, self._seq, p.global_iteration + hot.n, int(hot.handed > hot.asked),
                        phase or health.liveness().phase, p.epoch)

    def beat(self) -> None:
        """Write this rank's beat; on rank 0, read every rank's and raise or clear alerts."""
        if self.store is None:
            self.store = default_store()
            if self.store is None:
                return
        if self._host_keys and not self._host_written:
            self.store.set(self._host_keys[self.rank], self.host.encode())
            self._host_written = True
        self.store.set(self._keys[self.rank], self.own_beat().encode())
        if self.rank != 0:
            return
        if not self._present:
            self._present = bool(self.store.check(self._keys + self._host_keys))
            if not self._present:
                return
            if self._host_keys:
                self.judge.hosts = tuple(bytes(h).decode(errors="replace") for h in self.store.multi_get(self._host_keys))
        raws = self.store.multi_get(self._keys)
        beats = [b for r, raw in enumerate(raws) if (b := RankBeat.decode(r, bytes(raw))) is not None]
        self.raise_alerts(self.judge.observe(beats, self.clock()))

    def raise_alerts(self, findings: Sequence[Any]) -> None:
        """Alert for each finding (once while it lasts, through the core); clear the ones that ended."""
        core = self.core
        now = {(f.kind, f.rank) for f in findings}
        with core.channel.lock:
            for f in findings:
                beat = self.judge.last.get(f.rank)
                core.alert(f.kind, f.message, key=str(f.rank), at=beat.iteration if beat else None, rank=f.rank,
                           host=self.judge.host(f.rank) or None)
            for kind, rank in self._raised - now:
                core.alerts.clear(kind, str(rank))
            hung = frozenset(rank for kind, rank in now if kind == "hang")
            if hung != self.hung and self.on_hung is not None:
                self.on_hung(hung)
        self._raised, self.hung = now, hung


def mark_hung(ranks: Sequence[Any], hung: frozenset[int]) -> tuple[Any, ...]:
    """`ranks` (`RankFigures`) with `hung` set on the ranks in `hung` and cleared on the others."""
    return tuple(r if r.hung == (r.rank in hung) else msgspec.structs.replace(r, hung=r.rank in hung) for r in ranks)


def _marker(core: Any, dist: Any) -> Callable[[frozenset[int]], None]:
    """What rank 0 does when the hung ranks change: its next snapshots mark them, and the last one at once
    (the heartbeat republishes it while the loop is blocked in a collective)."""

    def on_hung(hung: frozenset[int]) -> None:
        dist.hung = hung
        last = core.last_snapshot
        if last is not None and last.ranks:
            core.last_snapshot = msgspec.structs.replace(last, ranks=mark_hung(last.ranks, hung))

    return on_hung


def watch_tracked(core: Any, environ: Any = None) -> Optional[RankWatch]:
    """Start the watch of a tracked loop's rank (`track()`, the callbacks) when torchrun's environment
    says there are several; `None` otherwise. The store is the process group's, once the script made one."""
    import os

    env = os.environ if environ is None else environ
    try:
        rank, world = int(env.get("RANK", "0") or 0), int(env.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return None
    if world <= 1 or "RANK" not in env:
        return None
    return RankWatch(core, None, rank, world).start()


def watch_ranks(core: Any, dist: Any) -> Optional[RankWatch]:
    """Start this rank's watch over `dist`'s (a `Distributed`) default store; `None` without a store."""
    store = default_store()
    if store is None:
        return None
    on_hung = _marker(core, dist) if dist.rank == 0 else None
    watch = RankWatch(core, store, dist.rank, dist.world_size, dist.hosts, on_hung=on_hung).start()
    dist.watch = watch  # `Distributed.close` ends it before leaving the process group
    return watch
