"""Every number trainmon prints, written in one place so key=value lines, tables and the TUI agree.

Losses keep their significant figures at any magnitude (`2.2e-08`, never `0.0000`). No torch, no
textual: headless runs, `trainmon plan`/`devices` and the panes all call these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Style:
    """How one kind of output writes what is not an ordinary number, and whether it groups thousands."""

    none: str  # an absent value (a metric not measured yet, a query the device does not answer)
    nan: str
    inf: str  # negative infinity is `-` + this
    grouped: bool  # `12,345` for people; key=value lines stay `12345` for the parsers that read them


LINE = Style(none="n/a", nan="nan", inf="inf", grouped=False)  # key=value lines (headless, `trainmon logs`)
SCREEN = Style(none="--", nan="NaN", inf="Inf", grouped=True)  # the TUI's panes
TABLE = Style(none="—", nan="nan", inf="inf", grouped=True)  # the CLI's Rich tables (`trainmon devices`)

DECIMALS = 4  # decimals of a loss or metric inside FIXED_RANGE
SIGNIFICANT = 4  # significant figures of a loss or metric outside it
FIXED_RANGE = (1e-3, 1e4)  # |x| in [low, high) is written with DECIMALS decimals, as is 0


def blank(value: Optional[float], style: Style = LINE) -> Optional[str]:
    """The style's word for `None`, NaN, Inf or -Inf; `None` when `value` is an ordinary number."""
    if value is None:
        return style.none
    if math.isnan(value):
        return style.nan
    if math.isinf(value):
        return style.inf if value > 0 else f"-{style.inf}"
    return None


def scientific(value: float, significant: int = SIGNIFICANT) -> str:
    """`2.2e-08`, `-1.5e+06`, `1.235e+04`: at most `significant` figures, trailing zeros dropped."""
    mantissa, exponent = f"{value:.{significant - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"


def metric(value: Optional[float], style: Style = LINE) -> str:
    """A loss or metric: `0.4127` (4 decimals) for 0 and 1e-3 <= |x| < 1e4, else 4 significant figures in
    scientific notation (`2.2e-08`, `-1.5e+06`); never grouped. `None`/NaN/Inf as `style` spells them."""
    text = blank(value, style)
    if text is not None:
        return text
    low, high = FIXED_RANGE
    if value == 0 or low <= abs(value) < high:
        return f"{value:.{DECIMALS}f}"
    return scientific(value)


def general(value: Optional[float], style: Style = LINE) -> str:
    """Python's `g` form, up to 6 significant figures (`0.05`, `1.5`, `2.2e-08`): learning rates, growth factors."""
    text = blank(value, style)
    return f"{value:g}" if text is None else text


def fixed(value: Optional[float], decimals: int, style: Style = LINE, unit: str = "") -> str:
    """`value` with `decimals` decimals, thousands grouped when `style` groups, then `unit` (`"7,310 MiB"`).

    A blank (`--`, `n/a`, ...) is written without the unit.
    """
    text = blank(value, style)
    if text is not None:
        return text
    return f"{value:{',' if style.grouped else ''}.{decimals}f}{unit}"


def mib(value: Optional[float], style: Style = LINE, unit: bool = False) -> str:
    """Memory in MiB (2**20 bytes), whole: `7310` on a line, `7,310` in a table, `7,310 MiB` with `unit`."""
    return fixed(value, 0, style, " MiB" if unit else "")


def percent(value: Optional[float], style: Style = LINE) -> str:
    """`97%` (whole percent). Never grouped: a process's CPU share reads `1600%` on 16 busy cores."""
    text = blank(value, style)
    return f"{value:.0f}%" if text is None else text


def rate(value: Optional[float], style: Style = LINE, unit: str = "") -> str:
    """A speed with one decimal: `742.5` on a line, `23,760.0 samples/s` on screen. With a `unit`, a blank
    keeps it (`-- it/s`), so the reader still sees which speed is unknown."""
    text = fixed(value, 1, style)
    return f"{text} {unit}" if unit else text


def seconds(value: Optional[float], style: Style = LINE) -> str:
    """Elapsed seconds with one decimal and an `s`: `3.2s`."""
    return fixed(value, 1, style, "s")


def duration(value: Optional[float]) -> str:
    """Seconds as a clock: `75.0 -> '1:15'`, `3725 -> '1:02:05'`; `--` for `None`, NaN or Inf, in every style
    (key=value lines write `eta=--` too)."""
    if value is None or not math.isfinite(value):
        return "--"
    s = int(round(value))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def count(value: Optional[int]) -> str:
    """A count (iterations, steps, samples) as a plain integer, `?` when it is unknown. Never grouped."""
    return "?" if value is None else str(value)


def count_of(done: int, total: Optional[int]) -> str:
    """`57/225`, or `57/?` for an unknown total."""
    return f"{done}/{count(total)}"
