"""The run as key=value text lines: one per epoch, progress, summary. Pure formatting of events.

Used by headless mode (cli/headless.py) and by the TUI, which prints the summary once the terminal
is back. Every number in them is written by engine/core/format.py. No torch, no textual.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import (
    count_of,
    duration,
    figures,
    general,
    mebibytes,
    metric,
    mib,
    planned_epochs,
    rate,
    seconds,
)
from trainmon.engine.core.rates import rate_fields
from trainmon.engine.core.throughput import throughput_fields


def metric_fields(metrics: dict, prefix: str = "val_") -> str:
    return "".join(f" {prefix}{name}={metric(value)}" for name, value in metrics.items())


def epoch_line(e: msg.EpochEnded) -> str:
    """`epoch=2/5 iterations=45/45 steps=45 samples=2874 train_loss=... val_loss=... val_acc=... batch_size=32
    accum=1 lr=0.05 elapsed=3.2s` plus global counters and the non-finite count (`nonfinite=44/45`), then where the
    loop's time went (`data_wait=0.62 monitor=0.004`), memory peaks, rates and the throughput (`samples_per_s=`, `tokens_per_s=`,
    `mfu=` where known)."""
    return (
        f"epoch={count_of(e.epoch, planned_epochs(e.epoch, e.epochs))} iterations={count_of(e.iterations, e.iterations_planned)}"
        f" steps={e.steps} samples={e.samples_seen}"
        f" train_loss={metric(e.train_loss)} val_loss={metric(e.val_loss)}{metric_fields(e.val_metrics)}"
        f" batch_size={e.batch_size} accum={e.accum} lr={general(e.lr)} elapsed={seconds(e.elapsed)}"
        f" global_iteration={e.global_iteration} global_step={e.global_step} nonfinite={nonfinite_of(e)}"
        f"{time_fields(e.data_wait, e.monitor)}"
        f"{peak_fields(e.peak_memory)}"
        f"{f' steps_skipped={e.steps_skipped}' if e.steps_skipped else ''}"  # fp16's scaler skipped some
        f"{rate_fields(e.lr, e.learning_rates, e.grad_norm, with_lr=False)}"
        f"{throughput_fields(e.throughput)}"  # new fields go last (README: Headless mode)
    )


def nonfinite_of(e: msg.EpochEnded) -> str:
    """`nonfinite=`'s value: `0`, or `44/45` (44 of the epoch's 45 losses read were NaN or Inf), so that an epoch
    whose `train_loss` is the mean of its few finite losses, or `n/a` when none was, reads as the unhealthy
    epoch it is (docs/health.md); the bare count for an event from before the epoch counted its losses."""
    if e.nonfinite and e.train_losses:
        return f"{e.nonfinite}/{e.train_losses}"
    return str(e.nonfinite)


def time_fields(data_wait: Optional[float], monitor: Optional[float]) -> str:
    """` data_wait=0.62 monitor=0.004`: where the epoch's loop time went (shares, 0 to 1); "" unmeasured."""
    if data_wait is None:
        return ""
    return f" data_wait={data_wait:.2f} monitor={'-' if monitor is None else f'{monitor:.3f}'}"


def peak_fields(peak: Optional[dict]) -> str:
    """` peak_rss_source=VmHWM peak_rss_mib=412 peak_gpu_mib=7310` from a sampler's epoch peak. RSS:
    exact (`VmHWM`) or `sampled` (a lower bound), the source first so that `peak_rss_mib` stays last
    on a CPU; GPU: NVML used, the highest device's."""
    if not peak:
        return ""
    rss, source = peak.get("host_rss_mib"), peak.get("host_rss_peak_source")
    gpus = peak.get("gpu_memory_used_mib") or {}
    text = (f" peak_rss_source={source}" if source else "") + f" peak_rss_mib={mib(rss)}"
    if gpus:
        text += f" peak_gpu_mib={mib(max(gpus.values()))}"
    return text


