"""Throughput in the job's units: samples/s always, tokens/s when the job counts tokens, MFU when it gives FLOPs.

A job says its count is tokens with `unit="tokens"` (`trainmon.track(..., unit="tokens")`, or a built-in
`Job(count_unit="tokens")`): the count that weights each micro-batch — `run.log(loss, weight=TOKENS)` in a
tracked loop, `Job.batch_count(batch)` in a built-in job — is then its tokens. Samples stay samples (the
first dimension of a batch, or `run.batches(loader, samples=...)`), so samples/s is always shown; tokens/s
is the samples rate times the tokens per sample counted so far (the same rate, the same training time).

MFU (model FLOPs utilisation) = achieved FLOP/s ÷ (peak FLOP/s of one device × world size), where achieved
FLOP/s = `flops_per_token` × tokens/s, or `flops_per_sample` × samples/s: the training FLOPs the job gives
(forward and backward: about 6 × parameters per token for a transformer), over training time (pauses,
validation and checkpoint saves left out, as in the speed shown). The peak is `peak_flops.py`'s table for
the device's name and the run's precision; where it has none (a CPU, an unknown GPU) MFU is unknown, never
guessed. Computed at publication and at an epoch's end, never per iteration. Torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import msgspec

from trainmon.engine.core.format import rate
from trainmon.engine.core.peak_flops import peak_flops, precision_of

if TYPE_CHECKING:
    from trainmon.engine.core.speed import Speed

UNITS = ("samples", "tokens")
UNKNOWN_MFU = "unknown (no peak figure for this device)"


class Throughput(msgspec.Struct, frozen=True):
    """A run's throughput at a publication or an epoch's end. `unit`: what the job's count counts
    (`"samples"` or `"tokens"`); rates per second of training time (`None` until measured, or for tokens
    when the job counts none); `flops_per_second`: achieved, the whole job (`None` without FLOPs from the
    job); `peak_flops`: one device's (FLOP/s, `None`: unknown); `mfu`: 0..1, `None` when either is unknown;
    `counts_flops`: the job gave FLOPs per sample or per token (so an unknown MFU is worth saying);
    `device_name`: the GPU's name the peak was looked up by (`None` on a CPU)."""

    unit: str = "samples"
    samples_per_second: Optional[float] = None
    tokens_per_second: Optional[float] = None
    flops_per_second: Optional[float] = None
    peak_flops: Optional[float] = None
    mfu: Optional[float] = None
    counts_flops: bool = False
    device_name: Optional[str] = None


def model_flops_utilisation(flops_per_second: Optional[float], peak: Optional[float],
                            devices: int = 1) -> Optional[float]:
    """Achieved FLOP/s ÷ (`peak` FLOP/s of one device × `devices`): 0..1 (above 1 means the FLOPs given are
    too high); `None` when either figure is unknown or not positive."""
    if flops_per_second is None or peak is None or peak <= 0 or devices < 1:
        return None
    return flops_per_second / (peak * devices)


