"""``greentui worker``: drain the queue in the foreground (the TUI starts it detached)."""

from __future__ import annotations

import argparse

from backend.workspace import resolve_workspace


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", parents=parents, help="run queued runs until the queue is empty",
                       description="Execute queued runs on every free device at once (one run per GPU; the "
                                   "CPU is one slot unless --cpu-slots says more); exits when the queue is "
                                   "empty or paused. Runners share devices safely: one lock per device.")
    p.add_argument("--device", default="auto",
                   help="auto (every visible GPU, else the CPU), cpu, cuda (every GPU) or cuda:N")
    p.add_argument("--cpu-slots", type=int, default=None,
                   help="CPU runs at once, 1 to 64 (default: the workspace setting, 1); runs sharing the "
                        "CPU carry a note in their energy quality")
    p.add_argument("--save", action="store_true",
                   help="store --cpu-slots as the workspace setting (read by runners the TUI and queue start)")
    p.add_argument("--once", action="store_true", help="execute at most one run")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="the executor whose runs this runner drains: local (default), or one that hands runs to a "
                        "scheduler, e.g. slurm: it submits the queued runs and follows their jobs until all have "
                        "ended (one such runner per workspace)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.errors import GreentuiError
    from backend.execution.worker import CPU_SLOTS_SETTING, run_worker
    from backend.store import open_store
    ws = resolve_workspace(args.runs_dir)
    from backend.schema.wsconfig import check_cpu_slots
    if args.cpu_slots is not None:
        check_cpu_slots(args.cpu_slots)  # the rule of greentui.toml's [runner] cpu_slots
    if args.save:
        if args.cpu_slots is None:
            raise GreentuiError("--save needs --cpu-slots N")
        with open_store(ws) as store:
            store.settings.set(CPU_SLOTS_SETTING, str(args.cpu_slots))
        print(f"workspace setting: cpu_slots = {args.cpu_slots}")
    from backend.execution.executors import executor
    chosen = executor(args.executor)  # an unknown name: one line naming the known ones
    n = run_worker(ws, args.device, once=args.once, cpu_slots=args.cpu_slots, executors=[chosen.name])
    if chosen.job_label:
        print(f"worker: followed the {chosen.name} runs; submitted {n} this time")
    else:
        print(f"worker: executed {n} run(s)")
    return 0
