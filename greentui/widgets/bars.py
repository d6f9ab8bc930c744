"""plotext charts in Textual ``Static`` widgets: grouped bars per task and an energy/accuracy
Pareto scatter.

Why plotext (and not textual-plotext): textual-plotext is unmaintained and reaches into
plotext 5's private modules.  Here we only use plotext's public API (``plotext>=5.3,<6``),
build an ANSI string with ``plt.build()`` and turn it into a rich ``Text`` with
``Text.from_ansi``.  Widgets rebuild at their own size on mount, on resize and on new data, all
on the main thread (see :mod:`._plotext` for why).

Error bars: plotext 5.3 has ``plt.error`` (a vertical segment of total length ``yerr``,
centred on y), so the grouped bars draw real ``±stderr`` whiskers, positioned at each bar's
centre (``multiple_bar`` places series ``k`` of ``m`` at ``x + offset_k`` with offsets evenly
spaced in ``[-1/2 + 1/2m, 1/2 - 1/2m]``).  The caption says so.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import plotext as plt
from rich.text import Text
from textual.events import Resize
from textual.widgets import Static

from backend.schema.tasks import TASK_LABELS

from ._plotext import MIN_HEIGHT, MIN_WIDTH, PLOTEXT_COLORS, build_figure, message
from .radar import wrap_entries

Value = float | None

#: Short names for the study's tasks, used only when the full names do not fit under a bar
#: group (the caption then prints the key): the registry's labels, as the radar and tables name them.
TASK_ABBREV: dict[str, str] = TASK_LABELS


def _abbrev(label: str, room: int) -> str:
    short = TASK_ABBREV.get(label, label)
    if len(short) > room:
        short = short[: max(1, room - 1)] + "…" if room > 1 else short[:1]
    return short


def _num(v: Value) -> float:
    return 0.0 if v is None or v != v else float(v)  # v != v: NaN


def _group_offsets(m: int) -> list[float]:
    """x offsets of the m bars inside a group, exactly as plotext's ``multiple_bar`` uses."""
    if m <= 1:
        return [0.0] * m
    lo, hi = -0.5 + 1 / (2 * m), 0.5 - 1 / (2 * m)
    return [lo + (hi - lo) * k / (m - 1) for k in range(m)]