class ThroughputMeter:
    """What a run knows of its units (`configure`) and the count it sums in bulk (`add`, `add_weights`:
    at a fold or per built-in iteration, plain float adds); `figures()` makes a `Throughput`."""

    def __init__(self) -> None:
        self.unit = "samples"
        self.flops_per_sample: Optional[float] = None
        self.flops_per_token: Optional[float] = None
        self.device_name: Optional[str] = None
        self.precision: Optional[str] = None  # None: the run's own (the snapshot's `precision`)
        self.counted = 0.0  # the job's count (tokens) of the iterations that gave one, this session
        self.counted_samples = 0  # the samples of those same iterations

    def configure(self, unit: str = "samples", flops_per_sample: Optional[float] = None,
                  flops_per_token: Optional[float] = None, device_name: Optional[str] = None,
                  precision: Optional[str] = None) -> None:
        """Raises `ValueError` (one line) for a unit not in `UNITS`, a FLOPs figure that is not a positive
        number, both FLOPs figures, `flops_per_token` without `unit="tokens"`, or an unknown precision."""
        if unit not in UNITS:
            raise ValueError(f"trainmon: unit must be one of {', '.join(UNITS)}, not {unit!r}")
        for label, value in (("flops_per_sample", flops_per_sample), ("flops_per_token", flops_per_token)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"trainmon: {label} must be a number > 0 (FLOPs of one training pass), not {value!r}")
        if flops_per_sample is not None and flops_per_token is not None:
            raise ValueError("trainmon: give flops_per_sample or flops_per_token, not both")
        if flops_per_token is not None and unit != "tokens":
            raise ValueError('trainmon: flops_per_token needs unit="tokens" (the job\'s count is then its tokens)')
        self.unit, self.device_name = unit, device_name
        self.flops_per_sample, self.flops_per_token = flops_per_sample, flops_per_token
        self.precision = None if precision is None else precision_of(precision)

    def add(self, count: float, samples: int) -> None:
        """One iteration's count (its weight: tokens) and samples."""
        self.counted += count
        self.counted_samples += samples

    def add_weights(self, weights: dict[int, float], samples: list[int]) -> None:
        """A folded span's weights by position (the iterations that gave one) and every iteration's samples."""
        self.counted += sum(weights.values())
        self.counted_samples += sum(samples[i] for i in weights if i < len(samples))

    def figures(self, samples_per_second: Optional[float], world_size: int = 1,
                precision: str = "fp32") -> Throughput:
        """The throughput at `samples_per_second` (the run's rate over training time, `None` while it is
        measured), over `world_size` devices, at the run's `precision` unless `configure` set one."""
        tokens = None
        if self.unit == "tokens" and samples_per_second is not None and self.counted_samples > 0:
            tokens = samples_per_second * self.counted / self.counted_samples
        achieved = None
        if self.flops_per_token is not None and tokens is not None:
            achieved = self.flops_per_token * tokens
        elif self.flops_per_sample is not None and samples_per_second is not None:
            achieved = self.flops_per_sample * samples_per_second
        counts_flops = self.flops_per_sample is not None or self.flops_per_token is not None
        peak = peak_flops(self.device_name, self.precision or precision) if counts_flops else None
        return Throughput(unit=self.unit, samples_per_second=samples_per_second, tokens_per_second=tokens,
                          flops_per_second=achieved, peak_flops=peak,
                          mfu=model_flops_utilisation(achieved, peak, world_size), counts_flops=counts_flops,
                          device_name=self.device_name)

    def at_epoch_end(self, speed: "Speed", precision: str = "fp32", world_size: int = 1) -> Throughput:
        """The throughput an epoch's end records: `speed`'s rate once settled (one rank's, times
        `world_size`), as the snapshot shows it."""
        rate = speed.samples_per_second if speed.settled else None
        return self.figures(None if rate is None else rate * world_size, world_size, precision)


# ---- text: headless lines and exports (the screen's: tui/widgets/throughput_text.py) ---------------------


def throughput_fields(t: Optional[Throughput]) -> str:
    """` samples_per_s=840.2`, then ` tokens_per_s=107545.6` when the job counts tokens and ` mfu=0.412`
    when known (`n/a` for a rate not measured yet); "" without figures."""
    if t is None:
        return ""
    text = f" samples_per_s={rate(t.samples_per_second)}"
    if t.unit == "tokens":
        text += f" tokens_per_s={rate(t.tokens_per_second)}"
    if t.mfu is not None:
        text += f" mfu={t.mfu:.3f}"
    return text


def throughput_record(t: Optional[Throughput]) -> dict[str, Optional[float]]:
    """Export columns: `samples_per_s`, `tokens_per_s` (when the job counts tokens), `achieved_flops`,
    `peak_flops` (one device) and `mfu` (when the job gives FLOPs); `{}` without figures."""
    if t is None:
        return {}
    row: dict[str, Optional[float]] = {"samples_per_s": t.samples_per_second}
    if t.unit == "tokens":
        row["tokens_per_s"] = t.tokens_per_second
    if t.counts_flops:
        row.update(achieved_flops=t.flops_per_second, peak_flops=t.peak_flops, mfu=t.mfu)
    return row
