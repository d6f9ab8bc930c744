"""Process identity and the cancel flag's watcher: the run-side half of the control plane.

A pid alone names a process only until it exits; the kernel then hands the number to someone else.
Every pid greentui records therefore goes with the process's start time (psutil ``create_time``),
and a process is "the same" only when both match. Signals are sent only to such a verified process.

Cancelling is a flag in the run's row (``runs.cancel_requested``), not a signal: the process doing
the run polls it at safe points through :class:`CancelWatch` and raises :class:`RunCancelled`, so
every task that finished is already in the store, and a cancel can never land on another run.

Stdlib + psutil only: the TUI imports this module.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

#: Two start times closer than this are the same process (psutil derives them from clock ticks).
START_TOLERANCE_S = 0.05


class RunCancelled(BaseException):
    """Raised inside the run's process when its cancel flag is up (or on SIGTERM, the fallback).

    A ``BaseException`` like ``KeyboardInterrupt``: library code that catches ``Exception`` around
    a callback (lm-eval's progress hook, our own UI callbacks) must not swallow a cancel.

    ``status`` is what the run becomes: ``cancelled`` when someone cancelled it, ``interrupted`` when
    the machine stopped it (a scheduler's SIGTERM: time limit, a node going down, preemption), which
    is never reported as "cancelled by the user" and leaves its baseline to the executor (the job
    may be requeued and resume).
    """

    def __init__(self, reason: str = "cancelled by the user", status: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def process_start_time(pid: int | None = None) -> float | None:
    """psutil's start time of ``pid`` (default: this process), or None when it does not exist."""
    try:
        import psutil
        return float(psutil.Process(pid or os.getpid()).create_time())
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied, ZombieProcess
        return None


def same_process(pid: int | None, start: float | None) -> bool:
    """True when ``pid`` is alive, not a zombie, and started at ``start`` (the recorded identity).

    With no recorded start time (rows written before the control plane existed) a live pid is
    accepted, as before.
    """
    if not pid or pid <= 0:
        return False
    try:
        import psutil
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start is None or abs(proc.create_time() - float(start)) < START_TOLERANCE_S
    except Exception:  # noqa: BLE001
        return False


def signal_if_same(pid: int | None, start: float | None, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid`` only when it is still the recorded process; True when sent.

    There is a window between the check and ``kill`` in which the process could exit and the pid be
    reused; psutil's ``send_signal`` re-checks the identity it captured, which shrinks it to the
    kernel's own pid-reuse delay (pidfd would close it; psutil has no pidfd API).
    """
    if start is None or not same_process(pid, start):
        return False
    try:
        import psutil
        psutil.Process(pid).send_signal(sig)  # raises NoSuchProcess if the identity changed
        return True
    except Exception:  # noqa: BLE001
        return False


class CancelWatch:
    """Polls the cancel flag of a run (and of the baseline it spawned) at most every ``interval`` s.

    ``check()`` is called at the pipeline's safe points: stage boundaries, every progress callback
    (tasks, LoRA steps, pruning) and a forward pre-hook on the model (every lm-eval request batch);
    a stopped run therefore ends within about ``interval`` plus one forward pass.
    """

    def __init__(self, store: Any, run_id: int, interval: float = 1.0):
        self.store = store
        self.ids: list[int] = [run_id]
        self.interval = interval
        self._next = 0.0
        self.requested_at: float | None = None

    def watch(self, run_id: int) -> None:
        """Also obey the cancel flag of ``run_id`` (the baseline run this run evaluates)."""
        if run_id not in self.ids:
            self.ids.append(run_id)

    def check(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t < self._next:
            return
        self._next = t + self.interval
        try:
            flag = self._flag()
        except Exception:  # noqa: BLE001 - a busy database must not kill the run; ask again later
            return
        if flag is not None:
            self.requested_at = flag
            raise RunCancelled()

    def _flag(self) -> float | None:
        """The store's flag; a Slurm job's ``FileRecorder`` answers from its run folder instead."""
        if hasattr(self.store, "cancel_flag"):
            return self.store.cancel_flag(self.ids)
        if any(self.store.cancel_requested(i) for i in self.ids):
            return time.time()
        return None

    def hook(self, module: Any, args: Any) -> None:
        """``register_forward_pre_hook`` signature: checks before each forward of the model."""
        self.check()

    def attach(self, model: Any) -> Any:
        """Install the forward pre-hook on ``model``; returns the handle (``.remove()`` to undo)."""
        return model.register_forward_pre_hook(self.hook)
