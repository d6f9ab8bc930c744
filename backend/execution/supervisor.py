"""Start and find runners, recover dead runs, cancel — from the store, without importing torch.

The runner (``greentui worker``) is the only owner of execution (docs/architecture.md, after pueue). It runs in
its own session so an SSH drop that kills the TUI leaves it alone, registers itself in the store
(host, pid + process start time, devices) and writes a heartbeat every few seconds. A runner is
alive when its heartbeat is fresh and its pid still names the process that started at the recorded
time; no lock is ever taken to find out (a probe that takes a runner's lock makes a runner starting
at that instant think it has a rival). Device exclusion is a separate matter (``backend.execution.devices``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backend.execution.control import same_process
from backend.store import Store, open_store
from backend.workspace import CODE_ROOT

#: A runner beats every ``HEARTBEAT_S`` seconds; one silent for ``STALE_S`` is dead.
HEARTBEAT_S = 2.0
STALE_S = float(os.environ.get("GREENTUI_RUNNER_STALE_S", "30"))


def runner_alive(runner: dict[str, Any], now: float | None = None) -> bool:
    """Fresh heartbeat, and (on this host) the pid still names the process that registered."""
    if runner.get("stopped_at"):
        return False
    if (now or time.time()) - float(runner.get("heartbeat_at") or 0) > STALE_S:
        return False
    if runner.get("host") == socket.gethostname():
        return same_process(runner["pid"], runner.get("pid_start"))
    return True  # another host (a shared filesystem): the heartbeat is all we can see


def live_runners(store: Store) -> list[dict[str, Any]]:
    """Registered runners that are alive; dead registrations are closed on the way."""
    alive = []
    for r in store.runners.active():
        if runner_alive(r):
            alive.append(r)
        else:
            store.runners.stop(r["id"])
    return alive


def runner_pid(workspace: Path, device: str | None = None, store: Store | None = None, *,
               executor: str | None = None) -> int | None:
    """PID of a live runner of this workspace (for ``device``, running ``executor``, when given), or None."""
    own = store is None
    store = store or open_store(workspace)
    try:
        runners = live_runners(store)
    finally:
        if own:
            store.close()
    for r in runners:
        if device in (None, r.get("requested")) and (executor is None or executor in r.get("executors", [])):
            return int(r["pid"])
    return None


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (non-zombie) process (no identity check: prefer ``same_process``)."""
    return same_process(pid, None)


def run_alive(run: dict[str, Any], runners: dict[int, dict[str, Any]]) -> bool:
    """A local running row is alive when its process is (pid + start time), or — claimed but not yet
    started — when the runner that claimed it is."""
    if run.get("pid"):
        return same_process(run["pid"], run.get("pid_start"))
    runner = runners.get(run.get("runner_id") or -1)
    return runner is not None and runner_alive(runner)


def recover_stale_runs(store: Store) -> list[int]:
    """Mark running rows whose process is gone as interrupted (this pauses the queue).

    Runs a scheduler's job follows are left to their executor (``store.runs.running`` leaves them
    out): a job outlives the runner that submitted it, and the next runner re-attaches it by job id.
    """
    runners = {r["id"]: r for r in store.runners.active()}
    stale = []
    for run in store.runs.running():
        if not run_alive(run, runners):
            stale.append(run["id"])
    if stale:
        store.runs.mark_interrupted(stale, "the run's process disappeared (runner killed or machine restarted)")
    return stale


def start_runner(workspace: Path, device: str = "auto", cpu_slots: int | None = None) -> int:
    """Start a detached runner unless a live one serves ``device``; return its pid.

    Two runners started at once are harmless: device locks keep them off each other's slots.
    """
    pid = runner_pid(workspace, device, executor="local")
    if pid:
        return pid
    log = (workspace / "runner.log").open("ab")
    cmd = [sys.executable, "-m", "backend", "--runs-dir", str(workspace), "worker", "--device", device]
    if cpu_slots:
        cmd += ["--cpu-slots", str(cpu_slots)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True, env=env,
                            cwd=str(CODE_ROOT))
    log.close()
    reap_in_background(proc)
    return proc.pid


def reap_in_background(proc: subprocess.Popen) -> None:
    """Wait for a detached child in a daemon thread so that its exit is reaped at once.

    The runner outlives the TUI by design, but while the TUI lives it is the runner's parent: without
    a wait, every runner that finished stayed a zombie until the TUI exited.
    """
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def wait_for_runner_exit(workspace: Path, device: str | None = None, timeout: float = 600) -> bool:
    """Wait until no live runner (for ``device``) is registered; False on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        if not runner_pid(workspace, device):
            return True
        time.sleep(0.2)
    return False


def cancel_run(store: Store, run_id: int) -> str:
    """Cancel a queued run at once, or ask a running one to stop, the way its executor does it
    (``Executor.cancel``: the run's flag for a process here, the scheduler for a job)."""
    from backend.execution.executors.registry import executor_of
    run = store.runs.require(run_id)
    return executor_of(run).cancel(store, run)


def wait_for_cancel(store: Store, run_id: int, *, grace: float = 20.0, kill_grace: float = 10.0,
                    timeout: float = 120.0, poll: float = 0.2) -> str:
    """Wait for a cancelled run to stop; escalate for a run no runner supervises (``greentui run``).

    A runner escalates for its own runs (``LocalDispatcher.on_cancel``). A foreground run has no
    runner, so ``greentui cancel --wait`` does it: SIGTERM after ``grace`` seconds, SIGKILL after
    ``kill_grace`` more — each only to the process whose pid *and* start time were recorded — and
    closes the row as cancelled once that process is gone. Returns the run's final status (or
    ``running`` on timeout).
    """
    import signal

    from backend.execution.control import signal_if_same
    t0 = time.time()
    termed = killed = False
    while time.time() - t0 < timeout:
        run = store.runs.require(run_id)
        if run["status"] != "running":
            return run["status"]
        own = run.get("runner_id") is None and (run.get("executor") or "local") == "local"
        waited = time.time() - t0
        if own and run.get("pid"):
            if not same_process(run["pid"], run.get("pid_start")):
                how = "killed" if killed else "stopped with SIGTERM" if termed else "gone"
                store.runs.finish(run_id, "cancelled", f"cancelled by the user (its process {how})")
                continue
            if not termed and waited >= grace:
                termed = signal_if_same(run["pid"], run.get("pid_start"), signal.SIGTERM)
                store.events.add(run_id, "log", {"line": f"cancel not honoured after {grace:.0f} s: SIGTERM sent"})
            elif termed and not killed and waited >= grace + kill_grace:
                killed = signal_if_same(run["pid"], run.get("pid_start"), signal.SIGKILL)
                store.events.add(run_id, "log", {"line": "SIGTERM not honoured: SIGKILL sent"})
        time.sleep(poll)
    return store.runs.require(run_id)["status"]
