"""The alert options of `trainmon`, `trainmon run` and `trainmon exec`: checked here (one line, exit 2), then
carried to the engine or the script as `$TRAINMON_ALERTS` (README "Alerts")."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import click

from .common import fail

NAMES = ("on_alert", "no_alerts", "alerts_off", "stall_after")


def alert_option_list() -> list:
    return [
        click.option("--on-alert", "on_alert", metavar="CMD",
                     help="Run the shell command CMD once per alert and at the run's end, the alert as one JSON "
                          "object on its stdin (e.g. 'curl -d @- ntfy.sh/TOPIC')."),
        click.option("--no-alerts", "no_alerts", is_flag=True, default=None,
                     help="Raise no alerts (--on-alert still hears the run's end)."),
        click.option("--alerts-off", "alerts_off", metavar="KIND[,KIND]",
                     help="Turn these alert kinds off: nan, loss_spike, stall, memory, input_bound, "
                          "throughput_drop, straggler, hang."),
        click.option("--stall-after", "stall_after", type=float, metavar="SECONDS",
                     help="Seconds without an iteration before a `stall` alert (default: from the run's own "
                          "iteration times)."),
    ]


def alert_options(fn: Callable) -> Callable:
    for option in reversed(alert_option_list()):
        fn = option(fn)
    return fn


def take_alert_settings(options: dict[str, Any]) -> Optional[str]:
    """Pop the alert options from `options`; `None` when none was given, else the settings they make over
    `$TRAINMON_ALERTS`, as its JSON text. Exits 2 with one line for a bad value."""
    from trainmon.engine.core.alert_choices import choose
    from trainmon.engine.core.alerts import AlertSettings

    given = {name: options.pop(name, None) for name in NAMES}
    if all(value is None for value in given.values()):
        return None
    try:
        base = AlertSettings.from_env()
    except ValueError as exc:
        fail(str(exc))
    if given["on_alert"] is not None and not given["on_alert"].strip():
        fail("--on-alert needs a shell command (it gets each alert as JSON on its stdin)")
    stall = given["stall_after"]
    if stall is not None and not (math.isfinite(stall) and stall > 0):
        fail(f"--stall-after must be a number of seconds > 0, not {stall:g}")
    try:
        base = choose(base, on_alert=given["on_alert"], off=given["alerts_off"], stall_after=stall)
    except ValueError as exc:  # an unknown kind
        fail(f"--alerts-off: {exc}")
    if given["no_alerts"]:
        base = choose(base, enabled=False)
    return base.to_env()
