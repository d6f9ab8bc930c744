"""Radar (spider) chart on a braille canvas, plus the pure geometry behind it.

The study's figures compare a vanilla and a pruned model on seven tasks with both series
normalised per task (each axis divided by the best series on it, so the winner touches the
rim).  No terminal plotting library draws radars, hence this widget.

Everything except :class:`RadarChart` is a pure function so the maths is unit-testable
without a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from rich.text import Text
from textual.widget import Widget

from .braille import BrailleCanvas

Value = float | None
Series = Mapping[str, Sequence[Value]]

#: Height / width of one terminal cell.  Most terminal fonts are close to 1:2.
DEFAULT_CELL_ASPECT = 2.0

#: Series colours in draw order (later series win shared cells).  Same names as the plotext
#: charts use, so a series (e.g. "vanilla") has one colour across all figures.
PALETTE: tuple[str, ...] = (
    "cyan",
    "magenta",
    "yellow",
    "green",
    "red",
    "blue",
)
GRID_STYLE = "grey42"
RINGS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
MISSING_MARK = "×"


# ---------------------------------------------------------------------------- data
def _clean(v: Value) -> Value:
    """NaN is as good as missing: lm-eval reports NaN stderr/acc for broken tasks."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def normalise(series: Series, mode: str = "max") -> dict[str, list[Value]]:
    """Scale every axis so the best series on it is 1.0 (the study's per-task normalisation).

    Per axis (task) ``i``: ``out[s][i] = series[s][i] / max_s(series[s][i])``.  Why per axis:
    tasks have very different accuracy ranges (boolq ~0.7 vs arc_challenge ~0.3) and energy
    ranges, and the figure is about *relative* vanilla-vs-pruned shape, not absolute level.

    - ``None`` (or NaN) means "not measured" and stays ``None``; it does not take part in the max.
    - An axis whose max is <= 0 (all zero, or nothing measured) maps to 0.0 instead of raising
      ``ZeroDivisionError``: an empty axis must not crash a live dashboard.
    - ``mode="none"`` returns a cleaned copy, for data that is already on a 0..1 scale.

    Raises ``ValueError`` for unequal series lengths or an unknown mode.
    """
    if mode not in ("max", "none"):
        raise ValueError(f"unknown normalisation mode {mode!r} (expected 'max' or 'none')")
    cleaned = {name: [_clean(v) for v in values] for name, values in series.items()}
    lengths = {len(v) for v in cleaned.values()}
    if len(lengths) > 1:
        raise ValueError(f"series have different lengths: {sorted(lengths)}")
    if mode == "none" or not cleaned:
        return cleaned
    n = lengths.pop()
    out: dict[str, list[Value]] = {name: [] for name in cleaned}
    for i in range(n):
        present = [vals[i] for vals in cleaned.values() if vals[i] is not None]
        top = max(present, default=0.0)
        for name, vals in cleaned.items():
            v = vals[i]
            if v is None:
                out[name].append(None)
            elif top <= 0:
                out[name].append(0.0)
            else:
                out[name].append(v / top)
    return out


# ---------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class RadarFrame:
    """Centre and radii (in dots) of the unit circle of a radar drawn in a cell box."""

    cx: float
    cy: float
    rx: float
    ry: float


def radar_frame(width_cells: int, height_cells: int, cell_aspect: float = DEFAULT_CELL_ASPECT) -> RadarFrame:
    """Largest *visually round* unit circle that fits a ``width_cells`` x ``height_cells`` box.

    Maths.  Measure lengths in cell widths.  A cell is 1 wide and ``A = cell_aspect`` tall
    (A ~ 2).  Braille puts 2 dots across and 4 dots down a cell, so one dot step is
    ``1/2`` horizontally and ``A/4`` vertically.  A circle of physical radius ``R`` is
    therefore ``rx = 2R`` dots wide and ``ry = 4R/A`` dots tall (for A = 2 both are 2R: dots
    are square, which is the reason for using braille at all).

    The dot grid spans ``0..2W-1`` by ``0..4H-1``, so the circle fits when
    ``rx <= (2W-1)/2`` and ``ry <= (4H-1)/2``, i.e. ``R = min((2W-1)/4, (4H-1)A/8)``.
    The centre is the middle of the grid, ``((2W-1)/2, (4H-1)/2)``.
    """
    w = max(1, int(width_cells))
    h = max(1, int(height_cells))
    aspect = float(cell_aspect) if cell_aspect > 0 else DEFAULT_CELL_ASPECT
    radius = min((2 * w - 1) / 4, (4 * h - 1) * aspect / 8)
    return RadarFrame(cx=(2 * w - 1) / 2, cy=(4 * h - 1) / 2, rx=2 * radius, ry=4 * radius / aspect)


