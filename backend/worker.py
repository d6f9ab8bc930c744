"""The runner: claims queued runs one at a time for its device and executes them in-process.

Started detached (own session) by the TUI or ``greentui queue``; it holds an exclusive ``flock`` on
the device's lock file for its whole life, so two runners never share a device, and exits when the
queue is empty or paused. In-process execution (rather than a child per run) keeps ``runs.pid`` the
process that actually does the work: if the runner is killed, the next start sees a stale pid and
marks the run interrupted. SIGTERM cancels the current run (and only that run).
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

from .pipeline import RunCancelled, execute_run, quiet_libraries
from .store import open_store
from .supervisor import lock_path, recover_stale_runs


def _raise_cancel(signum, frame) -> None:
    raise RunCancelled()


def run_worker(workspace: Path, device: str = "auto", once: bool = False) -> int:
    """Drain the queue; return the number of runs executed (0 when another runner holds the lock)."""
    lock = lock_path(workspace, device).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    quiet_libraries()
    store = open_store(workspace)
    recover_stale_runs(store)
    done = 0
    previous = signal.signal(signal.SIGTERM, _raise_cancel)
    try:
        while True:
            run = store.claim_next_run(os.getpid(), device)
            if run is None:
                break
            execute_run(store, workspace, run["id"])
            done += 1
            if once:
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.close()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    return done
