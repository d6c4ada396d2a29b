"""Workarounds for library bugs, each with its reason; drop one when the library fixes it.

- textual 8.2 `Monochrome` filter (used under NO_COLOR) calls `style.color` on every segment, but
  textual-hires-canvas (under textual-plot) emits segments whose style is `None`: the app crashed
  with `AttributeError: 'NoneType' object has no attribute 'color'` as soon as the chart drew.
  We give such segments an empty style before the filter sees them.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import filter as textual_filter

_NULL = Style.null()


def patch_monochrome_filter() -> None:
    """Make `textual.filter.Monochrome.apply` accept segments without a style (idempotent)."""
    original = textual_filter.Monochrome.apply
    if getattr(original, "_trainmon_patched", False):
        return

    def apply(self, segments, background):
        fixed = [seg if seg.style is not None else Segment(seg.text, _NULL, seg.control) for seg in segments]
        return original(self, fixed, background)

    apply._trainmon_patched = True  # type: ignore[attr-defined]
    textual_filter.Monochrome.apply = apply
