"""Shared pieces of the benchmarks: rows of the table, medians, alternation, machine description.

Every figure is a ratio A/B of two things measured *alternately in the same run* (A B B A A B ...,
so a slow drift of the machine — another user's job starting — hits both sides alike). The A and B
columns are the medians of each side over N repeats, the ratio is median(A) / median(B), and the N
column gives the range of the per-repeat ratios A_i/B_i (how much to trust the ratio).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Row:
    figure: str          # "P1a" ...
    what: str            # one-line description of the figure
    a: float | None      # median of side A
    b: float | None      # median of side B
    unit: str            # unit of A and B ("ms", "s", "MB", ...)
    ratio: float | None  # median(A) / median(B)
    n: int               # repeats (pairs) behind the medians
    notes: str = ""
    a_label: str = "A"
    b_label: str = "B"
    extra: dict = field(default_factory=dict)
    spread: tuple[float, float] | None = None  # min and max of the per-repeat ratios A_i/B_i


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, list[float]]:
    """(median a, median b, the per-repeat ratios a_i/b_i)."""
    return median(a), median(b), [x / y for x, y in zip(a, b) if y]


def row_from_pairs(figure: str, what: str, a: Sequence[float], b: Sequence[float], unit: str, *,
                   a_label: str, b_label: str, notes: str = "", scale: float = 1.0, **extra) -> Row:
    ma, mb, ratios = paired(a, b)
    extra = dict(extra, a_values=list(a), b_values=list(b), paired_ratios=ratios)
    return Row(figure, what, ma * scale, mb * scale, unit, ma / mb if mb else float("nan"),
               min(len(a), len(b)), notes, a_label, b_label, extra,
               (min(ratios), max(ratios)) if len(ratios) > 1 else None)


def alternate(n: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list[float], list[float]]:
    """Run ``first`` and ``second`` ``n`` times each, alternating which goes first (ABBAAB...)."""
    a, b = [], []
    for i in range(n):
        if i % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ------------------------------------------------------------------------------------ machine

from backend.measure.machine import cpu_model  # noqa: E402  (one definition for backend and bench)


def machine_info() -> dict:
    import torch

    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "load_at_start": tuple(round(x, 2) for x in load),
        "git": _git_rev(),
    }


def _git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------------ subprocesses

def run_json(args: list[str], *, timeout: float = 900, env: dict | None = None) -> dict:
    """Run ``python args...`` and parse the last stdout line as JSON (the child's answer)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("PYTHONPATH", str(REPO))
    out = subprocess.run([PYTHON, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env=full_env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(args)} printed nothing; stderr:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------ table

def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if x != x:  # nan
        return "n/a"
    if unit in ("x", ""):
        return f"{x:.3f}"
    ax = abs(x)
    s = f"{x:.0f}" if ax >= 100 else f"{x:.1f}" if ax >= 10 else f"{x:.2f}" if ax >= 1 else f"{x:.3f}"
    return f"{s} {unit}"


def table_lines(rows: list[Row]) -> list[str]:
    head = ["figure", "A", "B", "ratio A/B", "median over N", "notes"]
    body = []
    for r in rows:
        body.append([f"{r.figure} {r.what}", f"{r.a_label}: {fmt(r.a, r.unit)}", f"{r.b_label}: {fmt(r.b, r.unit)}",
                     fmt(r.ratio), str(r.n) + (f" (pairs {r.spread[0]:.2f}–{r.spread[1]:.2f})" if r.spread else ""),
                     r.notes])
    return [("| " + " | ".join(head) + " |"), "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body)]


def header_lines(info: dict, mode: str, seconds: float | None = None) -> list[str]:
    load = ", ".join(str(x) for x in info["load_at_start"])
    line = (f"machine: {info['cpu']} · {info['cores']} cores · {info['mem_gib']} GiB · torch {info['torch']} "
            f"({info['torch_threads']} threads) · Python {info['python']} · load average at start {load}")
    lines = [f"## {info['date']} — bench/run {mode}" + (f" (git {info['git']})" if info.get("git") else ""),
             "", line]
    if seconds is not None:
        lines[-1] += f" · bench wall time {seconds / 60:.1f} min"
    return lines