def build_grouped_bars(
    width: int,
    height: int,
    title: str,
    tasks: Sequence[str],
    series: Mapping[str, Sequence[Value]],
    stderr: Mapping[str, Sequence[Value]] | None = None,
    *,
    y_label: str | None = None,
    colors: Sequence[str] = PLOTEXT_COLORS,
    whiskers: str = "±1 stderr",
) -> Text:
    """A grouped bar chart (one group per task, one bar per series) as ``width`` x ``height`` Text.

    The last lines are the caption, wrapped between entries so none is cut at 80 columns: legend in
    series colours, ``whiskers = ±1 stderr`` when error bars are drawn, and which values were
    missing (drawn as empty bars, never as zeros that could pass for measurements).
    """
    width, height = int(width), int(height)
    names = [n for n in series]
    if not tasks or not names or all(all(v is None for v in series[n]) for n in names):
        return message(f"{title}: no data" if title else "no data", width, height)
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return message("(too small)", width, height)
    for n in names:
        if len(series[n]) != len(tasks):
            raise ValueError(f"series {n!r} has {len(series[n])} values for {len(tasks)} tasks")

    n_tasks = len(tasks)
    room = max(1, (width - 8) // n_tasks - 1)  # cells per group, minus a gap
    shortened = any(len(t) > room for t in tasks)
    labels = [_abbrev(t, room) if shortened else t for t in tasks]
    cols = [colors[k % len(colors)] for k in range(len(names))]
    ys = [[_num(v) for v in series[n]] for n in names]
    top = max((max(y) for y in ys), default=0.0)
    errs: list[list[float]] | None = None
    if stderr:
        errs = [[_num(v) for v in stderr.get(n, [None] * n_tasks)] for n in names]
        top = max([top] + [y + e for yy, ee in zip(ys, errs) for y, e in zip(yy, ee)])

    half_bar = 0.4 / max(1, len(names))  # multiple_bar's default width 4/5 of a group, split evenly

    def draw() -> None:
        plt.multiple_bar(labels, ys, color=cols)
        for off, name, yy in zip(_group_offsets(len(names)), names, ys):
            raw = series[name]
            for k, y in enumerate(yy):
                if raw[k] is not None and raw[k] == raw[k] and y == 0:
                    # a measured zero is a value, not a gap: write it where the bar would be
                    plt.text("0", k + 1 + off, (top or 1) * 0.03, color=cols[names.index(name)],
                             alignment="center")
        if errs is not None:
            for off, name, yy, ee in zip(_group_offsets(len(names)), names, ys, errs):
                raw = series[name]
                # beside the bar (its right edge), so a whisker never paints over the bar itself
                pts = [
                    (k + 1 + off + half_bar, y, e)
                    for k, (y, e) in enumerate(zip(yy, ee))
                    if e > 0 and raw[k] is not None and raw[k] == raw[k]
                ]
                if pts:
                    plt.error([p[0] for p in pts], [p[1] for p in pts], yerr=[2 * p[2] for p in pts], color="white")
        plt.xlim(0.5, n_tasks + 0.5)  # plotext clips the outer bars without this
        plt.ylim(0, top * 1.08 if top > 0 else 1)
        if title:
            plt.title(title)
        if y_label:
            plt.ylabel(y_label)

    entries: list[Text] = []
    zeros = any(v == 0 for n in names for v in series[n] if v is not None)
    for name, col in zip(names, cols):
        entries.append(Text.assemble(("██ ", col), name))
    if errs is not None:
        entries.append(Text(f"whiskers (right of each bar) = {whiskers}", "dim"))
    if zeros:
        entries.append(Text("0 = measured zero", "dim"))
    missing = [f"{t} ({n})" for n in names for t, v in zip(tasks, series[n]) if v is None or v != v]
    if missing:
        entries.append(Text("n/a: " + ", ".join(missing), "dim"))
    if shortened:
        entries.append(Text(" ".join(f"{_abbrev(t, room)}={t}" for t in tasks if _abbrev(t, room) != t), "dim"))
    # the caption wraps between entries (never cut mid-entry) while the plot keeps most of the rows
    caption = wrap_entries(entries, width)[: max(1, (height - MIN_HEIGHT) // 2)]
    for line in caption:
        line.no_wrap, line.end = True, ""
    chart = build_figure(width, height - len(caption), draw)
    return Text("\n", end="").join([chart, *caption])


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Runs not dominated in (lower Wh, higher accuracy), sorted by Wh.

    A run is on the front when no other run uses at most as much energy *and* is at least as
    accurate (strictly better in one).  These are the only runs worth choosing between.
    """
    ordered = sorted(points, key=lambda p: (p[1], -p[2]))
    front: list[tuple[str, float, float]] = []
    best = float("-inf")
    for p in ordered:
        if p[2] > best:
            front.append(p)
            best = p[2]
    return front


def _padded(lo: float, hi: float, left: float, right: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.2 or 1.0
        lo, hi = lo - span / 2, hi + span / 2
    return lo - span * left, hi + span * right


def build_scatter_pareto(
    width: int,
    height: int,
    title: str,
    points: Sequence[tuple[str, float, float]],
    *,
    x_label: str = "avg Wh per task",
    y_label: str = "avg accuracy",
    noise: float | None = None,
    errors: Mapping[str, tuple[float, float]] | None = None,
    front_labels: Sequence[str] | None = None,
) -> Text:
    """Scatter of ``(label, avg_wh, avg_acc)`` runs, labelled; the Pareto front as ◆ joined by a line.

    ``errors``: label → (accuracy noise, Wh noise), each point's 95 % half-widths, drawn as grey
    whiskers (the intervals). ``front_labels``: the front as the caller judged it (dominated only
    beyond noise, ``backend.results.ratios.pareto``); without it, the strict front.

    ``noise`` (2 standard errors of an average accuracy) draws a band around the best accuracy and
    keeps the accuracy axis at least that wide, so a difference within noise never looks large.
    Labels that would share a row and overlap are moved up or down a row.
    """
    width, height = int(width), int(height)
    pts = [(str(lab), float(x), float(y)) for lab, x, y in points if x is not None and y is not None]
    if not pts:
        return message(f"{title}: no data" if title else "no data", width, height)
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return message("(too small)", width, height)
    if front_labels is not None:
        front = sorted((p for p in pts if p[0] in set(front_labels)), key=lambda p: (p[1], -p[2]))
    else:
        front = pareto_front(pts)
    on_front = {(p[0], p[1], p[2]) for p in front}
    errors = errors or {}
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    best = max(ys)
    # Room on the right for the labels, which start just right of their point.
    x_lo, x_hi = _padded(min(xs), max(xs), 0.05, 0.35)
    y_min, y_max = min(ys), max(ys)
    if noise:
        y_min, y_max = min(y_min, best - 2 * noise), max(y_max, best + 1.2 * noise)
    y_lo, y_hi = _padded(y_min, y_max, 0.1, 0.1)
    plot_w, plot_h = max(1, width - 12), max(1, height - 5)
    lines = [[(p[1], p[2]) for p in front]] if len(front) > 1 else []
    rules = [best - noise, best + noise] if noise else []
    places = _dodge_labels(pts, x_lo, x_hi, y_lo, y_hi, plot_w, plot_h, lines=lines, rules=rules)

    def draw() -> None:
        if noise:
            for y in (best - noise, best + noise):
                plt.hline(y, color="gray")
        for lab, x, y in pts:  # the intervals, under the markers
            an, en = errors.get(lab, (0.0, 0.0))
            if en:
                plt.plot([x - en, x + en], [y, y], color="gray")
            if an:
                plt.plot([x, x], [y - an, y + an], color="gray")
        if len(front) > 1:
            plt.plot([p[1] for p in front], [p[2] for p in front], color="green", label="Pareto front")
        rest = [p for p in pts if p not in on_front]
        if rest:
            plt.scatter([p[1] for p in rest], [p[2] for p in rest], color="cyan", marker="●")
        plt.scatter([p[1] for p in front], [p[2] for p in front], color="green", marker="◆")
        for (lab, _, _), (x, y) in zip(pts, places):
            plt.text(lab, x, y, alignment="left")
        plt.xlim(x_lo, x_hi)
        plt.ylim(y_lo, y_hi)
        if title:
            plt.title(title)
        plt.xlabel(x_label)
        plt.ylabel(y_label)

    return build_figure(width, height, draw)


def _dodge_labels(pts: Sequence[tuple[str, float, float]], x_lo: float, x_hi: float, y_lo: float,
                  y_hi: float, plot_w: int, plot_h: int, *, lines: Sequence[Sequence[tuple[float, float]]] = (),
                  rules: Sequence[float] = ()) -> list[tuple[float, float]]:
    """Where each label goes (x of its first cell, y): beside its own marker, right of it or else left,
    on its row, else a row above or below; never over another label, a marker, a ``lines`` polyline
    (the Pareto front) or a ``rules`` row (the noise band), which would overwrite it or be hidden by
    it. Terminal rows are coarse: two close runs share one."""
    def col(x: float) -> int:
        return int(round((x - x_lo) / (x_hi - x_lo) * (plot_w - 1)))

    def row(y: float) -> int:
        return int(round((y - y_lo) / (y_hi - y_lo) * (plot_h - 1)))

    taken: dict[int, list[tuple[int, int]]] = {}

    def take(r: int, a: int, b: int) -> None:
        taken.setdefault(r, []).append((a, b))

    for _, x, y in pts:  # markers are taken cells too
        take(row(y), col(x), col(x))
    for line in lines:  # every cell a segment of the line passes through
        for (xa, ya), (xb, yb) in zip(line, line[1:]):
            ca, ra, cb, rb = col(xa), row(ya), col(xb), row(yb)
            steps = max(abs(cb - ca), abs(rb - ra), 1)
            for k in range(steps + 1):
                c, r = round(ca + (cb - ca) * k / steps), round(ra + (rb - ra) * k / steps)
                take(r, c, c)
    for y in rules:
        take(row(y), 0, plot_w)

    def free(r: int, a: int, b: int) -> bool:
        return 0 <= r < plot_h and a >= 0 and b < plot_w and all(b < s or a > e for s, e in taken.get(r, []))

    out: list[tuple[float, float]] = []
    for lab, x, y in pts:
        c0, r0, n = col(x), row(y), len(lab)
        spots = [(r0 + dr, start) for dr in (0, 1, -1, 2, -2) for start in (c0 + 2, c0 - 1 - n)]
        r, start = next(((r, s) for r, s in spots if free(r, s, s + n - 1)), (r0, c0 + 2))
        take(r, start, start + n - 1)
        out.append((x_lo + start / max(1, plot_w - 1) * (x_hi - x_lo),
                    y if r == r0 else y_lo + r / max(1, plot_h - 1) * (y_hi - y_lo)))
    return out


class _PlotextStatic(Static):
    """A ``Static`` that rebuilds its plotext figure at its own size on mount and resize.

    Subclasses size themselves with ``height: 1fr`` (not ``auto``): with ``auto`` the content
    would decide the height, the figure would be rebuilt for that height, and so on.
    """

    def build(self, width: int, height: int) -> Text:  # pragma: no cover - abstract
        raise NotImplementedError

    def redraw(self) -> None:
        """Rebuild at the current content size (no-op before the first layout)."""
        w, h = self.size.width, self.size.height
        if w > 0 and h > 0:
            self.update(self.build(w, h))

    def on_mount(self) -> None:
        self.redraw()

    def on_resize(self, event: Resize) -> None:
        self.redraw()


class GroupedBars(_PlotextStatic):
    """Grouped bars per task, e.g. vanilla vs pruned accuracy, or Wh, with ±stderr whiskers."""

    DEFAULT_CSS = """
    GroupedBars {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(
        self,
        title: str = "",
        tasks: Sequence[str] = (),
        series: Mapping[str, Sequence[Value]] | None = None,
        stderr: Mapping[str, Sequence[Value]] | None = None,
        *,
        y_label: str | None = None,
        whiskers: str = "±1 stderr",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", name=name, id=id, classes=classes)
        self.title = title
        self.whiskers = whiskers  # what a whisker is: "±1 stderr" (accuracy), "±95 % CI over repeats" (Wh)
        self.tasks = list(tasks)
        self.series = {k: list(v) for k, v in (series or {}).items()}
        self.stderr = {k: list(v) for k, v in stderr.items()} if stderr else None
        self.y_label = y_label

    def update_data(
        self,
        tasks: Sequence[str],
        series: Mapping[str, Sequence[Value]],
        stderr: Mapping[str, Sequence[Value]] | None = None,
        title: str | None = None,
    ) -> None:
        """Replace the data and redraw (call on the main thread)."""
        self.tasks = list(tasks)
        self.series = {k: list(v) for k, v in series.items()}
        self.stderr = {k: list(v) for k, v in stderr.items()} if stderr else None
        if title is not None:
            self.title = title
        self.redraw()

    def build(self, width: int, height: int) -> Text:
        return build_grouped_bars(
            width, height, self.title, self.tasks, self.series, self.stderr, y_label=self.y_label,
            whiskers=self.whiskers)


class ScatterPareto(_PlotextStatic):
    """Average accuracy (y) vs average Wh (x), one labelled point per run, Pareto front joined."""

    DEFAULT_CSS = """
    ScatterPareto {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(
        self,
        title: str = "Accuracy vs energy",
        points: Sequence[tuple[str, float, float]] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", name=name, id=id, classes=classes)
        self.title = title
        self.points = list(points)
        self.noise: float | None = None  # 2 stderr of an average accuracy: the band around the best
        self.errors: dict[str, tuple[float, float]] = {}  # label -> (acc, Wh) half-widths: whiskers
        self.front_labels: list[str] | None = None  # the front beyond noise, when the caller judged it

    def update_data(self, points: Sequence[tuple[str, float, float]], title: str | None = None) -> None:
        """Replace the ``(label, avg_wh, avg_acc)`` points and redraw (main thread)."""
        self.points = list(points)
        if title is not None:
            self.title = title
        self.redraw()

    def build(self, width: int, height: int) -> Text:
        return build_scatter_pareto(width, height, self.title, self.points, noise=self.noise, errors=self.errors,
                                    front_labels=self.front_labels)


__all__ = [
    "GroupedBars",
    "ScatterPareto",
    "TASK_ABBREV",
    "build_grouped_bars",
    "build_scatter_pareto",
    "pareto_front",
]