def axis_angle(i: int, n_axes: int) -> float:
    """Angle of spoke ``i`` in radians, measured clockwise from straight up."""
    return 2 * math.pi * i / n_axes


def radar_points(
    values: Sequence[Value],
    n_axes: int,
    width_cells: int,
    height_cells: int,
    *,
    cell_aspect: float = DEFAULT_CELL_ASPECT,
) -> list[tuple[float, float]]:
    """Polygon vertices (dot coordinates, y down) for ``values`` on ``n_axes`` spokes.

    Spoke ``i`` has angle ``t = 2*pi*i/n`` clockwise from 12 o'clock, so the vertex is
    ``(cx + v*rx*sin t, cy - v*ry*cos t)`` with the frame from :func:`radar_frame`.  Because
    ``rx``/``ry`` carry the aspect correction, the *physical* angles on screen are evenly spaced
    (not merely the angles in dot space).  ``None`` is drawn at the centre (value 0) and values
    are clamped to ``[0, 1]`` so an unnormalised outlier cannot leave the chart.

    The returned list has one vertex per axis; the polygon is closed by joining the last vertex
    back to the first (:meth:`BrailleCanvas.polygon` does that).
    """
    if n_axes < 1:
        raise ValueError("a radar needs at least one axis")
    if len(values) != n_axes:
        raise ValueError(f"{len(values)} values for {n_axes} axes")
    f = radar_frame(width_cells, height_cells, cell_aspect)
    pts: list[tuple[float, float]] = []
    for i, v in enumerate(values):
        v = _clean(v)
        r = 0.0 if v is None else min(1.0, max(0.0, v))
        t = axis_angle(i, n_axes)
        pts.append((f.cx + r * f.rx * math.sin(t), f.cy - r * f.ry * math.cos(t)))
    return pts


