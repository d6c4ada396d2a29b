"""One run over several processes (torchrun, DDP): what a rank's `Trainer` needs besides its own loop.

torchrun starts the processes and sets `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; this module takes
them from there (trainmon never launches ranks itself). Each rank runs the same `Trainer` over its
`DistributedSampler` share with the model wrapped in DDP. Rank 0 alone has a run directory and a
socket; the loop calls `Distributed.agree` at its safe points, which at agreement points (and at
epoch starts, and while paused) runs one small all-gather of each rank's figures plus rank 0's
waiting commands' byte count, and — only when commands wait — one broadcast of their JSON. So
commands apply on every rank at the same global iteration, with no collective per iteration.
Agreement points ride on the publication rate: at each one, rank 0 says how many iterations on the
next one comes (about a tenth of a second of training, 1 to `MAX_EVERY`), and every rank takes that
number, so they stay at the same iterations whatever each one's speed.

Exactness: every rank gets the same number of samples (the sampler pads or drops), so its windows
match the other ranks' window for window; each micro-batch's loss is weighted `n_i / n_window`
within its rank and DDP averages the ranks' gradients, which is the mean loss over the global
window. Where a job reports its own counts, `correction` all-reduces the window's weight (once per
optimizer step) so the share is global too.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Optional, Sequence

import msgspec
import torch
import torch.distributed as dist

from trainmon.engine.core import messages as msg
from trainmon.engine.core.distributed_plan import rank_samples
from trainmon.engine.run.rank_watch import mark_hung

AGREEMENTS_PER_SECOND = 10  # about the publication rate: figures and commands need no more
MAX_EVERY = 64  # iterations between two agreements at most (a fast model: ~15 a second)
_COMMANDS = msgspec.json.Decoder(list[msg.AnyCommand])
# the row each rank contributes to an agreement (float64; NaN for "none"); rank 0's `_NEXT` is the
# number of iterations to the next agreement, which every rank then takes
_ITERATION, _SPEED, _LOSS, _MEMORY, _STOP, _COMMAND_BYTES, _NEXT = range(7)


@dataclass(frozen=True)
class RankEnv:
    """Where this process stands in a torchrun job: `rank` of `world_size`, `local_rank` on its node."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Optional["RankEnv"]:
        """From torchrun's environment; `None` outside torchrun or with a world size of 1 (a plain run)."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
            rank = int(environ["RANK"]) if "RANK" in environ else None
        except ValueError:
            return None
        if world <= 1 or rank is None:
            return None
        return cls(rank, world, int(environ.get("LOCAL_RANK", "0") or 0))


def rank_device(env: RankEnv, choice: str) -> torch.device:
    """This rank's device: `cuda:LOCAL_RANK` for "auto"/"cuda" where CUDA is available (one GPU per
    process, torchrun's convention), else the device asked for (`resolve_device`'s checks)."""
    from trainmon.engine.jobs.job import resolve_device

    if choice in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", env.local_rank)
    return resolve_device(choice)


class Distributed:
    """This rank's part in a distributed run: the process group, the sampler, DDP, and the agreements.

    `start()` initialises the process group (NCCL on CUDA, gloo otherwise). The loop asks `due()`
    whether this safe point is an agreement point and hands its commands to `agree()`; `ranks` holds
    every rank's `RankFigures` from the last agreement (rank order), `decorate` turns a rank's
    snapshot into the run's. Raises nothing of its own: a peer that died makes a collective raise,
    and the loop's failure path asks `failed()` for the root cause.
    """

    def __init__(self, env: RankEnv, device: torch.device, failure_dir: Optional[str] = None) -> None:
        self.env, self.device = env, device
        self._next = 0  # the global iteration of the next agreement point
        self.failure_dir = failure_dir
        self.host = socket.gethostname()
        self.ranks: tuple[msg.RankFigures, ...] = ()
        self._outbox: list[Any] = []  # rank 0: commands from viewers, until the next agreement
        self._stop_wanted = False  # a signal asked this rank to stop (torchrun forwards SIGTERM to every rank)
        self._labels: list[tuple[str, str]] = [("", "")] * env.world_size  # (host, device) of each rank
        self.samples: Optional[int] = None  # m, the whole training set
        self.padded = 0  # the sampler's duplicates per epoch, over all ranks
        self._process = None
        self.hung: frozenset[int] = frozenset()  # the ranks rank 0's watch finds hung (rank_watch.py)

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def hosts(self) -> tuple[str, ...]:
        """Each rank's host name, rank order (empty names before `start` asked them)."""
        return tuple(host for host, _ in self._labels)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that records the run, serves viewers and saves checkpoints."""
        return self.env.rank == 0

    # ---- process group ---------------------------------------------------------------------
    @classmethod
    def start(cls, env: RankEnv, device_choice: str = "auto", failure_dir: Optional[str] = None,
              timeout_s: float = 1800.0) -> "Distributed":
        """Join torchrun's process group (blocks until every rank joined) on this rank's device.
        `timeout_s` bounds a collective; pauses never reach it (rank 0 heartbeats every 0.2 s)."""
        device = rank_device(env, device_choice)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                                    timeout=timedelta(seconds=timeout_s))
        joined = cls(env, device, failure_dir)
        labels = joined.gather_bytes(json.dumps([joined.host, str(device)]).encode())  # once: who runs where
        joined._labels = [tuple(json.loads(raw)) for raw in labels]
        return joined

    def close(self) -> None:
        """Leave the process group (after the run's last agreement; the rank watch ends first). A DDP wrapper
        no longer referenced (a Trainer's, in reference cycles) is collected first: its reducer holds the
        group, which would otherwise be torn down with its gloo threads in the interpreter's own end (a
        rank then died of SIGABRT after its run had finished)."""
        watch, self.watch = getattr(self, "watch", None), None  # it holds the run's core, the loop, its DDP
        if watch is not None:
            watch.stop()
        del watch
        gc.collect()
        if dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's `data`, rank order (two all-gathers: lengths, then the padded bytes)."""
        device = self._comm_device
        length = torch.tensor([len(data)], dtype=torch.int64, device=device)
        lengths = [torch.zeros_like(length) for _ in range(self.world_size)]
        dist.all_gather(lengths, length)
        size = max(int(n.item()) for n in lengths)
        buf = torch.zeros(size, dtype=torch.uint8, device=device)
        buf[:len(data)] = torch.tensor(list(data), dtype=torch.uint8)
        bufs = [torch.zeros_like(buf) for _ in range(self.world_size)]
        dist.all_gather(bufs, buf)
        return [bytes(b[:int(n.item())].cpu().tolist()) for b, n in zip(bufs, lengths)]

    def broadcast_bytes(self, data: bytes, size: int) -> bytes:
        """Rank 0's `data` of `size` bytes (every rank knows `size` already) on every rank."""
        buf = torch.zeros(size, dtype=torch.uint8, device=self._comm_device)
        if self.is_main:
            buf[:] = torch.tensor(list(data), dtype=torch.uint8)
        dist.broadcast(buf, src=0)
        return bytes(buf.cpu().tolist())

    def share_text(self, text: str) -> str:
        """Rank 0's `text` on every rank (a run directory's path in a headless torchrun run)."""
        return self.gather_bytes(text.encode() if self.is_main else b"")[0].decode()

    # ---- data and model --------------------------------------------------------------------
    def per_rank_samples(self, samples: int, drop_last: bool) -> int:
        """Samples each rank's loader gets from a training set of `samples` (padding included);
        remembers `samples` and the padding for the run's snapshot. Raises `PlanError` without a length."""
        per_rank, self.padded = rank_samples(samples, self.world_size, drop_last)
        self.samples = samples
        return per_rank

    def sampler(self, dataset: Any, shuffle: bool, seed: int, drop_last: bool, epoch: int) -> Any:
        """This rank's `DistributedSampler`, seeded with the run's seed and set to 0-based `epoch`
        (a new order each epoch, the same on every rank)."""
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
        return sampler

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` in DDP (its construction copies rank 0's parameters to every rank)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    @staticmethod
    def grad_sync(ddp: Any, last_in_window: bool) -> Any:
        """The context for one micro-batch's forward and backward: DDP's `no_sync` except on the window's
        last micro-batch, so gradients are all-reduced once per optimizer step."""
        return contextlib.nullcontext() if last_in_window else ddp.no_sync()

    def correction(self, window: Any, counted: bool) -> Optional[float]:
        """The factor for the (already averaged) gradients at a step. Sample weights with a known length
        are exact per rank and equal across ranks: `None`. With a job's own counts (`counted`), the
        window's weight is summed over ranks (one all-reduce per step) so each count's share is global."""
        if not counted:
            return window.correction()
        total = torch.tensor([window.weight], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(total)
        planned = window.expected * self.world_size
        weight = float(total.item())
        return planned / weight if weight > 0 and weight != planned else None

    # ---- agreements --------------------------------------------------------------------------
    def due(self, global_iteration: int) -> bool:
        """This safe point (after `global_iteration` iterations, the same on every rank) is an agreement."""
        return global_iteration >= self._next

    @staticmethod
    def spacing(iterations_per_second: Optional[float]) -> int:
        """Iterations to the next agreement at this speed: about 1/`AGREEMENTS_PER_SECOND` s, 1..`MAX_EVERY`."""
        if iterations_per_second is None or not math.isfinite(iterations_per_second):
            return 1
        return max(1, min(MAX_EVERY, int(iterations_per_second / AGREEMENTS_PER_SECOND)))

    def agree(self, local: Sequence[Any], figures: tuple, force: bool = False) -> list[Any]:
        """Queue this rank's `local` commands and, at an agreement point (`force`, else `due`), agree on
        them with every rank; the commands every rank applies now, in rank 0's order (empty between
        agreements). `figures`: `(global_iteration, iterations/s, last loss)` of this rank.

        Rank 0's commands come from viewers; another rank's only from a signal (a `Stop`), which
        becomes a flag: a stop asked of any rank stops every rank."""
        for command in local:
            if self.is_main:
                self._outbox.append(command)
            elif isinstance(command, msg.Stop):
                self._stop_wanted = True
        iteration = int(figures[0])
        if not force and not self.due(iteration):
            return []
        payload = msgspec.json.encode(self._outbox) if self.is_main and self._outbox else b""
        memory, _ = self._memory()
        row = torch.tensor([iteration, _num(figures[1]), _num(figures[2]), _num(memory),
                            float(self._stop_wanted), float(len(payload)), float(self.spacing(figures[1]))],
                           dtype=torch.float64, device=self._comm_device)
        rows = [torch.zeros_like(row) for _ in range(self.world_size)]
        dist.all_gather(rows, row)
        table = torch.stack(rows).cpu().tolist()
        self.ranks = tuple(self._figures(r, values) for r, values in enumerate(table))
        self._next = iteration + int(table[0][_NEXT])  # rank 0's word: the same point on every rank
        size = int(table[0][_COMMAND_BYTES])
        commands: list[Any] = []
        if size:
            commands = _COMMANDS.decode(self.broadcast_bytes(payload, size))
        self._outbox = []
        if any(values[_STOP] for values in table) and not any(isinstance(c, msg.Stop) for c in commands):
            commands.append(msg.Stop())
        self._stop_wanted = False
        return commands

    def _figures(self, rank: int, values: list[float]) -> msg.RankFigures:
        host, device = self._labels[rank]
        return msg.RankFigures(
            rank=rank, host=host, global_iteration=int(values[_ITERATION]),
            iterations_per_second=_opt(values[_SPEED]), loss=_opt(values[_LOSS]),
            memory_mib=_opt(values[_MEMORY]), memory_source=self._memory_source(device), device=device)

    @staticmethod
    def _memory_source(device: str) -> str:
        return "torch allocated" if device.startswith("cuda") else "host RSS"

    def _memory(self) -> tuple[Optional[float], str]:
        """This rank's memory in MiB: torch's allocated bytes on CUDA (no sync), the process's RSS otherwise."""
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20, "torch allocated"
        try:
            import psutil

            if self._process is None:
                self._process = psutil.Process()
            return self._process.memory_info().rss / 2**20, "host RSS"
        except Exception:  # noqa: BLE001 - telemetry never breaks a run
            return None, "host RSS"

    # ---- the run's snapshot ------------------------------------------------------------------
    def decorate(self, snapshot: msg.Snapshot) -> msg.Snapshot:
        """A rank's snapshot as the run's: `world_size` and `ranks` (from the last agreement), the loss as
        the mean of the ranks' last losses, samples over all ranks with the sampler's padding left out
        (`distributed_plan`'s count: W · per-rank − padded per epoch), `dataset_size` m and the
        effective batch size b · k · W. Iterations, steps and windows stay per rank (every rank runs
        the same counts)."""
        W = self.world_size
        losses = [r.loss for r in self.ranks if r.loss is not None]
        s = snapshot
        total = None if s.total_samples is None else W * s.total_samples - self.padded * s.epochs
        return msgspec.structs.replace(
            s, world_size=W, ranks=mark_hung(self.ranks, self.hung), loss=sum(losses) / len(losses) if losses else s.loss,
            samples_seen=self.samples_seen(s.samples_seen, s.epoch, s.iteration_in_epoch, s.iterations_in_epoch),
            total_samples=total,
            samples_per_second=None if s.samples_per_second is None else W * s.samples_per_second,
            dataset_size=self.samples if self.samples is not None else s.dataset_size,
            effective_batch_size=s.effective_batch_size * W)

    def samples_seen(self, rank_samples: int, epoch: int, iteration_in_epoch: int, iterations: Optional[int]) -> int:
        """Real samples trained on over all ranks, from this rank's count `rank_samples` after
        `iteration_in_epoch` of the `iterations` of 1-based `epoch`: W times it, less the sampler's
        padding of each epoch whose last batch (where the duplicates sit) has run."""
        ended = max(0, epoch - 1) + (1 if epoch and iterations is not None and iteration_in_epoch >= iterations else 0)
        return self.world_size * rank_samples - self.padded * ended


def _num(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def _opt(value: float) -> Optional[float]:
    return None if math.isnan(value) else value
