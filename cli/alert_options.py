"""The alert options of `trainmon`, `trainmon run` and `trainmon exec`: checked here (one line, exit 2), then
carried to the engine or the script as `$TRAINMON_ALERTS` (README "Alerts")."""

from __future__ import annotations

from typing import Any, Callable, Optional

import click

from .common import fail

NAMES = ("on_alert", "no_alerts", "alerts_off", "stall_after")
OPTION_NAMES = {"on_alert": "--on-alert", "off": "--alerts-off", "stall_after": "--stall-after"}  # setting: option


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
        click.option("--stall-after", "stall_after", metavar="SECONDS",  # text: checked with the others, one line
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
    from trainmon.engine.core.alerts import AlertChoiceError, AlertSettings

    given = {name: options.pop(name, None) for name in NAMES}
    if all(value is None for value in given.values()):
        return None
    try:
        base = AlertSettings.from_env()
    except ValueError as exc:
        fail(str(exc))
    try:  # the one check (engine/core/alerts.py), its message by the options' names
        base = choose(base, on_alert=given["on_alert"], off=given["alerts_off"], stall_after=given["stall_after"],
                      enabled=False if given["no_alerts"] else None)
    except AlertChoiceError as exc:
        fail(exc.worded(OPTION_NAMES))
    return base.to_env()
