"""``greentui export``: the study's Table 1 (accuracy) and Table 2 (Wh) as md, csv, json or LaTeX."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli.commands.common import parse_run_id, workspace_and_store


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", parents=parents, help="print or write the study's accuracy and energy tables",
                       description="For each experiment a vanilla and a pruned row: seven tasks, Avg, and "
                                   "Ratio = pruned Avg / vanilla Avg. json and csv also carry stderr, meters "
                                   "and configs.")
    p.add_argument("runs", nargs="*", help="run ids (default: every finished experiment and import)")
    p.add_argument("--format", choices=("md", "csv", "json", "latex"), default="md")
    p.add_argument("--out", default=None, help="write to this file instead of stdout (never over the store "
                   "or into a run folder)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.results.export_file import check_export_target, write_export
    from backend.results.report import render
    ws, store = workspace_and_store(args, create=False)
    ids = [parse_run_id(r) for r in args.runs] or None
    target = check_export_target(Path(args.out), ws, force=args.force) if args.out else None
    for i in ids or []:
        store.runs.require(i)
    text = render(store, args.format, ids)
    if target is not None:
        write_export(target, text + "\n")
        print(args.out)
    else:
        print(text)
    return 0
