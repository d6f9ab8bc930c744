"""``greentui doctor``: check the workspace's store and run folders; ``--repair`` fixes what is safe."""

from __future__ import annotations

import argparse

from backend.text import safe_text


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", parents=parents, help="check (and --repair) the workspace",
                       description="Checks the store's integrity, runs left running by a process that is "
                                   "gone, run folders with no run and finished runs whose folder is gone. "
                                   "Exits 1 when it prints a PROBLEM. --repair rebuilds a damaged store "
                                   "(keeping a copy), marks stale runs interrupted and moves orphaned "
                                   "folders into orphaned/; nothing is deleted.")
    p.add_argument("--repair", action="store_true", help="repair what can be repaired safely")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.service.doctor import diagnose
    from backend.workspace import resolve_workspace
    ws = resolve_workspace(getattr(args, "runs_dir", None), create=False)
    report = diagnose(ws, repair=args.repair)
    for f in report.findings:
        print(safe_text(f"{f.mark:<7} {f.check}: {f.detail}" + (f" — {f.action}" if f.action else "")))
    return 0 if report.ok else 1
