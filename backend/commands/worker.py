"""``greentui worker``: drain the queue in the foreground (the TUI starts it detached)."""

from __future__ import annotations

import argparse

from ..workspace import resolve_workspace


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", parents=parents, help="run queued runs until the queue is empty",
                       description="Claim queued runs one at a time for DEVICE and execute them; exits when "
                                   "the queue is empty or paused. Only one worker per device runs at once.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--once", action="store_true", help="execute at most one run")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="slurm: submit the queued Slurm runs and follow their jobs until all have ended")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..worker import run_worker
    ws = resolve_workspace(args.runs_dir)
    if args.executor == "slurm":
        from ..executors.slurm import run_slurm_runner
        print(f"worker: followed {run_slurm_runner(ws)} Slurm job(s) to their end")
        return 0
    n = run_worker(ws, args.device, once=args.once)
    print(f"worker: executed {n} run(s)")
    return 0
