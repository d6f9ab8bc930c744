"""Executors: the places where the runner's runs execute (this machine's devices, a Slurm cluster).

The runner (``backend.execution.worker``) owns the loop and the store; an executor owns *where and how* a
run executes. Every tick (~0.5 s) the runner calls, for each executor::

    poll(store)                       # reap finished work, follow job states, ingest results
    on_cancel(store, run)             # for each of its running runs whose cancel flag is up
    offer = reserve(run)              # for queued runs, in queue order, while it returns offers
    launch(store, run, offer)         # after the runner claimed the run (queued → running)

and it exits when no executor is ``busy()`` and no queued run is ``wanted`` by any executor.

The two executors: ``local`` (``backend.execution.executors.local``: every device of this machine a slot)
and ``slurm`` (``backend.execution.executors.slurm``'s ``SlurmRunner``, one job per run through submitit,
wrapped by :class:`SlurmExecutor` below: it reserves nothing through the runner because the Slurm
runner reserves its submissions in ``slurm_jobs`` itself, and each ``poll`` is one ``step`` of it).
The TUI and ``greentui queue`` start a local runner (``worker``) and, for Slurm runs, a Slurm one
(``worker --executor slurm``); both register and beat a heartbeat the same way.

Writing an executor
-------------------
Subclass :class:`Executor`, set ``name`` (a run asks for one with ``config["executor"]``, default
``"local"``) and register a factory in :data:`FACTORIES`. A factory gets a :class:`RunnerContext`
and returns an executor, or None when it cannot work here.

Contract of each method (all called from the runner's one thread; never block for long):

* ``wants(run)`` — True when ``run`` (a queued row with ``config`` parsed) is for this executor.
  Only the executor that wants a run may reserve it.
* ``refusal(run)`` — a one-line reason when this executor wants ``run`` but can never place it
  (``--gpus 4`` on a two-GPU box); the runner then claims it and fails it with that reason.
* ``reserve(run)`` — capacity for ``run`` *now* (device locks, a submission budget), or None when
  there is none at the moment. Must not touch the store. The runner then claims the run in the store
  and calls ``launch``, or ``release(offer)`` when another runner claimed it first.
* ``launch(store, run, offer)`` — start the run, already ``running`` in the store with
  ``runner_id``/``executor``/``device``/``slot`` set. Record how to find it again
  (``store.record_process`` for a local process; ``store.runs.update(job_id=..., job_state=...,
  node=...)`` for a scheduler). Failing to start = ``store.runs.finish(id, "failed", reason)``.
* ``poll(store)`` — follow what was launched: finished local processes, scheduler states
  (``job_state`` is shown verbatim in the Queue screen), results to ingest. A run that ended without
  closing its row is closed here (``finish_run`` only changes a row still ``running``).
* ``on_cancel(store, run)`` — ``run`` (with ``cancel_requested``) is running under this executor
  and its flag is up. Locally the run's process sees the flag itself; the executor only escalates
  (SIGTERM, then SIGKILL, to the verified process) after a grace period. A scheduler executor cancels
  the job (scancel) and closes the row as ``cancelled`` once the job is gone.
* ``attach(store)`` — at the runner's start: adopt runs a previous runner left ``running`` under
  this executor that can still be followed (Slurm jobs by id). Runs that cannot be adopted are left
  to ``supervisor.recover_stale_runs`` (→ ``interrupted``, the queue pauses).
* ``owns(run)`` — True when a running row belongs to this executor (``runs.executor``); local
  liveness rules (pid + start time) apply only to runs that no other executor owns.
* ``busy()`` — True while something launched by this executor is still running.
* ``shutdown(store)`` — the runner is stopping (SIGTERM): local runs are asked to cancel; scheduler
  jobs are left running to be re-attached by the next runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.schema.catalog import EXECUTORS  # noqa: F401 (the names live in the catalog)
from backend.store import Store


@dataclass
class RunnerContext:
    """What an executor factory gets from the runner."""

    workspace: Path
    runner_id: int
    requested_device: str = "auto"        # greentui worker --device
    cpu_slots: int = 1                    # --cpu-slots or the workspace setting
    options: dict[str, Any] = field(default_factory=dict)  # per-executor options (greentui.toml …)


class Executor:
    """Base class; see the module docstring for the contract."""

    name = "base"

    def wants(self, run: dict[str, Any]) -> bool:
        return run_executor(run) == self.name

    def owns(self, run: dict[str, Any]) -> bool:
        return (run.get("executor") or "local") == self.name

    def refusal(self, run: dict[str, Any]) -> str | None:
        return None

    def reserve(self, run: dict[str, Any]) -> Any | None:
        raise NotImplementedError

    def release(self, offer: Any) -> None:
        """Give back an offer the runner could not use (the run was claimed elsewhere)."""

    def launch(self, store: Store, run: dict[str, Any], offer: Any) -> None:
        raise NotImplementedError

    def poll(self, store: Store) -> None:
        """Follow launched runs; close the rows of runs that ended without closing them."""

    def on_cancel(self, store: Store, run: dict[str, Any]) -> None:
        """The run's cancel flag is up."""

    def attach(self, store: Store) -> list[int]:
        """Adopt runs left running by a previous runner; return their ids."""
        return []

    def busy(self) -> bool:
        return False

    def devices(self) -> list[str]:
        """Labels of what this executor runs on (registered with the runner)."""
        return []

    def shutdown(self, store: Store) -> None:
        """The runner is stopping."""

    def close(self) -> None:
        """The runner has stopped: release what the executor held (locks)."""


