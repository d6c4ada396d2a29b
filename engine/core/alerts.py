"""Alerts: what the run core says when a run looks unhealthy, and the rules that keep them few.

An `Alert` is an event like the others (run directory, viewers, `logs`, exports). `AlertSettings` are
the user's choices (on or off, kinds turned off, thresholds, the `--on-alert` command); they travel to
an engine or a tracked script as JSON in `TRAINMON_ALERTS`. `Alerts` deduplicates: a condition raises
one alert while it lasts (a run that stays NaN raises one, not thousands), and once it ends the same
alert waits `refire_seconds` before it may come again. Torch-free, textual-free.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterable, Optional, Union

import msgspec

from trainmon.engine.core.message_base import Message

ALERT_KINDS = ("nan", "loss_spike", "stall", "memory", "input_bound", "throughput_drop", "straggler", "hang")
ENV = "TRAINMON_ALERTS"


class Alert(Message):
    """The run looks unhealthy: `kind` one of `ALERT_KINDS`, `message` one line for a person, at 1-based
    `epoch` and `global_iteration`, `time` in Unix seconds; `rank`/`host` name the rank under torchrun."""

    kind: str
    message: str
    epoch: int
    global_iteration: int
    time: float
    rank: Optional[int] = None
    host: Optional[str] = None


class AlertChoiceError(ValueError):
    """A bad alert choice, one line: `field` names the setting (`off`, `stall_after`, `on_alert`, `hang_after`);
    `str()` words it by that name, `worded(names)` by the name the asker knows it by (`--stall-after`)."""

    def __init__(self, field: str, template: str) -> None:
        self.field, self.template = field, template
        super().__init__(self.worded({}))

    def worded(self, names: dict[str, str]) -> str:
        name = names.get(self.field, self.field)
        return self.template.format(name=name) if "{name}" in self.template else (
            self.template if name == self.field else f"{name}: {self.template}")


def kinds_of(given: Union[str, Iterable[str], None], field: str = "off") -> tuple[str, ...]:
    """`"nan,stall"` or `["nan", "stall"]` as a tuple of known kinds, in order, without repeats: the one check
    of alert kinds. Raises `AlertChoiceError` for an unknown or empty kind."""
    if given is None:
        return ()
    words = given.split(",") if isinstance(given, str) else [str(w) for w in given]
    kinds: list[str] = []
    for word in (w.strip() for w in words):
        if word not in ALERT_KINDS:
            raise AlertChoiceError(field, f"unknown alert kind {word!r}: the kinds are {', '.join(ALERT_KINDS)}")
        if word not in kinds:
            kinds.append(word)
    return tuple(kinds)


def seconds_of(value: Any, field: str) -> Optional[float]:
    """`value` (a number or its text) as seconds, finite and > 0; `None` for `None`: the one check of
    `stall_after` and `hang_after`. Raises `AlertChoiceError` otherwise."""
    if value is None:
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        shown = f"{seconds:g}" if not math.isnan(seconds) else repr(value)
        raise AlertChoiceError(field, "{name} must be a number of seconds > 0, not " + shown.replace("{", "{{")
                               .replace("}", "}}"))
    return seconds


def command_of(value: Any, field: str = "on_alert") -> Optional[str]:
    """`value` as the `--on-alert` shell command (`None` for `None`): the one check. Raises `AlertChoiceError`
    for one that is not a string or is blank."""
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    shown = repr(value).replace("{", "{{").replace("}", "}}")
    raise AlertChoiceError(field, "{name} needs a shell command (it gets each alert as JSON on its stdin), not " + shown)


class AlertSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the user chose. `enabled=False` (`--no-alerts`): none at all. `off`: kinds turned off.
    `stall_after`: seconds without an iteration before `stall` (`None`: worked out from the run's own
    iteration times, with a floor). `on_alert`: a shell command run once per alert and at the run's end,
    the alert as one JSON object on its stdin. Thresholds: `loss_spike_factor` (how far above the recent
    level, in robust spreads), `memory_fraction` (of the device's total), `input_bound_fraction` (of the
    loop's time waiting for batches), `throughput_drop_fraction` (of the recent samples/s),
    `hang_after` (seconds a torchrun rank may fall silent, or stay behind while no rank moves)."""

    enabled: bool = True
    off: tuple[str, ...] = ()
    stall_after: Optional[float] = None
    on_alert: Optional[str] = None
    loss_spike_factor: float = 10.0
    memory_fraction: float = 0.9
    input_bound_fraction: float = 0.5
    throughput_drop_fraction: float = 0.5
    hang_after: Optional[float] = None  # seconds before `hang` (None: engine/core/rank_health.py's HANG_AFTER)

    def __post_init__(self) -> None:  # the same checks as every choice's (`kinds_of`, `seconds_of`, `command_of`)
        kinds_of(self.off)
        seconds_of(self.stall_after, "stall_after")
        seconds_of(self.hang_after, "hang_after")
        command_of(self.on_alert)
        if not self.loss_spike_factor > 0:
            raise ValueError(f"loss_spike_factor must be a number > 0, not {self.loss_spike_factor}")
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction must be a fraction of the device's total, 0 to 1, not {self.memory_fraction}")

    def wants(self, kind: str) -> bool:
        return self.enabled and kind not in self.off

    def to_env(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_env(cls, environ: Optional[dict] = None) -> "AlertSettings":
        """The settings in `TRAINMON_ALERTS` (defaults when unset). Raises `ValueError` (one line) for a
        value that is not these settings as JSON."""
        text = (os.environ if environ is None else environ).get(ENV, "")
        if not text:
            return cls()
        try:
            return msgspec.json.decode(text, type=cls)
        except (msgspec.ValidationError, msgspec.DecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{ENV} is not valid alert settings: {exc}") from None


class Alerts:
    """Which alerts fire: `fire(kind, key)` is True once per condition (`key` tells conditions of one
    kind apart, e.g. a rank); `clear(kind, key)` when the condition ended; the same `(kind, key)` fires
    again only `refire_seconds` after its last alert. `clock`: seconds, monotonic."""

    def __init__(self, settings: AlertSettings, clock: Callable[[], float], refire_seconds: float = 300.0) -> None:
        self.settings, self.clock, self.refire_seconds = settings, clock, refire_seconds
        self._active: set[tuple[str, str]] = set()
        self._last: dict[tuple[str, str], float] = {}
        self.count = 0  # alerts fired

    def fire(self, kind: str, key: str = "") -> bool:
        if not self.settings.wants(kind):
            return False
        ident = (kind, key)
        if ident in self._active:
            return False
        now = self.clock()
        last = self._last.get(ident)
        if last is not None and now - last < self.refire_seconds:
            return False
        self._active.add(ident)
        self._last[ident] = now
        self.count += 1
        return True

    def clear(self, kind: str, key: str = "") -> None:
        self._active.discard((kind, key))

    def active(self, kind: str, key: str = "") -> bool:
        return (kind, key) in self._active
