"""The study's figures as files a paper can use: SVG and PNG, drawn with matplotlib's Agg backend.

- ``radar-<model>``: like the GreenPruning paper's Figures 1–2 — accuracy and energy per task on two
  radars, each axis normalised to the largest value on it (so the winner touches the rim), vanilla in
  blue and the pruned cells in orange;
- ``bars-accuracy`` / ``bars-energy``: average accuracy and average Wh of every model's vanilla and
  pruned cells, grouped by model, with their error bars (2 standard errors of the average accuracy;
  the 95 % interval of the energy where repeats give one);
- ``pareto-wh`` / ``pareto-jpt``: every finished cell's average accuracy against its average Wh and
  J/token, with the intervals, and the Pareto front (``StudyAnswer.pareto_*``) joined by a line.

Why matplotlib through ``Figure`` + ``FigureCanvasAgg`` (never ``pyplot``): no display, no global
figure state, so a report can be written from any thread and on a headless box (Textual's screenshot
is not a figure). SVGs are written with a fixed hash salt and no date, so the same study writes the
same bytes. Heavy: only ``study report`` imports this module — never the UI.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from backend.results.study import StudyAnswer, StudyRow, _acc_noise
from backend.schema.tasks import task_label

VANILLA = "#1f77b4"   # the paper's blue
PRUNED = ("#ff7f0e", "#d95f02", "#fdae6b", "#a63603", "#fd8d3c", "#e6550d")  # oranges, one per cell
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
FORMATS = ("svg", "png")
PNG_DPI = 150


def _mpl() -> Any:
    import matplotlib
    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.hashsalt"] = "greentui"
    matplotlib.rcParams["font.size"] = 9
    return matplotlib


def _figure(width: float, height: float, **kw: Any):
    _mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, folder: Path, stem: str) -> list[Path]:
    out = []
    for fmt in FORMATS:
        path = folder / f"{stem}.{fmt}"
        meta = {"Date": None} if fmt == "svg" else {"Software": "greentui (matplotlib)"}
        fig.savefig(path, format=fmt, dpi=PNG_DPI, metadata=meta)
        out.append(path)
    return out


def slug(text: str) -> str:
    """A file-name-safe form of a model name (``Llama-3.1-8B`` stays, ``a/b c`` → ``a-b-c``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return s[:60] or "model"


def _plain(text: str) -> str:
    """Text from outside (model names) as matplotlib draws it: no mathtext (``$``), no control chars."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", str(text))
    return text.replace("$", r"\$")


def _series_label(r: StudyRow) -> str:
    return "vanilla" if r.variant == "vanilla" else f"cell {r.cell}: {r.label}"


# ------------------------------------------------------------------------------------------ radars

def normalise(series: list[list[float | None]]) -> list[list[float | None]]:
    """Each axis divided by the largest value on it (the study's per-task normalisation)."""
    if not series:
        return []
    out = [list(s) for s in series]
    for i in range(len(series[0])):
        vals = [v for s in series if (v := s[i]) is not None]
        top = max(vals) if vals else None
        for s in out:
            v = s[i]
            s[i] = None if v is None or not top or top <= 0 else v / top
    return out


def radar(folder: Path, model: str, rows: list[StudyRow], tasks: list[str]) -> list[Path]:
    """Accuracy and energy per task of one model's vanilla and pruned rows, normalised per task."""
    fig = _figure(9.0, 4.4)
    angles = [2 * math.pi * i / len(tasks) for i in range(len(tasks))] if tasks else []
    for k, (metric, title) in enumerate((("acc", "accuracy"), ("wh", "energy (Wh)"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="polar")
        ax.set_theta_offset(math.pi / 2)
        ax.set_theta_direction(-1)
        raw = [[getattr(r, metric).get(t) for t in tasks] for r in rows]
        for i, (r, values) in enumerate(zip(rows, normalise(raw))):
            colour = VANILLA if r.variant == "vanilla" else PRUNED[(i - 1) % len(PRUNED)]
            pts = [(a, v) for a, v in zip(angles, values) if v is not None]
            if not pts:
                continue
            xs = [a for a, _ in pts] + [pts[0][0]]
            ys = [v for _, v in pts] + [pts[0][1]]
            ax.plot(xs, ys, color=colour, linewidth=2.0 if r.variant == "vanilla" else 1.5,
                    label=_plain(_series_label(r)), zorder=3 if r.variant == "vanilla" else 2,
                    linestyle="-" if r.variant == "vanilla" else ("-", "--", ":", "-.")[(i - 1) % 4])
            ax.fill(xs, ys, color=colour, alpha=0.08)
        ax.set_xticks(angles)
        ax.set_xticklabels([task_label(t) for t in tasks])
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0])
        ax.set_yticklabels(["", "0.5", "", "1"], fontsize=7)
        ax.set_title(f"{title}, normalised per task", fontsize=9)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(_plain(model))
    return _save(fig, folder, f"radar-{slug(model)}")


# ------------------------------------------------------------------------------------------ bars

def bars(folder: Path, ans: StudyAnswer, metric: str) -> list[Path]:
    """Grouped bars: per model its vanilla and each pruned cell (avg accuracy or avg Wh), error bars;
    each bar is labelled ``v`` (vanilla) or its cell number, each group with its model."""
    n_bars = sum(1 + len(m.cells) for m in ans.models)
    fig = _figure(min(14.0, max(5.0, 1.5 + 0.55 * n_bars)), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8
    ticks: list[float] = []
    labels: list[str] = []
    for x, m in enumerate(ans.models):
        rows = [*m.vanilla[:1], *m.cells]
        w = width / max(1, len(rows))
        for i, r in enumerate(rows):
            pos = x - width / 2 + w * (i + 0.5)
            ticks.append(pos)
            labels.append("v" if r.variant == "vanilla" else str(r.cell))
            value = r.avg_acc if metric == "acc" else r.avg_wh
            if value is None:
                continue
            err = _acc_noise(r) if metric == "acc" else _wh_err(r)
            colour = VANILLA if r.variant == "vanilla" else PRUNED[(i - 1) % len(PRUNED)]
            ax.bar(pos, value, w * 0.9, color=colour, yerr=err or None, capsize=2, edgecolor="white",
                   error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        ax.text(x, -0.14, _plain(m.model), transform=ax.get_xaxis_transform(), ha="center", va="top")
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.5, len(ans.models) - 0.5)
    ax.set_ylabel("average accuracy" if metric == "acc" else "average Wh per task")
    what = "accuracy (±2 stderr)" if metric == "acc" else "energy per task (95 % interval where repeats give one)"
    ax.set_title(f"{_plain(ans.name)}: {what}; v = vanilla, n = cell n")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, folder, f"bars-{'accuracy' if metric == 'acc' else 'energy'}")


def _wh_err(r: StudyRow) -> float:
    w = r.wh_ratio
    if r.avg_wh is None or w is None or w.lo is None or w.hi is None:
        return 0.0
    return r.avg_wh * (w.hi - w.lo) / 2 / w.value


# ------------------------------------------------------------------------------------------ Pareto

def pareto(folder: Path, ans: StudyAnswer, axis: str) -> list[Path]:
    """Average accuracy vs average Wh (``axis="wh"``) or J/token (``"jpt"``), every finished row with
    its intervals, the Pareto front joined by a line."""
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    front = set(ans.pareto_wh if axis == "wh" else ans.pareto_jpt)
    on_front = []
    for k, m in enumerate(ans.models):
        colour = MODEL_COLOURS[k % len(MODEL_COLOURS)]
        for r in (*m.vanilla, *m.cells):
            x = r.avg_wh if axis == "wh" else r.j_per_token
            if x is None or r.avg_acc is None:
                continue
            xerr = _wh_err(r) if axis == "wh" else (_wh_err(r) / r.avg_wh * x if r.avg_wh else 0.0)
            ax.errorbar(x, r.avg_acc, yerr=_acc_noise(r) or None, xerr=xerr or None, fmt="o" if r.variant == "vanilla"
                        else "s", color=colour, markersize=5, capsize=2, elinewidth=0.8,
                        markerfacecolor="white" if r.variant == "vanilla" else colour)
            ax.annotate(_plain("v" if r.variant == "vanilla" else str(r.cell)), (x, r.avg_acc), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
            if (m.model, r.cell) in front:
                on_front.append((x, r.avg_acc))
                ax.plot(x, r.avg_acc, "o", markersize=12, markerfacecolor="none", markeredgecolor="#2ca02c",
                        markeredgewidth=1.5, zorder=4)
        ax.plot([], [], "s", color=colour, label=_plain(m.model))
    if on_front:
        on_front.sort()
        ax.plot([p[0] for p in on_front], [p[1] for p in on_front], "o-", color="#2ca02c", linewidth=1.2,
                zorder=0, markerfacecolor="none", markersize=12, label="Pareto front (circled)")
    ax.set_xlabel("average Wh per task" if axis == "wh" else "J per token")
    ax.set_ylabel("average accuracy")
    ax.set_title(f"{ans.name}: accuracy vs {'energy' if axis == 'wh' else 'J/token'} (upper left is better)")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, folder, f"pareto-{axis}")


def write_figures(folder: Path, ans: StudyAnswer) -> dict[str, list[Path]]:
    """Every figure of the report into ``folder``; name → its files (SVG, PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    for m in ans.models:
        rows = [*m.vanilla[:1], *[c for c in m.cells if c.acc]]
        if any(r.acc for r in rows):
            out[f"radar-{slug(m.model)}"] = radar(folder, m.model, rows, ans.tasks)
    if any(r.avg_acc is not None for r in ans.rows):
        out["bars-accuracy"] = bars(folder, ans, "acc")
        out["pareto-wh"] = pareto(folder, ans, "wh") if any(r.avg_wh is not None for r in ans.rows) else []
        out["pareto-jpt"] = pareto(folder, ans, "jpt") if any(r.j_per_token is not None for r in ans.rows) else []
    if any(r.avg_wh is not None for r in ans.rows):
        out["bars-energy"] = bars(folder, ans, "wh")
    return {k: v for k, v in out.items() if v}