def progress_line(s: msg.Snapshot) -> str:
    return (
        f"progress epoch={count_of(s.epoch, planned_epochs(s.epoch, s.epochs))}"
        f" iteration={count_of(s.iteration_in_epoch, s.iterations_in_epoch)}"
        f" global_iteration={s.global_iteration} loss={metric(s.loss)} it_per_s={rate(s.iterations_per_second)}"
        f" elapsed={seconds(s.elapsed)} eta={duration(s.eta_seconds)}{rate_fields(s.lr, s.learning_rates, s.grad_norm)}"
        + (f" world_size={s.world_size}" if s.world_size > 1 else "")  # loss is then the mean over ranks
        + throughput_fields(s.throughput)  # samples_per_s=, tokens_per_s=, mfu= (engine/core/throughput.py)
    )


def epochs_done(s: msg.Snapshot) -> int:
    """Completed epochs, the one meaning of "epochs done" (`ls`, `finished/stopped epochs=N` in `logs` and
    headless output, export's Finished record): the current epoch counts once all its planned iterations
    ran, so a stop in epoch 7 of 400 leaves 6 done. With an unknown epoch length an ended run's last epoch
    counts, as the engine's `epochs_completed` counts it (it cannot tell a cut-short stream)."""
    if s.epoch <= 0:
        return 0
    n = s.iterations_in_epoch
    if (s.iteration_in_epoch >= n) if n is not None else s.status in (msg.FINISHED, msg.STOPPED):
        return s.epoch
    return s.epoch - 1


def summary_line(f: msg.Finished) -> str:
    word = "stopped" if f.stopped else "finished"
    return (
        f"{word} epochs={f.epochs_completed} iterations={f.global_iteration} steps={f.global_step}"
        f" samples={f.samples_seen} train_loss={metric(f.train_loss)} val_loss={metric(f.val_loss)}"
        f"{metric_fields(f.val_metrics)} elapsed={seconds(f.elapsed)}"
    )


def checkpoint_line(c: msg.CheckpointSaved) -> str:
    """`checkpoint_saved reason="epoch end" epoch=3 iteration_in_epoch=45 epoch_complete=true
    global_iteration=135 size_mib=0.118 seconds=0.0123 path="..."` (size in MiB, the save's duration in s)."""
    return (
        f"checkpoint_saved reason={quote(c.reason)} epoch={c.epoch} iteration_in_epoch={c.iteration_in_epoch}"
        f" epoch_complete={'true' if c.epoch_complete else 'false'} global_iteration={c.global_iteration}"
        f" size_mib={mebibytes(c.size)} seconds={figures(c.seconds)} path={quote(c.path)}"
    )


def resume_line(r: msg.RunResumed) -> str:
    """`resumed_from_checkpoint epoch=3 iteration_in_epoch=20 global_iteration=110 lost_iterations=7 path="..."`,
    then `skipped=[...]` and `changes=[...]` (JSON lists of one-line strings) when there are any. Its first
    word differs from `resumed`, the line of an un-paused run."""
    line = (f"resumed_from_checkpoint epoch={r.epoch} iteration_in_epoch={r.iteration_in_epoch}"
            f" global_iteration={r.global_iteration} lost_iterations={r.lost_iterations} path={quote(r.path)}")
    if r.skipped:
        line += f" skipped={quote_list(r.skipped)}"
    if r.changes:
        line += f" changes={quote_list(r.changes)}"
    return line