def run_executor(run: dict[str, Any]) -> str:
    """The executor a run asked for (``config["executor"]``, default ``local``)."""
    cfg = run.get("config") or {}
    return str(cfg.get("executor") or "local")


Factory = Callable[[RunnerContext], "Executor | None"]

#: name → factory. ``local`` is always there; the Slurm executor registers itself on import.
FACTORIES: dict[str, Factory] = {}


def _local(ctx: RunnerContext) -> Executor:
    from backend.execution.executors.local import LocalExecutor
    return LocalExecutor.create(ctx)


class SlurmExecutor(Executor):
    """The Slurm runner (``backend.execution.executors.slurm.SlurmRunner``) as an executor of the runner loop.

    One per workspace: it holds ``.runner-slurm.lock`` for its life (exclusion only; liveness is the
    runner registry's heartbeat). Cancels go straight to ``scancel`` (``supervisor.cancel_run``), so
    it owns no cancel flags; jobs outlive it and the next Slurm runner follows them again.
    """

    name = "slurm"

    def __init__(self, workspace: Path, lock: Any):
        self.workspace, self._lock = workspace, lock
        self._runner: Any = None
        self._open = True
        self._stopping = False
        self._next = 0.0

    @classmethod
    def create(cls, ctx: RunnerContext) -> "SlurmExecutor | None":
        import fcntl
        import os

        from backend.execution.executors.slurm import lock_path
        lock = lock_path(ctx.workspace).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return None  # another Slurm runner follows this workspace's jobs
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        return cls(ctx.workspace, lock)

    def owns(self, run: dict[str, Any]) -> bool:
        return False  # cancel = scancel by cancel_run; no flag to escalate here

    def reserve(self, run: dict[str, Any]) -> Any | None:
        return None  # SlurmRunner reserves its submissions itself (claim_slurm_submission)

    def poll(self, store: Store) -> None:
        import time

        from backend.execution.executors.slurm import POLL_S, SlurmRunner
        if self._stopping or time.monotonic() < self._next:
            return  # squeue/sacct every POLL_S, not every runner tick: spare the controller
        self._next = time.monotonic() + POLL_S
        if self._runner is None:
            self._runner = SlurmRunner(self.workspace, store)
        self._open = bool(self._runner.step())

    def busy(self) -> bool:
        return self._open

    def devices(self) -> list[str]:
        return ["slurm"]

    def shutdown(self, store: Store) -> None:
        self._stopping, self._open = True, False  # jobs run on; the next Slurm runner follows them

    def close(self) -> None:
        import fcntl
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


FACTORIES["local"] = _local
FACTORIES["slurm"] = SlurmExecutor.create
