"""``greentui queue MODEL``: enqueue a run and make sure a detached runner is draining the queue."""

from __future__ import annotations

import argparse
import sys

from backend.cli.commands.common import workspace_and_store
from backend.cli.commands.run_options import add_run_options, config_from_args


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queue", parents=parents, help="queue a run for the background runner",
                       description="Record a queued run and start the detached runner unless one is alive. "
                                   "`greentui queue --pause/--resume` pauses or resumes the queue.")
    add_run_options(p)
    p.add_argument("--no-start", action="store_true", help="only enqueue; do not start a runner")
    p.set_defaults(func=run)
    q = sub.add_parser("resume", parents=parents, help="resume a paused queue (after an interruption)")
    q.add_argument("--no-start", action="store_true", help="do not start a runner")
    q.set_defaults(func=resume)
    q = sub.add_parser("pause", parents=parents, help="pause the queue (the current run finishes)")
    q.set_defaults(func=pause)


def run(args: argparse.Namespace) -> int:
    from backend.service.runs import queue_run
    cfg = config_from_args(args, workspace_defaults=True)
    ws, store = workspace_and_store(args)
    queued = queue_run(ws, store, cfg, start=not args.no_start)
    for note in queued.notes:
        print(f"warning: {note}", file=sys.stderr)
    if queued.paused:
        print(f"queued run {queued.run_id}; the queue is paused (greentui resume to start it)")
    elif queued.runner_pid:
        where = "" if cfg.executor == "local" else f" for {cfg.executor}"
        print(f"queued run {queued.run_id}{where}; runner pid {queued.runner_pid}")
    print(queued.run_id)
    return 0


def resume(args: argparse.Namespace) -> int:
    from backend.service.runs import resume_queue
    ws, store = workspace_and_store(args)
    lines = resume_queue(ws, store, start=not args.no_start)
    print("; ".join(["queue resumed", *lines]))
    return 0


def pause(args: argparse.Namespace) -> int:
    _, store = workspace_and_store(args)
    store.queue.set_paused(True)
    print("queue paused")
    return 0
