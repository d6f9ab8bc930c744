"""The executor contract: what every executor answers, on each side of the queue.

An executor has two halves, so that deciding and showing never needs what executing needs:

* :class:`Executor` — one registered instance per name, light (no torch, no scheduler client at
  import). The service layer, the CLI and, through the service layer, the UI ask it: is it available
  here and why not; what the workspace's ``greentui.toml`` fills in; what it checks at queue time;
  how its runner is started; how a run is cancelled; which log files Run detail tails; which
  columns it adds to the Queue screen; which states it reports and what they mean for the run.
* :class:`Dispatcher` — made by :meth:`Executor.dispatcher` inside a runner process: it places
  queued runs (device slots, a scheduler's submissions) and follows them until they end.

Only the registry (``backend.execution.executors.registry``) knows which executors exist; nothing
above it names one. A new executor is one module with these two classes and a registration (an
entry point of the ``greentui.executors`` group, or :func:`register`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backend.errors import GreentuiError
from backend.store import Store
from backend.workspace import CODE_ROOT

if TYPE_CHECKING:
    from backend.schema.runconfig import RunConfig


@dataclass
class RunnerContext:
    """What :meth:`Executor.dispatcher` gets from the runner process that will drive it."""

    workspace: Path
    runner_id: int
    requested_device: str = "auto"        # greentui worker --device
    cpu_slots: int = 1                    # --cpu-slots or the workspace setting
    options: dict[str, Any] = field(default_factory=dict)  # per-executor options


@dataclass(frozen=True)
class QueueColumn:
    """A column an executor adds to the Queue screen: its key, its label and its cell for a queue row
    (a row of ``store.runs.list``: the run with its job's ``job_id``, ``job_state``, ``job_reason``,
    ``node``, ``job_restarts``)."""

    key: str
    label: str
    cell: Callable[[dict[str, Any]], str]


def run_executor(run: Mapping[str, Any]) -> str:
    """The executor a run asked for (``config["executor"]``, default ``local``)."""
    cfg = run.get("config") or {}
    return str(cfg.get("executor") or "local")


class Dispatcher:
    """The runner-side half of an executor, driven by ``backend.execution.worker.Runner``.

    Every tick (~0.5 s) the runner calls, for each of its dispatchers::

        poll(store)                       # reap finished work, follow job states, ingest results
        on_cancel(store, run)             # for each of its running runs whose cancel flag is up
        offer = reserve(run)              # for queued runs it wants, in queue order, while it has room
        launch(store, run, offer)         # after the runner claimed the run (queued → running)

    and it exits when no dispatcher is ``busy()`` and no queued run is wanted by any of them.
    Every method is called from the runner's one thread; none may block for long.
    """

    name = "base"

    def wants(self, run: dict[str, Any]) -> bool:
        """True when ``run`` (a queued row, ``config`` parsed) is for this dispatcher to place."""
        return run_executor(run) == self.name

    def owns(self, run: dict[str, Any]) -> bool:
        """True when a running row belongs to this dispatcher (its cancel flag is this one's to act on)."""
        return (run.get("executor") or "local") == self.name

    def refusal(self, run: dict[str, Any]) -> str | None:
        """A one-line reason when this dispatcher wants ``run`` but can never place it (``--gpus 4`` on
        a two-GPU box): the runner claims it and fails it with that reason."""
        return None

    def reserve(self, run: dict[str, Any]) -> Any | None:
        """Capacity for ``run`` now (device locks), or None. Must not touch the store; the runner then
        claims the run and calls :meth:`launch`, or :meth:`release` when another runner took it."""
        return None

    def release(self, offer: Any) -> None:
        """Give back an offer the runner could not use."""

    def launch(self, store: Store, run: dict[str, Any], offer: Any) -> None:
        """Start ``run``, already ``running`` in the store; failing to start = ``store.runs.finish(…,
        "failed", reason)``."""
        raise NotImplementedError

    def poll(self, store: Store) -> None:
        """Follow what was launched; close the rows of runs that ended without closing them."""

    def on_cancel(self, store: Store, run: dict[str, Any]) -> None:
        """``run``'s cancel flag is up (escalate, or tell the scheduler)."""

    def attach(self, store: Store) -> list[int]:
        """At the runner's start: adopt what a previous runner left to follow; return the run ids."""
        return []

    def busy(self) -> bool:
        """True while something this dispatcher launched still runs."""
        return False

    def devices(self) -> list[str]:
        """Labels of what it runs on (registered with the runner, shown on the Queue screen)."""
        return []

    def shutdown(self, store: Store) -> None:
        """The runner is stopping (SIGTERM)."""

    def close(self) -> None:
        """The runner has stopped: release what the dispatcher held (locks)."""


class Executor:
    """The deciding-and-showing half of an executor: one instance per name, in the registry.

    Class attributes are its data; the methods have defaults that suit an executor that hands runs to
    a scheduler through its own runner process (``greentui worker --executor NAME``).
    """

    #: the name a run asks for (``--executor NAME``); also its table in ``greentui.toml``
    name: ClassVar[str] = ""
    #: one line for ``--help`` and the form
    help: ClassVar[str] = ""
    #: how screens name one of its jobs ("Slurm job"); "" = it has no jobs (the runs are processes here)
    job_label: ClassVar[str] = ""
    #: RunConfig settings only this executor reads; another executor refuses them (``--partition``)
    settings: ClassVar[tuple[str, ...]] = ()
    #: columns it adds to the Queue screen (merged by key over every executor)
    queue_columns: ClassVar[tuple[QueueColumn, ...]] = ()
    #: the states its jobs report → the run status each means (documentation and the UI's legend)
    states: ClassVar[Mapping[str, str]] = {}

    # ---------------------------------------------------------------- before anything is recorded
    def unavailable(self) -> str | None:
        """Why this executor cannot take runs here (one line), or None."""
        return None

    def apply_defaults(self, cfg: RunConfig, workspace: Path) -> RunConfig:
        """``cfg`` with what the user left out filled from the workspace (``greentui.toml``)."""
        return cfg

    def check(self, cfg: RunConfig, workspace: Path) -> None:
        """Queue-time checks the inputs can answer; raise ``SettingError`` naming the setting."""

    # ---------------------------------------------------------------- runners
    def has_work(self, store: Store) -> bool:
        """Runs wait for this executor's runner: open jobs, or (queue not paused) runs not submitted."""
        return bool(store.jobs.open(self.name)) or (not store.queue.paused()
                                                     and store.jobs.has_unsubmitted(self.name))

    def runner_command(self, workspace: Path, *, device: str = "auto") -> list[str]:
        """The argument list of this executor's detached runner."""
        return [sys.executable, "-m", "backend", "--runs-dir", str(workspace), "worker", "--executor", self.name]

    def start_runner(self, workspace: Path, store: Store, *, device: str = "auto") -> int | None:
        """Start this executor's detached runner when it has work and none is alive; its pid or None."""
        from backend.execution.supervisor import reap_in_background, runner_pid
        if not self.has_work(store):
            return None
        pid = runner_pid(workspace, executor=self.name, store=store)
        if pid:
            return pid
        log = (Path(workspace) / f"runner-{self.name}.log").open("ab")
        try:
            proc = subprocess.Popen(self.runner_command(workspace, device=device), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=str(CODE_ROOT))
        finally:
            log.close()
        reap_in_background(proc)
        return proc.pid

    def dispatcher(self, ctx: RunnerContext) -> Dispatcher | None:
        """The runner-side half, in a runner process; None when it cannot work there (another runner
        already follows this workspace's jobs)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- while and after it runs
    def cancel(self, store: Store, run: dict[str, Any]) -> str:
        """Cancel ``run`` (queued or running under this executor): ``cancelled`` or ``cancelling``.

        Default: a run not yet submitted is cancelled at once; otherwise the flag is raised in the
        run's row and its job's, and the dispatcher acts on it (``on_cancel``).
        """
        run_id = int(run["id"])
        if store.jobs.get(run_id) is None:  # not submitted (or a process of this machine): the run's own flag
            outcome = store.queue.request_cancel(run_id)
        else:
            store.jobs.update(run_id, cancel_requested=1)
            outcome = "cancelling" if store.runs.require(run_id)["status"] in ("queued", "running") else None
        if outcome is None:
            raise GreentuiError(f"run {run_id} is {store.runs.require(run_id)['status']}; "
                                "only queued or running runs can be cancelled")
        return outcome

    def log_files(self, workspace: Path, run_id: int, job: dict[str, Any] | None) -> dict[str, Path]:
        """The files Run detail tails for this run, by tag (``out``, ``err``); {} for none."""
        return {}

    def job_summary(self, job: dict[str, Any] | None) -> str:
        """One line for Run detail's title: the job, its state and reason, its node, its restarts."""
        if not job or not job.get("job_id"):
            return ""
        reason = f" ({job['reason']})" if job.get("reason") not in (None, "", "None") else ""
        text = f"{self.job_label or self.name + ' job'} {job['job_id']} {job.get('state') or ''}{reason}".rstrip()
        if job.get("node"):
            text += f" on {job['node']}"
        if job.get("restarts"):
            text += f", requeued {job['restarts']}×"
        return text


def job_column_cells() -> tuple[QueueColumn, ...]:
    """The Queue columns of an executor whose runs are scheduler jobs: the job id and the job's state,
    with ``↻N`` once the scheduler requeued it N times (the scheduler's reason is the run's stage)."""
    def state(row: dict[str, Any]) -> str:
        text = row.get("job_state") or "—"
        if row.get("job_restarts"):
            text += f" ↻{row['job_restarts']}"
        return text
    return (QueueColumn("job", "job id", lambda row: str(row.get("job_id") or "—")),
            QueueColumn("job_state", "job state", state))
