"""``greentui ls``: one line per run, newest first."""

from __future__ import annotations

import argparse

from rich.table import Table

from backend.cli.commands.common import console, plain, workspace_and_store
from backend.results.fmt import method_label, ratio_label
from backend.results.fmt import num as fmt_float
from backend.results.fmt import when as fmt_time
from backend.text import NAME_LIMIT


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ls", parents=parents, help="list runs (newest first)",
                       description="List runs with their averages and ratios against their baseline.")
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    p.add_argument("--filter", default=None, help="text matched against what a row shows: model, status, kind, method, label, id")
    p.add_argument("--status", action="append", help="only runs in this state (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.execution.supervisor import recover_stale_runs
    _, store = workspace_and_store(args, create=False)
    recover_stale_runs(store)
    rows = store.runs.list(limit=args.limit, text=args.filter, statuses=args.status)
    table = Table(title=f"runs ({store.runs.count(text=args.filter, statuses=args.status)} in all)")
    for col in ("id", "model", "kind", "method", "ratio", "status", "avg acc", "avg Wh", "acc ×", "Wh ×", "created"):
        table.add_column(col, justify="right" if col in ("id", "ratio", "avg acc", "avg Wh", "acc ×", "Wh ×") else "left")
    for r in rows:
        # names are outside text: shown as written (never markup), control characters escaped, cut
        table.add_row(*plain(str(r["id"]), r["model_name"] or r["model_ref"] or "?", r["kind"],
                             method_label(r), ratio_label(r),  # the TUI's words: "vanilla", "2/7"
                             r["status"], fmt_float(r["avg_acc"]), fmt_float(r["avg_wh"], 4),
                             fmt_float(r["acc_ratio"]), fmt_float(r["wh_ratio"]), fmt_time(r["created_at"]),
                             limit=NAME_LIMIT))
    console().print(table)
    return 0
