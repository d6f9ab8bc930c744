"""The process of one local run: ``python -m backend.execution.executors.local_job WORKSPACE RUN --device D``.

Started by the local executor with the run already ``running`` in the store, its device locks
inherited as open descriptors (held until this process exits) and ``CUDA_VISIBLE_DEVICES`` set to
its GPUs. It dies with its runner (``PR_SET_PDEATHSIG``), obeys the cancel flag through the
pipeline, and treats SIGTERM (the executor's fallback) as a cancel.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the runner dies; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the runner's death is found by recover_stale_runs
        pass
    if os.getppid() != parent:
        sys.exit(3)


def keep_locks_to_ourselves(fds: list[int]) -> None:
    """A helper process a library forks must not inherit the device locks: it could outlive this
    run and keep the device locked. Exec'd children never get them (not inheritable); forked
    ones close their copy at once (the lock stays with this process's descriptor)."""
    for fd in fds:
        os.set_inheritable(fd, False)

    def close_in_child() -> None:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    os.register_at_fork(after_in_child=close_in_child)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="greentui-local-job")
    ap.add_argument("workspace")
    ap.add_argument("run", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parent", type=int, default=0)
    ap.add_argument("--lock-fds", default="", help="inherited descriptors holding the device locks")
    args = ap.parse_args(argv)
    if args.parent:
        die_with_parent(args.parent)
    keep_locks_to_ourselves([int(x) for x in args.lock_fds.split(",") if x])

    from backend.execution.control import RunCancelled
    from backend.execution.pipeline import execute_run, quiet_libraries
    from backend.store import open_store

    def on_term(signum, frame):
        raise RunCancelled()
    signal.signal(signal.SIGTERM, on_term)
    quiet_libraries()
    store = open_store(Path(args.workspace))
    try:
        execute_run(store, Path(args.workspace), args.run, device=args.device)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
