"""Cell formatting shared by the screens (a missing figure is shown as missing, never as zero)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text

STATUS_STYLE = {"queued": "yellow", "running": "bold cyan", "done": "green", "failed": "bold red",
                "cancelled": "grey50", "interrupted": "bold magenta"}


def num(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def ratio_cell(x: float | None) -> Text:
    """×ratio coloured: energy or accuracy kept (≥1) green-ish, lost red-ish, neutral otherwise."""
    if x is None:
        return Text("—", style="dim")
    return Text(f"{x:.3f}")


def status_cell(status: str | None) -> Text:
    return Text(status or "?", style=STATUS_STYLE.get(status or "", ""))


def when(t: float | None) -> str:
    return "—" if not t else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def model_label(row: dict[str, Any]) -> str:
    name = row.get("model_name") or row.get("model_ref") or "?"
    ref = str(row.get("model_ref") or "")
    if name == ref and "/" in ref and Path(ref).is_absolute():
        return Path(ref).name
    return name


def method_label(row: dict[str, Any]) -> str:
    if row.get("kind") == "baseline" or row.get("no_prune") in (1, True, "true"):
        return "vanilla"
    return row.get("method") or "—"


def ratio_label(row: dict[str, Any]) -> str:
    if method_label(row) == "vanilla":
        return "—"
    r = row.get("prune_ratio")
    if r is None:
        return "—"
    for num_, den in ((1, 7), (2, 7), (3, 7), (1, 4), (1, 2)):
        if abs(r - num_ / den) < 1e-6:
            return f"{num_}/{den}"
    return f"{r:.3g}"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "—"


def params(n: int | None) -> str:
    if n is None:
        return "—"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)
