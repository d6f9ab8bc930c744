"""J/token against batch size, vanilla vs pruned: the efficiency stage's answer to "where does
pruning start to pay?" as a plotext line chart (see ``bars.py`` for why plotext, and ``_plotext``
for the one-figure lock).

x is the batch size on evenly spaced positions (1, 8, 32 are far apart on a linear axis), y is
J/token; one line per series. The caption names the series and gives the pruned / vanilla J/token
ratio at each batch size beside the parameter and FLOP ratios, so the numbers are there even when
the lines overlap. Points without an energy figure are left out and listed, never drawn as zero.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import plotext as plt
from rich.text import Text

from ._plotext import MIN_HEIGHT, MIN_WIDTH, PLOTEXT_COLORS, build_figure, message
from .bars import _PlotextStatic

Point = tuple[int, float | None]      # (batch size, J/token)


def build_efficiency_chart(width: int, height: int, title: str, series: Mapping[str, Sequence[Point]],
                           ratios: Sequence[dict[str, Any]] = ()) -> Text:
    """``series``: name → [(batch, J/token)]; ``ratios``: Table 3 lines (batch, energy/param/FLOP ratio)."""
    width, height = int(width), int(height)
    batches = sorted({b for pts in series.values() for b, _ in pts})
    drawn = {n: [(b, y) for b, y in pts if y is not None] for n, pts in series.items()}
    if not batches or not any(drawn.values()):
        return message(f"{title}: no efficiency points (--efficiency-batches 1,8,32)", width, height)
    if width < MIN_WIDTH or height < MIN_HEIGHT + 1:
        return message("(too small)", width, height)
    pos = {b: i + 1 for i, b in enumerate(batches)}
    names = list(series)
    cols = [PLOTEXT_COLORS[k % len(PLOTEXT_COLORS)] for k in range(len(names))]
    top = max((y for pts in drawn.values() for _, y in pts), default=1.0)

    def draw() -> None:
        for name, col in zip(names, cols):
            pts = drawn[name]
            if pts:
                plt.plot([pos[b] for b, _ in pts], [y for _, y in pts], color=col, marker="●")
        plt.xticks([pos[b] for b in batches], [str(b) for b in batches])
        plt.xlim(0.5, len(batches) + 0.5)
        plt.ylim(0, top * 1.1 if top > 0 else 1)
        if title:
            plt.title(title)
        plt.xlabel("batch size")
        plt.ylabel("J/token")

    chart = build_figure(width, height - 1, draw)
    caption = Text(no_wrap=True, overflow="ellipsis", end="")
    for name, col in zip(names, cols):
        caption.append("██ ", col)
        caption.append(f"{name}  ")
    for r in ratios:
        if r.get("energy_ratio") is not None:
            caption.append(f"b{r['batch_size']}: J/tok ×{r['energy_ratio']:.2f} n=1", "bold")
            extra = [f"{k} ×{r[key]:.2f} exact" for k, key in (("params", "param_ratio"), ("FLOPs", "flop_ratio"))
                     if r.get(key) is not None]
            caption.append(f" ({', '.join(extra)})  " if extra else "  ", "dim")
    missing = [f"{n} b{b}" for n, pts in series.items() for b, y in pts if y is None]
    if missing:
        caption.append("no energy: " + ", ".join(missing), "dim")
    caption.truncate(width, overflow="ellipsis")
    return Text("\n", end="").join([chart, caption])


class EfficiencyChart(_PlotextStatic):
    """J/token vs batch size per series (vanilla, pruned), from the efficiency stage."""

    DEFAULT_CSS = """
    EfficiencyChart {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, title: str = "J/token vs batch size", *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.title = title
        self.series: dict[str, list[Point]] = {}
        self.ratios: list[dict[str, Any]] = []

    def update_data(self, series: Mapping[str, Sequence[Point]], ratios: Sequence[dict[str, Any]] = (),
                    title: str | None = None) -> None:
        self.series = {k: list(v) for k, v in series.items()}
        self.ratios = list(ratios)
        if title is not None:
            self.title = title
        self.redraw()

    def build(self, width: int, height: int) -> Text:
        return build_efficiency_chart(width, height, self.title, self.series, self.ratios)
