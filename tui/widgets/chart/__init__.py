"""The loss chart's parts, for every chart trainmon draws (the Loss pane now, the workbench later): axes
whose labels are whole, one table of marks that feeds both the chart and its legend, the series drawn."""

from .axis import ChartAxis, nice_ticks, offset_for, offset_text, y_title
from .marks import MARKS, Grid, Mark, draw_columns, draw_labels, draw_note, draw_points, legend
from .series import ema, finite, spread, thin

__all__ = ["MARKS", "ChartAxis", "Grid", "Mark", "draw_columns", "draw_labels", "draw_note", "draw_points", "ema", "finite",
           "legend", "nice_ticks", "offset_for", "offset_text", "spread", "thin", "y_title"]
