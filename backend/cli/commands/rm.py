"""``greentui rm RUN...``: delete runs, their results and their folders."""

from __future__ import annotations

import argparse
import sys

from backend.cli.commands.common import workspace_and_store
from backend.text import safe_text


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rm", parents=parents, help="delete runs (not running ones) and their folders")
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.service.runs import parse_run_id, remove
    ws, store = workspace_and_store(args, create=False)
    n, kept = remove(ws, store, [parse_run_id(r) for r in args.runs])
    for folder in kept:
        print(f"greentui: warning: could not remove {safe_text(folder)}", file=sys.stderr)
    print(f"deleted {n} run(s)")
    return 0