def event_line(event: object) -> Optional[str]:
    """The key=value line for an event in headless output and `trainmon logs`, or None for events
    that have no line of their own (epoch starts, accepted commands)."""
    if isinstance(event, msg.EpochEnded):
        return epoch_line(event)
    if isinstance(event, msg.NonFiniteLoss):
        return (f"nonfinite_loss global_iteration={event.global_iteration} epoch={event.epoch}"
                f" value={metric(event.value)}")
    if isinstance(event, msg.Alert):
        return alert_line(event)
    if isinstance(event, msg.LivenessChanged):  # `stalled ...` / `moving ... stalled_for=34s`
        return liveness_line(event)
    if isinstance(event, msg.BatchSizeChanged):
        return f"batch_size_changed old={event.old} new={event.new} epoch={event.epoch}"
    if isinstance(event, msg.BatchSizeReverted):
        return (f"batch_size_reverted old={event.old} new={event.new} epoch={event.epoch}"
                f" global_iteration={event.global_iteration} message={quote(event.message)}")
    if isinstance(event, msg.AccumChanged):
        return f"accum_changed old={event.old} new={event.new} global_iteration={event.global_iteration}"
    if isinstance(event, msg.Warned):
        return f"warning epoch={event.epoch} message={quote(event.message)}"
    if isinstance(event, msg.Paused):
        return f"paused global_iteration={event.global_iteration}"
    if isinstance(event, msg.Resumed):
        return f"resumed global_iteration={event.global_iteration}"
    if isinstance(event, msg.CheckpointSaved):
        return checkpoint_line(event)
    if isinstance(event, msg.CheckpointFailed):
        return (f"checkpoint_failed reason={quote(event.reason)} global_iteration={event.global_iteration}"
                f" message={quote(event.message)}")
    if isinstance(event, msg.RunResumed):
        return resume_line(event)
    if isinstance(event, msg.CommandRejected):
        return f"command_rejected command={type(event.command).__name__} reason={quote(event.reason)}"
    if isinstance(event, msg.Finished):
        return summary_line(event)
    if isinstance(event, msg.Failed):
        return f"failed phase={event.phase} message={quote(event.message)}"
    if isinstance(event, msg.EventsSummarized):
        return summarized_line(event)
    return None


def alert_line(a: msg.Alert) -> str:
    """`alert kind=nan message="..." epoch=3 global_iteration=120`, then `rank=1 host="gpu4"` under torchrun."""
    line = f"alert kind={a.kind} message={quote(a.message)} epoch={a.epoch} global_iteration={a.global_iteration}"
    if a.rank is not None:
        line += f" rank={a.rank}"
    if a.host is not None:
        line += f" host={quote(a.host)}"
    return line


def liveness_line(c: msg.LivenessChanged) -> str:
    """`stalled after=12s epoch=2 global_iteration=80`, or `moving phase=training stalled_for=34s epoch=2
    global_iteration=80` when iterations resume."""
    where = f"epoch={c.epoch} global_iteration={c.global_iteration}"
    if c.phase == "stalled":
        return f"stalled after={seconds(c.seconds)} {where}"
    return f"moving phase={c.phase} stalled_for={seconds(c.seconds)} {where}"


def summarized_line(s: msg.EventsSummarized) -> str:
    """`events_summarized epochs=12..340 epochs_folded=329 train_loss_mean=... nonfinite=0 checkpoints=329`,
    then the newest folded epoch's own line: what the log keeps of a stretch it folded (past its daily bytes)."""
    line = (f"events_summarized epochs={s.first_epoch or '-'}..{s.last_epoch.epoch if s.last_epoch else '-'}"
            f" epochs_folded={s.epochs_ended} train_loss_mean={metric(s.train_loss)}"
            f" train_loss_min={metric(s.train_loss_min)} train_loss_max={metric(s.train_loss_max)}"
            f" nonfinite={s.nonfinite} checkpoints={s.checkpoints}"
            f" reason={quote('the event log spent its byte budget (50 MB a day at most, 3 MB at once)')}")
    return line + ("\n" + epoch_line(s.last_epoch) if s.last_epoch is not None else "")


def quote(text: str) -> str:
    """A value with spaces as one double-quoted key=value field (JSON string escaping)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def quote_list(texts: tuple[str, ...]) -> str:
    """Several one-line values as one key=value field: a JSON list of strings."""
    import json

    return json.dumps(list(texts), ensure_ascii=False)