def closed(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The polygon's vertex list with the first vertex repeated at the end (for edge walks)."""
    return [*points, points[0]] if points else []


def _truncate(label: str, width: int) -> str:
    if width <= 0:
        return ""
    return label if len(label) <= width else (label[: width - 1] + "…" if width > 1 else label[:1])


# ---------------------------------------------------------------------------- drawing
def draw_radar(
    width: int,
    height: int,
    title: str,
    axes: Sequence[str],
    series: Series,
    *,
    normalise_values: bool = True,
    colors: Sequence[str] = PALETTE,
    cell_aspect: float = DEFAULT_CELL_ASPECT,
    scale_note: str | None = None,
) -> Text:
    """Render a complete radar (title, chart, labels, legend) into exactly ``width`` x ``height``.

    Layout: row 0 title, last row legend, one spare row above and below the plot for the
    top/bottom labels, and left/right margins as wide as the (possibly truncated) labels, so
    labels always sit *outside* the outer ring and inside the widget.
    """
    width, height = max(0, int(width)), max(0, int(height))
    canvas = BrailleCanvas(width, height)
    if width == 0 or height == 0:
        return canvas.render()
    canvas.text(max(0, (width - len(title)) // 2), 0, _truncate(title, width), "bold")
    n = len(axes)
    if n == 0 or not series:
        msg = "no data"
        canvas.text(max(0, (width - len(msg)) // 2), height // 2, msg, "dim italic")
        return canvas.render()
    if width < 16 or height < 7:
        canvas.text(0, min(1, height - 1), _truncate("(too small)", width), "dim")
        return canvas.render()

    data = normalise(series, "max" if normalise_values else "none")
    names = list(data)
    styles = {name: colors[k % len(colors)] for k, name in enumerate(names)}
    missing = [[name for name in names if data[name][i] is None] for i in range(n)]
    hidden = hidden_under(data)
    legend_lines = legend_rows(names, styles, hidden, width, any(missing),
                               (scale_note or SCALE_NOTE) if normalise_values else False)
    if height - 3 - len(legend_lines) < 4:  # keep a plot: the legend gets what is left
        legend_lines = legend_lines[: max(1, height - 7)]

    # Margins: labels get up to a quarter of the width each side.
    label_room = max(4, (width - 8) // 4)
    longest = max(len(a) + len(m) + (1 if m else 0) for a, m in zip(axes, missing))
    margin = min(longest, label_room) + 1
    plot_w, plot_h = width - 2 * margin, height - 3 - len(legend_lines)
    ox, oy = 2 * margin, 4 * 2  # plot origin in dots (cols margin.., rows 2..)

    def shift(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x + ox, y + oy) for x, y in pts]

    def ring(v: float) -> list[tuple[float, float]]:
        return shift(radar_points([v] * n, n, plot_w, plot_h, cell_aspect=cell_aspect))

    centre = ring(0.0)[0]
    rim = ring(1.0)
    for x, y in rim:
        canvas.line(centre[0], centre[1], x, y, GRID_STYLE, dotted=True)
    for v in RINGS:
        canvas.polygon(ring(v), GRID_STYLE, dotted=v < 1.0)
    for name in names:
        pts = shift(radar_points(data[name], n, plot_w, plot_h, cell_aspect=cell_aspect))
        canvas.polygon(pts, styles[name])

    # Axis labels, placed outward from the rim vertex.
    for i, (axis, (x, y)) in enumerate(zip(axes, rim)):
        t = axis_angle(i, n)
        s, c = math.sin(t), math.cos(t)
        marks = missing[i]
        budget = margin - 1 - (len(marks) + 1 if marks else 0)
        label = _truncate(axis, max(1, budget))
        total = len(label) + (len(marks) + 1 if marks else 0)
        vc, vr = int(round(x)) // 2, int(round(y)) // 4
        row = vr - 1 if c > 0.5 else vr + 1 if c < -0.5 else vr
        row = min(max(row, 1), height - 1 - len(legend_lines))
        if abs(s) < 0.25:
            col = vc - total // 2
        elif s > 0:
            col = vc + 2
        else:
            col = vc - 1 - total
        col = min(max(col, 0), max(0, width - total))
        if not canvas.is_free(col, row, total):  # best effort: dodge a neighbour label
            for alt in (row + (1 if c < 0 else -1), row - (1 if c < 0 else -1)):
                if 1 <= alt <= height - 1 - len(legend_lines) and canvas.is_free(col, alt, total):
                    row = alt
                    break
        written = canvas.text(col, row, label, "bold")
        if marks:
            at = col + written + 1
            for name in marks:
                at += canvas.text(at, row, MISSING_MARK, styles[name])

    # Legend: as many rows as it needs (wrapped between entries, never cut).
    top = height - len(legend_lines)
    for k, line in enumerate(legend_lines):
        col = max(0, (width - line.cell_len) // 2)
        for span_text, style in _segments(line):
            col += canvas.text(col, top + k, span_text, style)
    return canvas.render()


def hidden_under(data: Mapping[str, Sequence[Value]]) -> dict[str, str]:
    """Series whose outline is identical to a series drawn after it (so it cannot be seen) → that series."""
    names = list(data)
    out: dict[str, str] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            va, vb = data[a], data[b]
            if all((x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-9)
                   for x, y in zip(va, vb)):
                out[a] = b
    return out


#: what the normalised scale means: each axis's outer ring is the highest value on it, which is the best
#: for accuracy and the *worst* for energy (a chart says which: ``scale_note``)
SCALE_NOTE = "(per task: outer ring = the highest)"


def legend_rows(names: Sequence[str], styles: Mapping[str, str], hidden: Mapping[str, str], width: int,
                any_missing: bool, normalised: bool | str) -> list[Text]:
    """Legend entries wrapped into lines of at most ``width`` cells (an entry is never split);
    ``normalised`` is the scale's note (``True``: :data:`SCALE_NOTE`), ``False`` for none."""
    entries: list[Text] = []
    for name in names:
        entry = Text()
        entry.append("━━ ", styles[name])
        entry.append(name)
        if name in hidden:
            entry.append(f" (same as {hidden[name]}, drawn under it)", "dim")
        entries.append(entry)
    if any_missing:
        entries.append(Text(f"{MISSING_MARK} missing", "dim"))
    if normalised:
        entries.append(Text(normalised if isinstance(normalised, str) else SCALE_NOTE, "dim"))
    return wrap_entries(entries, width)


def wrap_entries(entries: Sequence[Text], width: int, gap: int = 2) -> list[Text]:
    """Legend/caption entries on lines of at most ``width`` cells, ``gap`` spaces apart; an entry is
    never split across lines (one longer than a line is shortened with an ellipsis)."""
    lines: list[Text] = []
    line = Text()
    for entry in entries:
        entry = entry.copy()
        if entry.cell_len > width:
            entry.truncate(width, overflow="ellipsis")
        if line.cell_len and line.cell_len + gap + entry.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append(" " * gap)
        line.append_text(entry)
    if line.cell_len:
        lines.append(line)
    return lines


def _segments(text: Text) -> list[tuple[str, str | None]]:
    """Split a styled ``Text`` into (substring, style) runs, to copy it onto the canvas."""
    plain = text.plain
    styles: list[str | None] = [None] * len(plain)
    for span in text.spans:
        for k in range(span.start, min(span.end, len(plain))):
            styles[k] = str(span.style)
    runs: list[tuple[str, str | None]] = []
    for ch, st in zip(plain, styles):
        if runs and runs[-1][1] == st:
            runs[-1] = (runs[-1][0] + ch, st)
        else:
            runs.append((ch, st))
    return runs


# ---------------------------------------------------------------------------- widget
class RadarChart(Widget):
    """Textual widget drawing :func:`draw_radar` at its current size.

    ``render()`` reads ``self.size``, and Textual re-renders on resize, so the chart always
    fills the widget.  Data is kept raw; normalisation happens at draw time so
    ``update_data`` can be called with fresh numbers from the results table as they arrive.
    """

    DEFAULT_CSS = """
    RadarChart {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(
        self,
        title: str,
        axes: list[str],
        series: dict[str, list[float | None]],
        normalise: bool = True,
        *,
        colors: Sequence[str] = PALETTE,
        cell_aspect: float = DEFAULT_CELL_ASPECT,
        scale_note: str | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.normalise = normalise
        self.series_colors = tuple(colors)
        self.cell_aspect = cell_aspect
        self.scale_note = scale_note
        self.axes: list[str] = []
        self.series: dict[str, list[float | None]] = {}
        self._set(axes, series)

    def _set(self, axes: list[str], series: dict[str, list[float | None]]) -> None:
        for name, values in series.items():
            if len(values) != len(axes):
                raise ValueError(f"series {name!r} has {len(values)} values for {len(axes)} axes")
        self.axes = list(axes)
        self.series = {k: list(v) for k, v in series.items()}

    def update_data(self, axes: list[str], series: dict[str, list[float | None]], title: str | None = None) -> None:
        """Replace the data (and optionally the title) and redraw."""
        self._set(axes, series)
        if title is not None:
            self.title = title
        self.refresh()

    def render(self) -> Text:
        return draw_radar(
            self.size.width,
            self.size.height,
            self.title,
            self.axes,
            self.series,
            normalise_values=self.normalise,
            colors=self.series_colors,
            cell_aspect=self.cell_aspect,
            scale_note=self.scale_note,
        )


__all__ = [
    "RadarChart",
    "RadarFrame",
    "axis_angle",
    "closed",
    "draw_radar",
    "normalise",
    "radar_frame",
    "radar_points",
    "wrap_entries",
]
