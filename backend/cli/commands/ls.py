"""``greentui ls``: one line per run, newest first.

The table fits the terminal without ever cutting a number: below the width the whole column set
needs, columns are dropped or merged in a fixed order (the date, then kind; method and ratio become
one "taylor 2/7" cell, as in the TUI's narrow Runs table; the headers shorten) and only the model
name, which is text, is cut with "…". Averages over part of a run's tasks (a run still running, or
one that stopped early) carry "*", explained under the table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from backend.cli.commands.common import console, workspace_and_store
from backend.results.fmt import PARTIAL_NOTE, method_label, method_with_ratio, model_label, partial_mark, ratio_label
from backend.results.fmt import num as fmt_float
from backend.results.fmt import when as fmt_time
from backend.results.ratios import Ratio, attach, compact
from backend.results.ratios import cell as ratio_text
from backend.text import NAME_LIMIT, safe_text

#: the model column keeps at least this many characters before a column set is given up
MODEL_MIN = 12


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ls", parents=parents, help="list runs (newest first)",
                       description="List runs with their averages and ratios against their baseline. "
                                   "In a narrow terminal, columns are dropped or merged; numbers are never "
                                   "cut. '*' marks an average over part of a run's tasks.")
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    p.add_argument("--filter", default=None, help="text matched against what a row shows: model, status, kind, method, label, id")
    p.add_argument("--status", action="append", help="only runs in this state (repeatable)")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    number: bool = False          # right-aligned, never cut


def _what(r: dict[str, Any]) -> str:
    """The narrow sets' one cell for kind, method and ratio: "taylor 2/7", "vanilla", "reference"."""
    return r["kind"] if r["kind"] in ("reference", "import") else method_with_ratio(r)


def ratio_cell(r: Ratio | None) -> str:
    """``0.912 ±0.028``, ``≈1 (inconclusive)`` or ``0.912 (n=1)``: never a bare ratio."""
    return ratio_text(r)


def _avg(key: str, digits: int) -> Callable[[dict[str, Any]], str]:
    return lambda r: fmt_float(r[key], digits) + (partial_mark(r) if r[key] is not None else "")


ID = Column("id", lambda r: str(r["id"]), number=True)
MODEL = Column("model", lambda r: model_label(r))
WIDE = [ID, MODEL, Column("kind", lambda r: r["kind"]), Column("method", method_label),
        Column("ratio", ratio_label, number=True), Column("status", lambda r: r["status"]),
        Column("avg acc", _avg("avg_acc", 3), number=True), Column("avg Wh", _avg("avg_wh", 4), number=True),
        Column("acc ×", lambda r: ratio_cell(r["acc_ratio_ci"]), number=True),
        Column("Wh ×", lambda r: ratio_cell(r["wh_ratio_ci"]), number=True),
        Column("created", lambda r: fmt_time(r["created_at"]))]
#: the ratios in their compact form (0.91±.03, ≈1, 0.91 n=1) for the narrowest terminals
COMPACT = [Column("acc×", lambda r: compact(r["acc_ratio_ci"]), number=True),
           Column("Wh×", lambda r: compact(r["wh_ratio_ci"]), number=True)]
#: the narrow sets, widest first: what answers "what did pruning cost and save" stays to the last
NARROW = [
    [ID, MODEL, Column("method", _what), Column("status", lambda r: r["status"]),
     *WIDE[6:10]],
    [ID, MODEL, Column("method", _what), Column("acc", _avg("avg_acc", 3), number=True),
     Column("Wh", _avg("avg_wh", 4), number=True), *WIDE[8:10]],
    [ID, MODEL, Column("acc", _avg("avg_acc", 3), number=True), Column("Wh", _avg("avg_wh", 4), number=True),
     *WIDE[8:10]],
    [ID, MODEL, Column("acc", _avg("avg_acc", 3), number=True), Column("Wh", _avg("avg_wh", 4), number=True),
     *COMPACT],
]


def _needed(columns: list[Column], cells: list[list[str]]) -> int:
    """Width of a rich table (heavy-head box, padding 1) of these columns, the model at MODEL_MIN."""
    widths = []
    for i, col in enumerate(columns):
        w = max([len(col.header), *(len(row[i]) for row in cells)])
        widths.append(min(w, MODEL_MIN) if col is MODEL else w)
    return sum(w + 2 for w in widths) + len(columns) + 1


def choose_columns(rows: list[dict[str, Any]], width: int) -> tuple[list[Column], list[list[str]]]:
    """The widest column set whose numbers fit in ``width``, with its cells (control characters of a
    name shown escaped: they would reach the terminal as commands)."""
    for columns in (WIDE, *NARROW):
        cells = [[safe_text(c.cell(r), NAME_LIMIT) for c in columns] for r in rows]
        if _needed(columns, cells) <= width:
            return columns, cells
    return columns, cells  # the narrowest: its numbers still are never cut (the line wraps instead)


def run(args: argparse.Namespace) -> int:
    from backend.execution.supervisor import recover_stale_runs
    _, store = workspace_and_store(args, create=False)
    recover_stale_runs(store)
    rows = attach(store, store.runs.list(limit=args.limit, text=args.filter, statuses=args.status))
    con = console()
    columns, cells = choose_columns(rows, con.width)
    table = Table(title=f"runs ({store.runs.count(text=args.filter, statuses=args.status)} in all)")
    widths = [max([len(col.header), *(len(row[i]) for row in cells)]) for i, col in enumerate(columns)]
    spare = con.width - (_needed(columns, cells) - MODEL_MIN)   # what the model name may take
    for col, width in zip(columns, widths):
        if col is MODEL:  # the one cell that may be cut ("…"): text, not a figure
            table.add_column(col.header, no_wrap=True, overflow="ellipsis", width=max(MODEL_MIN, min(width, spare)))
        else:             # fixed at its widest cell: rich never squeezes a number
            table.add_column(col.header, justify="right" if col.number else "left", no_wrap=True, width=width)
    for row in cells:
        table.add_row(*(Text(c) for c in row))  # text, never markup: a model name is data
    con.print(table)
    if any(partial_mark(r) and (r["avg_acc"] is not None or r["avg_wh"] is not None) for r in rows):
        con.print(PARTIAL_NOTE, markup=False, highlight=False)
    return 0
