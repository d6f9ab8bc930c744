"""``greentui cancel RUN``: cancel a queued run, or signal a running one to stop."""

from __future__ import annotations

import argparse

from .common import workspace_and_store


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cancel", parents=parents, help="cancel a queued or running run")
    p.add_argument("run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runs import cancel, parse_run_id
    _, store = workspace_and_store(args, create=False)
    run_id = parse_run_id(args.run)
    print(f"run {run_id}: {cancel(store, run_id)}")
    return 0
