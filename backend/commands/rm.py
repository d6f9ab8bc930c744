"""``greentui rm RUN...``: delete runs, their results and their folders."""

from __future__ import annotations

import argparse
import shutil

from .common import parse_run_id, workspace_and_store


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rm", parents=parents, help="delete runs (not running ones) and their folders")
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..workspace import run_dir
    ws, store = workspace_and_store(args)
    ids = [parse_run_id(r) for r in args.runs]
    for i in ids:
        store.require_run(i)
    n = store.delete_runs(ids)
    for i in ids:
        shutil.rmtree(run_dir(ws, i), ignore_errors=True)
    print(f"deleted {n} run(s)")
    return 0
