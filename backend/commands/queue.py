"""``greentui queue MODEL``: enqueue a run and make sure a detached runner is draining the queue."""

from __future__ import annotations

import argparse

from .common import workspace_and_store
from ..errors import GreentuiError
from .run_options import add_run_options, apply_workspace_defaults, config_from_args, prepare_run


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
    from ..supervisor import recover_stale_runs, start_runner
    cfg = config_from_args(args)
    ws, store = workspace_and_store(args)
    cfg = apply_workspace_defaults(cfg, ws)
    if cfg.executor == "slurm":
        from ..executors.slurm import partition_problem, slurm_available
        why = slurm_available()
        if why:
            raise GreentuiError(f"--executor slurm: {why}")
        why = cfg.partition and partition_problem(cfg.partition)
        if why:
            raise GreentuiError(f"--partition: {why}")
    recover_stale_runs(store)
    run_id = prepare_run(store, cfg, status="queued")
    if store.queue_paused():
        print(f"queued run {run_id}; the queue is paused (greentui resume to start it)")
    elif not args.no_start and cfg.executor == "slurm":
        from ..executors.slurm import ensure_slurm_runner
        print(f"queued run {run_id} for Slurm; runner pid {ensure_slurm_runner(ws, store)}")
    elif not args.no_start:
        pid = start_runner(ws)
        print(f"queued run {run_id}; runner pid {pid}")
    print(run_id)
    return 0


def resume(args: argparse.Namespace) -> int:
    from ..supervisor import start_runner
    ws, store = workspace_and_store(args)
    store.set_queue_paused(False)
    if not args.no_start:
        print(f"queue resumed; runner pid {start_runner(ws)}")
        from ..executors.slurm import ensure_slurm_runner
        slurm_pid = ensure_slurm_runner(ws, store)
        if slurm_pid:
            print(f"Slurm runner pid {slurm_pid}")
    return 0


def pause(args: argparse.Namespace) -> int:
    _, store = workspace_and_store(args)
    store.set_queue_paused(True)
    print("queue paused")
    return 0
