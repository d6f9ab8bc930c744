"""``greentui cancel RUN``: cancel a queued run, or raise a running run's cancel flag (``--wait``: until
it has stopped, escalating to SIGTERM/SIGKILL for a foreground run that ignores the flag)."""

from __future__ import annotations

import argparse

from backend.cli.commands.common import workspace_and_store
from backend.text import safe_text


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cancel", parents=parents, help="cancel a queued or running run")
    p.add_argument("run")
    p.add_argument("--wait", action="store_true",
                   help="wait until the run has stopped (a foreground run that ignores the flag for 20 s "
                        "gets SIGTERM, then SIGKILL)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.service.runs import cancel, parse_run_id
    _, store = workspace_and_store(args, create=False)
    run_id = parse_run_id(args.run)
    outcome = cancel(store, run_id)
    print(f"run {run_id}: {safe_text(outcome)}")
    if args.wait and outcome == "cancelling":
        from backend.execution.supervisor import wait_for_cancel
        print(f"run {run_id}: {wait_for_cancel(store, run_id)}")
    return 0
