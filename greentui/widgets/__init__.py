"""Chart and gauge widgets for greentui.

Only textual, rich, plotext and the standard library are imported here, never torch,
transformers, lm_eval or peft: the UI must start instantly and work without the ML stack.
Names are imported on first use (PEP 562), so ``from greentui.widgets.keys import …`` on the first
screen does not pay for plotext and the chart code.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GroupedBars": "bars", "ScatterPareto": "bars", "build_grouped_bars": "bars",
    "build_scatter_pareto": "bars", "pareto_front": "bars",
    "BrailleCanvas": "braille",
    "PowerPanel": "power", "PowerTrace": "power", "describe_source": "power",
    "RadarChart": "radar", "draw_radar": "radar", "normalise": "radar", "radar_frame": "radar",
    "radar_points": "radar",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
