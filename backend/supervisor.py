"""Start, find and signal the detached runner — without importing torch (the TUI uses this).

The runner (``greentui worker``) is the only owner of execution (docs/architecture.md, after pueue): it runs in
its own session so an SSH drop that kills the TUI leaves it alone, holds an exclusive ``flock`` on
``.runner-<device>.lock`` so two runners never share a device, and exits when the queue is empty.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import GreentuiError
from .store import Store


def lock_path(workspace: Path, device: str) -> Path:
    return workspace / f".runner-{device.replace(':', '_')}.lock"


def runner_pid(workspace: Path, device: str = "auto") -> int | None:
    """PID of the live runner for ``device``, or None (probing the lock never blocks)."""
    path = lock_path(workspace, device)
    if not path.exists():
        return None
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (non-zombie) process."""
    if not pid or pid <= 0:
        return False
    try:
        import psutil
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def recover_stale_runs(store: Store) -> list[int]:
    """Mark running rows whose process is gone as interrupted (this pauses the queue)."""
    stale = [r["id"] for r in store.running_runs() if not pid_alive(r["pid"])]
    if stale:
        store.mark_interrupted(stale, "the runner process disappeared (killed or machine restarted)")
    return stale


def start_runner(workspace: Path, device: str = "auto") -> int:
    """Start a detached runner unless one holds the device's lock; return its pid."""
    pid = runner_pid(workspace, device)
    if pid:
        return pid
    log = (workspace / "runner.log").open("ab")
    cmd = [sys.executable, "-m", "backend", "--runs-dir", str(workspace), "worker", "--device", device]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True, env=env,
                            cwd=str(Path(__file__).resolve().parent.parent))
    log.close()
    reap_in_background(proc)
    return proc.pid


def reap_in_background(proc: subprocess.Popen) -> None:
    """Wait for a detached child in a daemon thread so that its exit is reaped at once.

    The runner outlives the TUI by design, but while the TUI lives it is the runner's parent: without
    a wait, every runner that finished stayed a zombie until the TUI exited.
    """
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def wait_for_runner_exit(workspace: Path, device: str = "auto", timeout: float = 600) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if not runner_pid(workspace, device):
            return True
        time.sleep(0.2)
    return False


def cancel_run(store: Store, run_id: int) -> str:
    """Cancel a queued run at once; ask a running run's process to stop (SIGTERM)."""
    run = store.require_run(run_id)
    if run["config"].get("executor") == "slurm":  # the job runs elsewhere: scancel, not a signal
        from .executors.slurm import request_cancel
        return request_cancel(store, store.path.parent, run_id)
    if run["status"] == "queued":
        store.cancel_queued(run_id)
        return "cancelled"
    if run["status"] != "running":
        raise GreentuiError(f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
    if not pid_alive(run["pid"]):
        recover_stale_runs(store)
        return "interrupted"
    try:
        os.kill(run["pid"], signal.SIGTERM)
    except ProcessLookupError:
        recover_stale_runs(store)
        return "interrupted"
    store.add_event(run_id, "log", {"line": "cancel requested (SIGTERM sent to the runner)"})
    return "cancelling"
