"""The run's alerts as a viewer shows them: a badge in the status line, the list behind it, and for each
new alert a notification that reaches someone not looking at the pane (the terminal's bell, an OSC 9
desktop notification, a toast). Alerts replayed to a viewer that attached late are listed, never rung.
"""

from __future__ import annotations

import os
import time
from collections import deque
from datetime import date
from typing import Any, Optional

from trainmon.engine.core.alerts import Alert

from .compat import write_to_terminal
from .widgets.chart import MARKS

KEEP = 1000  # alerts listed (the newest); the count goes on past it
STYLE = MARKS["alert"].style  # the badge has the colour of the chart's alert columns
NOTICE_CHARS = 200  # an OSC 9 notification's text at most (desktop notifiers cut long ones anyway)


class AlertView:
    """Every `Alert` a viewer has seen (live or replayed), newest last; `count` goes on past `KEEP`."""

    def __init__(self) -> None:
        self.alerts: deque[Alert] = deque(maxlen=KEEP)
        self.count = 0

    def take(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.count += 1

    @property
    def newest(self) -> Optional[Alert]:
        return self.alerts[-1] if self.alerts else None

    def badge(self) -> str:
        """Markup for the status line: `⚠ 2 alerts · nan` (the count, the newest kind) in the alert colour,
        bold (readable under NO_COLOR by its glyph and words), clicked or `a`: the list; "" with none."""
        if self.newest is None:
            return ""
        plural = "" if self.count == 1 else "s"
        return (f"[@click=app.show_alerts][{STYLE}]⚠ {self.count} alert{plural} · {self.newest.kind}[/][/]"
                " [dim]a: list[/]")


def notice_text(alert: Alert, run_id: str = "") -> str:
    """One line for a desktop notification: `trainmon nan: the loss is nan ... (run r1)`, without control
    characters (one would end the OSC sequence early), at most `NOTICE_CHARS` characters."""
    run = f" (run {run_id})" if run_id else ""
    text = f"trainmon {alert.kind}: {alert.message}"
    text = "".join(" " if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 else ch for ch in text)
    room = NOTICE_CHARS - len(run)
    return (text if len(text) <= room else text[:room - 1] + "…") + run


def osc9(text: str, environ: Optional[dict] = None) -> str:
    """The OSC 9 desktop notification `ESC ] 9 ; text BEL` (iTerm2, kitty, WezTerm, Windows Terminal; other
    terminals ignore it). Inside tmux (`TMUX` set), which keeps OSC 9 to itself, wrapped for tmux to pass on
    to the terminal around it (`set -g allow-passthrough on`, tmux 3.3 or later; without it tmux drops it)."""
    sequence = f"\x1b]9;{text}\a"
    if (os.environ if environ is None else environ).get("TMUX"):
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence


def announce(app: Any, alert: Alert, run_id: str = "") -> None:
    """A new alert (not a replayed one) for someone not looking: the terminal's bell and an OSC 9 desktop
    notification (`osc9`) in one write after the frames before it, and a toast in the app."""
    write_to_terminal(app, "\a" + osc9(notice_text(alert, run_id)))
    app.notify(alert.message, title=f"alert: {alert.kind}", severity="warning", timeout=10, markup=False)


def when(t: float, today: Optional[date] = None) -> str:
    """`14:03:07` for Unix time `t` today (local time), `6 Dec 14:03` on another day."""
    local = time.localtime(t)
    if date(local.tm_year, local.tm_mon, local.tm_mday) == (today or date.today()):
        return time.strftime("%H:%M:%S", local)
    return f"{local.tm_mday} {time.strftime('%b %H:%M', local)}"


def where(alert: Alert) -> str:
    """`rank 1 on gpu4` for an alert that names a rank, else ""."""
    if alert.rank is None:
        return ""
    return f"rank {alert.rank}" + (f" on {alert.host}" if alert.host else "")
