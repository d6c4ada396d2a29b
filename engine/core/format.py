"""Every number trainmon prints, written in one place so key=value lines, tables and the TUI agree.

Losses keep their significant figures at any magnitude (`2.2e-08`, never `0.0000`). No torch, no
textual: headless runs, `trainmon plan`/`devices` and the panes all call these functions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence


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


def figures(value: Optional[float], significant: int = 3, style: Style = LINE) -> str:
    """`value` with about `significant` significant figures in fixed notation: `0.0123`, `2.35`, `44.6`,
    `1,240` (whole, grouped when `style` groups, from `10**significant` up); `0` for zero. For sizes and
    durations that span orders of magnitude (a checkpoint: 100 KiB in 0.01 s to 40 GiB in a minute)."""
    text = blank(value, style)
    if text is not None:
        return text
    if value == 0:
        return "0"
    rounded = float(f"{value:.{significant - 1}e}")  # 99.96 -> 100: decimals from the rounded value
    decimals = min(6, max(0, significant - 1 - math.floor(math.log10(abs(rounded)))))
    return f"{value:{',' if style.grouped else ''}.{decimals}f}"


def mebibytes(size: Optional[int], style: Style = LINE, unit: bool = False) -> str:
    """A size given in bytes, written in MiB (2**20 bytes) with 3 significant figures: `0.118`, `44.6`,
    `1240` on a line; `1,240 MiB` on screen with `unit`."""
    text = figures(None if size is None else size / 2**20, 3, style)
    return f"{text} MiB" if unit and blank(size, style) is None else text


def duration(value: Optional[float]) -> str:
    """Seconds as a clock: `75.0 -> '1:15'`, `3725 -> '1:02:05'`; `--` for `None`, NaN or Inf, in every style
    (key=value lines write `eta=--` too)."""
    if value is None or not math.isfinite(value):
        return "--"
    s = int(round(value))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def clock_time(unix: float) -> str:
    """Unix seconds as the `time=` of a key=value line: ISO 8601 in UTC to the second,
    `2026-12-07T01:02:03Z` (one fixed-width field, the same on every host whatever its time zone)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def timed(text: str, unix: float) -> str:
    """`text` with ` time=<clock_time(unix)>` at the end of each of its lines: the last field, after those
    scripts already parse."""
    stamp = f" time={clock_time(unix)}"
    return "\n".join(line + stamp for line in text.split("\n"))


def count(value: Optional[int]) -> str:
    """A count (iterations, steps, samples) as a plain integer, `?` when it is unknown. Never grouped."""
    return "?" if value is None else str(value)


def count_of(done: int, total: Optional[int]) -> str:
    """`57/225`, or `57/?` for an unknown total."""
    return f"{done}/{count(total)}"


def planned_epochs(epoch: int, epochs: int) -> Optional[int]:
    """The planned epochs to show beside 1-based `epoch`: `None` (unknown) when a tracked loop never said
    how many and is past them (epoch 3 of "0")."""
    return epochs if epochs >= epoch else None


SI_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _decimals(scaled: Sequence[float], step: float) -> int:
    """Fewest decimals (0 to 12) that write every value of `scaled` exactly, to within a millionth of `step`."""
    for decimals in range(13):
        if all(abs(round(v, decimals) - v) <= step * 1e-6 for v in scaled):
            return decimals
    return 12


def tick_labels(ticks: Sequence[float], kind: str = "metric") -> list[str]:
    """Short labels for evenly spaced chart ticks, as precise as the ticks need and no more, so they are
    distinct and short.

    `kind="count"` (iterations, steps): whole numbers below 1e4 as they are (`200`, `4000`), larger ones
    with a suffix (`10k`, `12.5k`, `1.5M`). `kind="metric"` (a loss): in `FIXED_RANGE` with decimals
    (`0.5`, `1.25`), outside it with one shared exponent (`-1.5e6`, `2.2e-8`, `0.5e6`). All labels of one
    call have the same decimals; a lone tick keeps at most `SIGNIFICANT` figures. `ValueError` for
    another `kind`.
    """
    if kind not in ("metric", "count"):
        raise ValueError(f"kind must be 'metric' or 'count', not {kind!r}")
    if not ticks:
        return []
    top = max(abs(t) for t in ticks)
    gaps = [abs(b - a) for a, b in zip(ticks, ticks[1:]) if b != a]
    if gaps:
        step = min(gaps)
    elif top:  # a lone tick: as if its neighbours were one unit of its last significant figure away
        step = 10.0 ** (math.floor(math.log10(top)) - SIGNIFICANT + 1)
        ticks = [float(f"{ticks[0]:.{SIGNIFICANT - 1}e}")]
    else:
        step = 1.0
    low, high = FIXED_RANGE
    if kind == "count" and top >= 1e4:
        size, suffix = next((size, suffix) for size, suffix in SI_SUFFIXES if top >= size)
        decimals = _decimals([t / size for t in ticks], step / size)
        return [f"{t / size:.{decimals}f}{suffix}" if t else "0" for t in ticks]
    if kind == "count" or top == 0 or low <= top < high:
        decimals = _decimals(ticks, step)
        return [f"{t:.{decimals}f}" for t in ticks]
    exponent = math.floor(math.log10(top))
    unit = 10.0 ** exponent
    decimals = _decimals([t / unit for t in ticks], step / unit)
    return [f"{t / unit:.{decimals}f}e{exponent}" if t else "0" for t in ticks]
