"""How figures are written, for the CLI's tables and the TUI's cells alike (one module: a missing
figure is shown as missing, "—", never as zero). Light imports only (rich): the UI imports it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text

from backend.results.ratios import Ratio
from backend.schema.settings import ratio_text
from backend.text import NAME_LIMIT, safe_name, safe_text

STATUS_STYLE = {"queued": "yellow", "running": "bold cyan", "done": "green", "failed": "bold red",
                "cancelled": "grey50", "interrupted": "bold magenta"}


def plain(value: Any, limit: int | None = None, style: str = "") -> Text:
    """Outside text (a name, an error, a log line) as a Rich ``Text``: shown as written, never read as
    markup, control characters escaped and cut at ``limit`` (``backend.text.safe_text``)."""
    return value if isinstance(value, Text) else Text(safe_text(value, limit), style=style)


def num(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def ratio_cell(r: Ratio | None, compact: bool = False) -> Text:
    """A pruned/vanilla ratio with its interval (``backend.results.ratios``): ``0.912 ±0.028``,
    ``≈1 (inconclusive)``, ``0.912 (n=1)``; ``compact`` for narrow columns (``0.91±.03``, ``≈1``,
    ``0.91 n=1``). Never a bare number: a ratio without its noise reads as an answer it is not."""
    if r is None:
        return Text("—", style="dim")
    return Text(r.compact() if compact else r.cell(), style="dim" if r.inconclusive or not r.has_interval else "")


def status_cell(status: str | None) -> Text:
    return Text(status or "?", style=STATUS_STYLE.get(status or "", ""))


def when(t: float | None) -> str:
    """A timestamp as local date and minute."""
    return "—" if not t else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def short_when(t: float | None) -> str:
    """A timestamp as month-day and minute (``01-31 14:05``), for tables short of room."""
    return "—" if not t else time.strftime("%m-%d %H:%M", time.localtime(t))


def model_label(row: dict[str, Any], limit: int = NAME_LIMIT) -> str:
    """The model's name as tables show it (a local path by its folder's name): outside text made
    safe (control characters escaped, cut at ``limit``); show it as plain text, never markup."""
    name = row.get("model_name") or row.get("model_ref") or "?"
    ref = str(row.get("model_ref") or "")
    if name == ref and "/" in ref and Path(ref).is_absolute():
        name = Path(ref).name
    return safe_name(name, limit)


def method_label(row: dict[str, Any]) -> str:
    if row.get("kind") == "baseline" or row.get("no_prune") in (1, True, "true"):
        return "vanilla"
    return row.get("method") or "—"


def ratio_label(row: dict[str, Any]) -> str:
    """The pruning ratio as the study writes it (2/7), "—" for vanilla rows."""
    if method_label(row) == "vanilla":
        return "—"
    r = row.get("prune_ratio")
    return "—" if r is None else ratio_text(r)


def partial_mark(row: dict[str, Any]) -> str:
    """"*" when a run's averages cover fewer tasks than it was asked for (running, cancelled, failed):
    the TUI's Runs table and ``greentui ls`` mark such averages and say so under the table."""
    done, planned = row.get("tasks_done"), row.get("tasks_planned")
    return "*" if done and planned and done < planned else ""


PARTIAL_NOTE = "* average over part of the tasks"


def method_with_ratio(row: dict[str, Any]) -> str:
    """One cell for narrow tables: "taylor 2/7", or "vanilla" alone."""
    method, ratio = method_label(row), ratio_label(row)
    return method if ratio == "—" else f"{method} {ratio}"


def size(n: int | None) -> str:
    """Bytes in binary units (5.0 MiB)."""
    if n is None:
        return "—"
    for div, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def params(n: int | None) -> str:
    if n is None:
        return "—"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)
