"""Executors that hand runs to a batch scheduler (Slurm; a Kubernetes or Ray executor would be one more).

What every such executor shares lives here, so that one for another scheduler is a module that says
only how to talk to it (:class:`SchedulerDispatcher`'s five scheduler methods) plus a registration:

- **Reserve, then submit.** A queued run gets a row in the store's ``jobs`` table *before* the
  scheduler is asked (``store.jobs.claim_submissions``); a runner that dies in between finds the job
  again by its unique name instead of submitting it twice. One submission may carry several runs
  (``submit`` takes a list and returns a job id per run: a job array's tasks).
- **Follow.** Every ``poll_s`` the scheduler is asked for the states of the open jobs; each state
  becomes a run status (``outcome``), the run folder the job writes is copied into the store
  (:mod:`backend.execution.ingest`: SQLite never leaves this machine), and a job that ended closes its
  run — with the reason, and never "cancelled by the user" when nobody cancelled.
- **Requeue.** A running job that the scheduler puts back in its queue (a node failed, it was
  preempted) makes its run ``queued`` again with the scheduler's reason in its stage, and the history
  says what happened. The job restarts in the same run folder, whose finished tasks it keeps.
- **Cancel.** ``greentui cancel`` asks the scheduler at once; when the scheduler does not answer, the
  cancel stays recorded and the dispatcher retries it every poll until the scheduler accepts it.
- **Re-attach.** Jobs outlive their runner: the next runner follows the open rows again (ingest
  offsets make copying idempotent). One runner per workspace and executor holds
  ``.runner-<name>.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from backend.errors import GreentuiError
from backend.execution.executors.base import Dispatcher, Executor, RunnerContext
from backend.store import Store
from backend.workspace import run_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobState:
    """What the scheduler says about one job now."""

    state: str
    reason: str | None = None
    node: str | None = None
    restarts: int = 0        # how often the scheduler requeued it (Slurm's RestartCnt)


@dataclass
class Outcome:
    """What a run should become: its status, and the reason (None while the job is not over)."""

    status: str
    error: str | None = None
    final: bool = False


def job_name(workspace: Path, run_id: int) -> str:
    """Unique per workspace and run, so that a lost submission can be found again by name."""
    tag = hashlib.sha1(str(Path(workspace).resolve()).encode()).hexdigest()[:8]
    return f"greentui-{tag}-run{run_id}"


def job_snapshot(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """What a remote job needs from the store, taken here at submission (the job never opens SQLite):
    the run, its model, and the finished baselines it may reuse (``sinks.FileRecorder`` reads it)."""
    from backend.schema.runconfig import RunConfig
    cfg = RunConfig.from_dict(run["config"])
    model = store.models.get(run["model_id"])
    if model is None:
        raise GreentuiError(f"run {run['id']} has no model in the store")
    baselines: dict[str, dict[str, Any]] = {}
    if not cfg.no_prune:
        for device in ("cpu", "cuda"):
            key = cfg.baseline_key(model["ref"], device)
            found = store.results.find_baseline(key, cfg.tasks)
            if found:
                tasks = [r["task"] for r in store.results.task_results(found["id"], "vanilla")]
                baselines[key] = {"id": found["id"], "tasks": tasks}
    keep = ("id", "model_id", "parent_run_id", "kind", "label", "config", "status", "baseline_key")
    return {"run": {k: run.get(k) for k in keep}, "model": dict(model), "baselines": baselines}


def lock_path(workspace: Path, executor: str) -> Path:
    """The lock one runner of ``executor`` holds for the workspace (exclusion only; liveness is the
    runner registry's heartbeat)."""
    return Path(workspace) / f".runner-{executor}.lock"


def take_runner_lock(workspace: Path, executor: str) -> Any | None:
    """The open, locked lock file of this workspace's runner of ``executor``; None when another holds it."""
    lock = lock_path(workspace, executor).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


class SchedulerDispatcher(Dispatcher):
    """Submits a scheduler executor's queued runs, follows their jobs, ingests their run folders.

    Subclasses implement the scheduler's side: :meth:`submit`, :meth:`find_job`, :meth:`query`,
    :meth:`outcome` and :meth:`send_cancel` (and may say more about a requeue with
    :meth:`requeue_cause`). It reserves nothing through the runner's slots: the ``jobs`` rows are
    its reservations, and each runner ``poll`` is one :meth:`step` every ``poll_s`` seconds.
    """

    #: seconds between two looks at the scheduler (spare its controller)
    poll_s = 2.0
    #: runs carried by one submission at most (a job array carries several)
    batch = 1
    #: a job just submitted that the scheduler does not list yet is given this long to appear
    grace_s = 60.0

    def __init__(self, executor: Executor, workspace: Path, lock: Any = None):
        self.executor, self.workspace, self._lock = executor, Path(workspace), lock
        self.name = executor.name
        self.store: Store | None = None
        self._ingesters: dict[int, Any] = {}
        self._open = True
        self._stopping = False
        self._next = 0.0

    @classmethod
    def create(cls, executor: Executor, ctx: RunnerContext) -> Self | None:
        """One per workspace and executor: None when another runner already follows its jobs."""
        lock = take_runner_lock(ctx.workspace, executor.name)
        return None if lock is None else cls(executor, ctx.workspace, lock)

    # ---------------------------------------------------------------- the scheduler's side
    def job_name(self, run_id: int) -> str:
        return job_name(self.workspace, run_id)

    def submit(self, store: Store, runs: list[dict[str, Any]], names: dict[int, str]) -> dict[int, str]:
        """Submit ``runs`` (one submission); return their job ids by run id. Raises GreentuiError."""
        raise NotImplementedError

    def find_job(self, name: str) -> str | None:
        """The id of a job submitted under ``name`` that the store never heard of, or None."""
        return None

    def task_id(self, found: str, job: dict[str, Any]) -> str:
        """The job id of reservation ``job`` when ``find_job`` found its submission (a job array's task,
        for a submission that carried several runs)."""
        return found

    def query(self, job_ids: list[str]) -> dict[str, JobState] | None:
        """States of the jobs the scheduler still knows; None when it did not answer (decide nothing)."""
        raise NotImplementedError

    def outcome(self, state: JobState | None, job_status: dict[str, Any] | None, *, cancel_requested: bool,
                job_id: str) -> Outcome:
        """What the run becomes given the scheduler's state (None: it forgot the job) and the job's own
        ``status.json``."""
        raise NotImplementedError

    def send_cancel(self, job: dict[str, Any]) -> str | None:
        """Ask the scheduler to stop ``job``; None when it accepted, else why not (one line)."""
        raise NotImplementedError

    def requeue_cause(self, job: dict[str, Any]) -> str | None:
        """Why the scheduler requeued ``job`` (e.g. "node failure"), when it can tell."""
        return None

    # ---------------------------------------------------------------- Dispatcher
    def poll(self, store: Store) -> None:
        if self._stopping or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.poll_s
        self.store = store
        self._open = self.step()

    def busy(self) -> bool:
        return self._open

    def owns(self, run: dict[str, Any]) -> bool:
        return False  # a cancel goes to the scheduler (Executor.cancel, then step): no flag to escalate here

    def devices(self) -> list[str]:
        return [self.name]

    def shutdown(self, store: Store) -> None:
        self._stopping, self._open = True, False  # jobs run on; the next runner follows them

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ---------------------------------------------------------------- one round
    def step(self, store: Store | None = None) -> bool:
        """Submit, deliver cancels, follow states; True while anything is left to follow or submit."""
        if store is not None:
            self.store = store
        store = self._require_store()
        while claimed := store.jobs.claim_submissions(self.name, self.job_name, self.batch):
            self._submit(claimed)
        lost = [j for j in store.jobs.open(self.name) if not j["job_id"]]
        if lost:  # reserved by a runner that died before it recorded the job id
            self._submit(lost)
        for job in store.jobs.pending_cancels(self.name):
            self._deliver_cancel(job)
        jobs = store.jobs.open(self.name)
        states = self.query([j["job_id"] for j in jobs if j["job_id"]])
        if states is None:
            log.warning("%s did not answer; trying again", self.name)
            return True
        for job in jobs:
            if job["job_id"]:
                self.follow(job, states.get(job["job_id"]))
        return bool(store.jobs.open(self.name))

    def _require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("poll(store) first")
        return self.store

    def _ingest(self, run_id: int) -> None:
        from backend.execution.ingest import Ingester
        ing = self._ingesters.get(run_id)
        if ing is None:
            ing = self._ingesters[run_id] = Ingester(self._require_store(), run_id, run_dir(self.workspace, run_id))
        ing.ingest()

    def _submit(self, jobs: list[dict[str, Any]]) -> None:
        store = self._require_store()
        todo: list[dict[str, Any]] = []
        names: dict[int, str] = {}
        found: dict[int, str] = {}
        for job in jobs:
            run_id = job["run_id"]
            run = store.runs.require(run_id)
            if run["status"] != "queued" or job["cancel_requested"]:  # cancelled before its submission
                store.jobs.update(run_id, finished=1, state="NOT_SUBMITTED")
                store.runs.finish(run_id, "cancelled", "cancelled by the user")
                continue
            names[run_id] = job["job_name"]
            existing = self.find_job(job["job_name"])
            if existing:
                found[run_id] = self.task_id(existing, job)
            else:
                todo.append(run)
        ids = dict(found)
        if todo:
            try:
                ids.update(self.submit(store, todo, names))
            except GreentuiError as exc:
                for run in todo:
                    store.jobs.update(run["id"], finished=1, state="NOT_SUBMITTED", reason=str(exc))
                    store.events.add(run["id"], "error", {"message": str(exc)})
                    store.runs.finish(run["id"], "failed", str(exc))
                todo = []
        label = self.executor.job_label or f"{self.name} job"
        for run_id, job_id in ids.items():
            store.jobs.update(run_id, job_id=job_id, submission=submission_of(job_id), state="PENDING",
                              submitted_at=time.time())
            store.runs.update(run_id, stage="submitted")
            what = "found again" if run_id in found else "submitted"
            store.events.add(run_id, "log", {"line": f"{what} {label} {job_id} ({names[run_id]})"})

    def _deliver_cancel(self, job: dict[str, Any]) -> None:
        store = self._require_store()
        why = self.send_cancel(job)
        if why is None:
            store.jobs.update(job["run_id"], cancel_sent=time.time())
            store.events.add(job["run_id"], "log", {"line": f"cancel delivered to {self.name} job {job['job_id']}"})

    def follow(self, job: dict[str, Any], info: JobState | None) -> None:
        """One job's new state (None: the scheduler no longer knows it) → the run's status, its history."""
        from backend.execution.ingest import read_status
        store = self._require_store()
        run_id, job_id = job["run_id"], job["job_id"]
        label = self.executor.job_label or f"{self.name} job"
        self._ingest(run_id)
        run = store.runs.require(run_id)
        if run["status"] == "cancelled" and not job["cancel_requested"]:
            # cancelled as a queued run (Queue screen before it was submitted): stop the job too
            store.jobs.update(run_id, cancel_requested=1)
            job = dict(job, cancel_requested=1)
            self._deliver_cancel(job)
        folder = run_dir(self.workspace, run_id)
        status = read_status(folder)
        outcome = self.outcome(info, status, cancel_requested=bool(job["cancel_requested"]), job_id=job_id)
        if info is None and status is None and time.time() - (job["submitted_at"] or 0) < self.grace_s:
            return  # just submitted and not yet listed (a slow controller): look again
        state = info.state if info else "GONE"
        reason = info.reason if info else None
        node = info.node if info else job["node"]  # a waiting job is on no node (a requeued one has left its own)
        restarts = max(info.restarts if info else 0, job["restarts"] or 0)
        requeued = (info is not None and info.restarts > (job["restarts"] or 0)) or \
            (outcome.status == "queued" and run["status"] == "running")
        if requeued:
            restarts = max(restarts, (job["restarts"] or 0) + 1)
        if (state, reason, node, restarts) != (job["state"], job["reason"], job["node"], job["restarts"]):
            store.jobs.update(run_id, state=state, reason=reason, node=node, restarts=restarts)
        if requeued:
            self._requeued(run, job, label, reason, restarts)
        if not outcome.final:
            if outcome.status == "running" and store.runs.require(run_id)["status"] == "queued":
                store.runs.mark_started(run_id)
                attempt = f" (attempt {restarts + 1})" if restarts else ""
                store.events.add(run_id, "log", {"line": f"{label} {job_id} running on {node}{attempt}"})
            elif outcome.status == "queued" and reason and reason not in ("None", job["reason"]):
                store.runs.update(run_id, stage=f"{'requeued' if restarts else 'submitted'} ({reason})")
            return
        self._ingest(run_id)  # whatever the job wrote before it ended
        store.runs.finish(run_id, outcome.status, outcome.error)
        base = store.jobs.require(run_id)["baseline_run_id"]  # read again: the ingest may have set it
        if base:
            store.runs.finish(base, outcome.status if outcome.status != "done" else "failed",
                              outcome.error or f"the {label} ended before its baseline did")
        closed_by_job = status is not None and status.get("status") not in (None, "interrupted")
        if not closed_by_job:  # the job did not say how it ended: the history says it here
            if outcome.status != "done" and outcome.error:
                store.events.add(run_id, "error", {"message": outcome.error})
            store.events.add(run_id, "done", {"status": outcome.status})
        store.events.add(run_id, "log", {"line": f"{label} {job_id}: {info.state if info else 'gone'} → "
                                                 f"{outcome.status}"})
        store.jobs.update(run_id, finished=1)

    def _requeued(self, run: dict[str, Any], job: dict[str, Any], label: str, reason: str | None,
                  restarts: int) -> None:
        """The scheduler put a started job back in its queue: the run is queued again, and says why."""
        store = self._require_store()
        run_id = run["id"]
        cause = self.requeue_cause(job)
        where = f" on {job['node']}" if job.get("node") else ""
        waits = f"; it waits ({reason})" if reason and reason != "None" else ""
        store.events.add(run_id, "log", {"line": f"{label} {job['job_id']}{where} was requeued"
                                                 + (f" after a {cause}" if cause else "")
                                                 + f" (restart {restarts}){waits}; finished tasks are kept "
                                                 "and the pipeline resumes where it stopped"})
        if run["status"] == "running":
            store.runs.requeued(run_id, stage=f"requeued ({reason})" if reason and reason != "None"
                                else "requeued")


def submission_of(job_id: str) -> str:
    """The submission a job id belongs to: a job array's id for one of its tasks (``123_4`` → ``123``)."""
    return str(job_id).split("_", 1)[0]
