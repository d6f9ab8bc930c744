"""Chart and gauge widgets for greentui.

Only textual, rich, plotext and the standard library are imported here, never torch,
transformers, lm_eval or peft: the UI must start instantly and work without the ML stack.
"""

from .bars import GroupedBars, ScatterPareto, build_grouped_bars, build_scatter_pareto, pareto_front
from .braille import BrailleCanvas
from .power import PowerPanel, PowerTrace, describe_source
from .radar import RadarChart, draw_radar, normalise, radar_frame, radar_points

__all__ = [
    "BrailleCanvas",
    "GroupedBars",
    "PowerPanel",
    "PowerTrace",
    "RadarChart",
    "ScatterPareto",
    "build_grouped_bars",
    "build_scatter_pareto",
    "describe_source",
    "draw_radar",
    "normalise",
    "pareto_front",
    "radar_frame",
    "radar_points",
]
