"""The user's alert choices (`--on-alert`, `--no-alerts`, `--alerts-off`, `--stall-after`, or `trainmon.track()`'s
keywords) laid over the settings a process already has (`TRAINMON_ALERTS`), checked once for the CLI and
`track()` alike. Torch-free, textual-free.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Union

import msgspec

from trainmon.engine.core.alerts import AlertSettings, command_of, kinds_of, seconds_of


def alert_kinds(given: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """`"nan,stall"` or `["nan", "stall"]` as a tuple of known kinds (`engine.core.alerts.kinds_of`, the one
    check). Raises `ValueError` (one line) for an unknown or empty kind."""
    return kinds_of(given)


def choose(base: AlertSettings, *, enabled: Optional[bool] = None, on_alert: Optional[str] = None,
           off: Union[str, Iterable[str], None] = None, stall_after: Any = None) -> AlertSettings:
    """`base` with the choices given: `enabled=False` turns every alert off (`True`/`None` keep `base`'s);
    `on_alert` replaces the command (an empty or blank one is refused); `off` kinds are added to `base`'s;
    `stall_after` (seconds > 0, or their text) replaces `base`'s. Raises `AlertChoiceError` (a `ValueError`, one
    line, by the settings' names; `worded` names them the asker's way) for a bad choice: the checks are
    `engine.core.alerts`' own, which `AlertSettings` runs too."""
    changes: dict[str, Any] = {}
    if enabled is False:
        changes["enabled"] = False
    if on_alert is not None:
        changes["on_alert"] = command_of(on_alert)
    extra = alert_kinds(off)
    if extra:
        changes["off"] = tuple(dict.fromkeys((*base.off, *extra)))
    if stall_after is not None:
        changes["stall_after"] = seconds_of(stall_after, "stall_after")
    return msgspec.structs.replace(base, **changes) if changes else base


def loop_alert_settings(who: str, alerts: Any = True, on_alert: Optional[str] = None,
                        alerts_off: Union[str, Iterable[str], None] = (), stall_after: Any = None,
                        environ: Optional[dict] = None) -> AlertSettings:
    """The settings of a loop that `trainmon.track()` or a framework callback (`who`, named in errors)
    records: its keywords over `$TRAINMON_ALERTS` (`trainmon exec`'s options), as `choose` lays them.
    Raises `TypeError` for an `alerts` that is no bool and `ValueError` (one line, `who: ...`) for a bad
    choice or a bad `$TRAINMON_ALERTS`."""
    if not isinstance(alerts, bool):
        raise TypeError(f"{who}: alerts must be True or False, not {alerts!r}")
    try:
        return choose(AlertSettings.from_env(environ), enabled=alerts, on_alert=on_alert, off=alerts_off,
                      stall_after=stall_after)
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
