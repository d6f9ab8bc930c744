"""The Slurm executor: one submitit job per run, followed from the login node.

Why this shape:

- **submitit submits and cancels** (it writes the sbatch script, pickles the call, runs ``scancel``);
  greentui has no scheduler of its own.
- **States come from ``squeue``/``scontrol``, then ``sacct``, then the run folder.** Without
  Slurm accounting (common on small clusters) submitit's ``job.state`` stays ``UNKNOWN``; ``squeue
  -t all`` knows a job until ``MinJobAge`` (300 s by default) after its end, and the job's own
  ``status.json`` says how the pipeline ended.
- **SQLite never leaves the login node.** The job writes only files into its run folder
  (:mod:`backend.execution.sinks`); this runner ingests them (:mod:`backend.execution.ingest`) on every poll.
- **Re-attach, never resubmit.** The run → job id mapping is in the store (``slurm_jobs``) and is
  reserved *before* ``sbatch`` runs; a runner that died in between finds the job by its unique name.
  A restarted runner simply follows the open rows again; ingest offsets make copying idempotent.

Run status mapping (Slurm state → run status, with the reason kept in the run's ``error``):
PENDING & co → queued (stage ``submitted``); RUNNING & co → running; COMPLETED → the status the job
wrote (done / failed); FAILED, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE → failed; CANCELLED → cancelled;
TIMEOUT, NODE_FAIL, PREEMPTED → interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.store import Store
from backend.workspace import CODE_ROOT, ensure_run_dir, run_dir

POLL_S = 2.0
SLURM_CMD_TIMEOUT_S = 30
PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
           "SUBMITTING", "SUBMITTED"}
ACTIVE = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED", "STOPPED"}
FAILED = {"FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"}
INTERRUPTED = {"TIMEOUT": "the Slurm time limit was reached", "NODE_FAIL": "the Slurm node failed",
               "PREEMPTED": "the job was preempted by Slurm"}
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ state mapping

@dataclass
class Outcome:
    """What a run should become: its status, and the reason (None while the job is not over)."""

    status: str
    error: str | None = None
    final: bool = False


def map_state(state: str | None, reason: str | None = None, *, job_status: dict[str, Any] | None = None,
              cancel_requested: bool = False, job_id: str | None = None) -> Outcome:
    """Slurm's state (``None``: Slurm no longer knows the job) + the job's ``status.json`` → Outcome."""
    job = f"Slurm job {job_id}" if job_id else "the Slurm job"
    word = (state or "").split()[0].rstrip("+").upper() if state else ""
    why = f" ({reason})" if reason and reason not in ("None", "(null)") else ""
    if word in PENDING:
        return Outcome("queued")
    if word in ACTIVE:
        return Outcome("running")
    if word == "CANCELLED":
        if cancel_requested:
            return Outcome("cancelled", "cancelled by the user", True)
        return Outcome("cancelled", f"{job} was cancelled outside greentui (scancel or an administrator)", True)
    if word in INTERRUPTED:
        return Outcome("interrupted", f"{job}: {INTERRUPTED[word]}{why}", True)
    if word in FAILED:
        detail = (job_status or {}).get("error")
        return Outcome("failed", f"{job} ended {word}{why}" + (f": {detail}" if detail else ""), True)
    if word == "COMPLETED" or not word:
        if job_status and job_status.get("status"):
            st = job_status["status"]
            if st == "cancelled" and not cancel_requested:
                st = "interrupted"
            return Outcome(st, job_status.get("error"), True)
        if word == "COMPLETED":
            return Outcome("failed", f"{job} completed without writing its final status (see its stderr)", True)
        return Outcome("interrupted", f"Slurm no longer knows {job} and it wrote no final status", True)
    return Outcome("running")  # a state this version does not know: keep following it


# ------------------------------------------------------------------------------ Slurm commands

def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_CMD_TIMEOUT_S)


def query_states(job_ids: Iterable[str]) -> dict[str, tuple[str, str, str]] | None:
    """job id → (state, reason, node) for the jobs Slurm still knows; None when Slurm did not answer.

    ``squeue -t all`` first (it keeps finished jobs for MinJobAge); ids it no longer knows are asked
    of ``sacct`` when accounting is enabled. A job absent from both is simply not in the result.
    """
    ids = sorted({str(i) for i in job_ids if i})
    if not ids:
        return {}
    out: dict[str, tuple[str, str, str]] = {}
    try:
        proc = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None  # the controller did not answer: decide nothing this round
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] in ids:
            out[parts[0]] = (parts[1], parts[2], parts[3])
    missing = [i for i in ids if i not in out]
    if missing:
        try:
            acct = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(missing), "-o", "JobID,State,Reason,NodeList"])
        except (OSError, subprocess.TimeoutExpired):
            acct = None
        if acct is not None and acct.returncode == 0:
            for line in acct.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 4 and parts[0] in missing:
                    out[parts[0]] = (parts[1], parts[2], parts[3])
    return out


def find_job_by_name(name: str) -> str | None:
    """The id of a job Slurm knows by this (unique) name: a submission whose id was never recorded."""
    try:
        proc = _run(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    ids = proc.stdout.split() if proc.returncode == 0 else []
    return ids[-1] if ids else None


def slurm_available() -> str | None:
    """None when Slurm answers here, else why not (one line)."""
    try:
        proc = _run(["sinfo", "-h", "-o", "%P"])
    except FileNotFoundError:
        return "Slurm is not installed here (no sinfo)"
    except subprocess.TimeoutExpired:
        return "the Slurm controller did not answer sinfo within 30 s"
    if proc.returncode != 0:
        return f"sinfo failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def partition_problem(partition: str) -> str | None:
    """None when Slurm knows ``partition``, else a one-line reason (checked before a run is queued)."""
    try:
        proc = _run(["sinfo", "-h", "-p", partition, "-o", "%P"])
    except (OSError, subprocess.TimeoutExpired):
        return None  # Slurm's own refusal at submission will say it
    if proc.returncode == 0 and not proc.stdout.strip():
        known = _run(["sinfo", "-h", "-o", "%P"]).stdout.split()
        return f"no Slurm partition {partition!r} (known: {', '.join(p.rstrip('*') for p in known) or 'none'})"
    return None


# ------------------------------------------------------------------------------ submission

def job_name(workspace: Path, run_id: int) -> str:
    """Unique per workspace and run, so a lost submission can be found again by name."""
    tag = hashlib.sha1(str(Path(workspace).resolve()).encode()).hexdigest()[:8]
    return f"greentui-{tag}-run{run_id}"


def slurm_folder(workspace: Path, run_id: int) -> Path:
    """submitit's folder for the job (sbatch script, pickles, stdout/stderr): inside the run folder."""
    return run_dir(workspace, run_id) / "slurm"


def job_logs(workspace: Path, run_id: int, job_id: str) -> tuple[Path, Path]:
    """The job's stdout and stderr files (submitit's naming: ``<id>_0_log.out/.err``)."""
    folder = slurm_folder(workspace, run_id)
    return folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err"


def _snapshot(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """What the job needs from the store, taken on the login node: run, model, reusable baselines."""
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


def submit(store: Store, workspace: Path, run: dict[str, Any], name: str) -> str:
    """Submit ``run`` as one Slurm job named ``name``; return the job id. Raises GreentuiError."""
    import submitit

    from backend.execution.executors.slurm_job import run_job
    from backend.schema.runconfig import RunConfig

    logging.getLogger("submitit").setLevel(logging.ERROR)  # "Bypassing sacct error" on every poll
    cfg = RunConfig.from_dict(run["config"])
    folder = slurm_folder(workspace, run["id"])
    ensure_run_dir(workspace, run["id"])  # a real folder, never a planted symlink
    folder.mkdir(exist_ok=True)
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    except RuntimeError as exc:
        raise GreentuiError(f"cannot submit to Slurm: {exc}") from exc
    # SIGUSR2 30 s before the limit (Slurm may send it up to 60 s earlier still): only logged by the job
    params: dict[str, Any] = {"job_name": name, "cpus_per_task": 1, "signal_delay_s": 30}
    if cfg.partition:
        params["partition"] = cfg.partition
    # No limit asked for: none written (submitit would write 5 minutes), the partition's default applies.
    params["time"] = cfg.time_limit or None
    if cfg.gpus:
        params["gpus_per_node"] = cfg.gpus
    extra = dict(a.split("=", 1) for a in cfg.slurm_arg or [])
    if extra:
        params["additional_parameters"] = extra
    executor.update_parameters(**params)
    snap = _snapshot(store, run)
    try:
        job = executor.submit(run_job, str(workspace), int(run["id"]), snap)
    except subprocess.CalledProcessError as exc:
        text = (exc.stderr or exc.output or b"")
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        raise GreentuiError(f"sbatch refused the job: {(text.strip().splitlines() or [str(exc)])[-1]}") from exc
    except Exception as exc:  # submitit wraps sbatch failures in several types
        raise GreentuiError(f"sbatch refused the job: {str(exc).strip().splitlines()[-1] if str(exc) else exc}") \
            from exc
    return str(job.job_id)


def scancel(job_id: str, workspace: Path, run_id: int) -> None:
    """Cancel through submitit (``scancel``): SIGTERM to the job, SIGKILL after Slurm's KillWait."""
    import submitit
    logging.getLogger("submitit").setLevel(logging.ERROR)
    submitit.SlurmJob(folder=slurm_folder(workspace, run_id), job_id=str(job_id)).cancel(check=False)


def request_cancel(store: Store, workspace: Path, run_id: int) -> str:
    """``greentui cancel`` of a Slurm run: scancel now (this is the login node), the runner records it.

    Also leaves ``cancel.request`` in the run folder, which the job reads at its safe points.
    """
    run = store.runs.require(run_id)
    job = store.jobs.get(run_id)
    if run["status"] not in ("queued", "running"):
        raise GreentuiError(f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
    if job is None:  # not submitted yet: an ordinary queued run
        store.queue.cancel_queued(run_id)
        return "cancelled"
    store.jobs.update(run_id, cancel_requested=1)
    folder = ensure_run_dir(workspace, run_id)
    (folder / "cancel.request").write_text(f"{time.time()}\n")
    if job["job_id"]:
        scancel(job["job_id"], workspace, run_id)
        store.events.add(run_id, "log", {"line": f"cancel requested (scancel of Slurm job {job['job_id']})"})
    ensure_slurm_runner(workspace, store)
    return "cancelling"


# ------------------------------------------------------------------------------ the runner

def lock_path(workspace: Path) -> Path:
    return Path(workspace) / ".runner-slurm.lock"


class SlurmRunner:
    """Submits queued Slurm runs, follows their jobs, ingests their folders; see the module docstring.

    The runner loop (``backend.execution.worker``, through ``executors.SlurmExecutor``) calls :meth:`step`
    every ``POLL_S`` seconds; one Slurm runner per workspace holds :func:`lock_path`.
    """

    def __init__(self, workspace: Path, store: Store):
        self.workspace, self.store = Path(workspace), store
        self._ingesters: dict[int, Any] = {}

    def _ingest(self, run_id: int) -> None:
        from backend.execution.ingest import Ingester
        ing = self._ingesters.get(run_id)
        if ing is None:
            ing = self._ingesters[run_id] = Ingester(self.store, run_id, run_dir(self.workspace, run_id))
        ing.ingest()

    def step(self) -> bool:
        """One round; True while anything is left to follow or submit."""
        while (job := self.store.jobs.claim_submission(lambda rid: job_name(self.workspace, rid))) is not None:
            self._submit(job)
        jobs = self.store.jobs.open()
        for job in jobs:
            if not job["job_id"]:  # reserved by a runner that died before it recorded the job id
                self._submit(job)
        jobs = self.store.jobs.open()
        states = query_states(j["job_id"] for j in jobs if j["job_id"])
        if states is None:
            log.warning("Slurm did not answer squeue; trying again")
            return True
        for job in jobs:
            if job["job_id"]:
                self._follow(job, states.get(job["job_id"]))
        return bool(self.store.jobs.open())

    def _submit(self, job: dict[str, Any]) -> None:
        run_id = job["run_id"]
        run = self.store.runs.require(run_id)
        if run["status"] != "queued":  # cancelled (or deleted) between reservation and submission
            self.store.jobs.update(run_id, finished=1, state="NOT_SUBMITTED")
            return
        found = find_job_by_name(job["job_name"])
        try:
            job_id = found or submit(self.store, self.workspace, run, job["job_name"])
        except GreentuiError as exc:
            self.store.jobs.update(run_id, finished=1, state="NOT_SUBMITTED", reason=str(exc))
            self.store.events.add(run_id, "error", {"message": str(exc)})
            self.store.runs.finish(run_id, "failed", str(exc))
            return
        self.store.jobs.update(run_id, job_id=job_id, state="PENDING", submitted_at=time.time())
        self.store.runs.update(run_id, stage="submitted")
        what = "found again" if found else "submitted"
        self.store.events.add(run_id, "log", {"line": f"{what} Slurm job {job_id} ({job['job_name']})"})

    def _follow(self, job: dict[str, Any], info: tuple[str, str, str] | None) -> None:
        from backend.execution.ingest import read_status
        run_id, job_id = job["run_id"], job["job_id"]
        self._ingest(run_id)
        run = self.store.runs.require(run_id)
        if run["status"] == "cancelled" and not job["cancel_requested"]:
            # cancelled as a queued run (Queue screen / an older greentui): stop the job too
            self.store.jobs.update(run_id, cancel_requested=1)
            scancel(job_id, self.workspace, run_id)
        state, reason, node = info if info else (None, None, job["node"])
        folder = run_dir(self.workspace, run_id)
        status = read_status(folder)
        outcome = map_state(state, reason, job_status=status, cancel_requested=bool(job["cancel_requested"]),
                            job_id=job_id)
        if info is None and status is None and time.time() - (job["submitted_at"] or 0) < 60:
            return  # just submitted and not yet visible (a slow controller): look again
        changed = (state, reason, node) != (job["state"], job["reason"], job["node"])
        if changed:
            self.store.jobs.update(run_id, state=state or "GONE", reason=reason, node=node)
        if not outcome.final:
            if outcome.status == "running" and run["status"] == "queued":
                self.store.runs.mark_started(run_id)
                self.store.events.add(run_id, "log", {"line": f"Slurm job {job_id} running on {node}"})
            elif outcome.status == "queued" and changed and reason and reason != "None":
                self.store.runs.update(run_id, stage=f"submitted ({reason})")
            return
        self._ingest(run_id)  # whatever the job wrote before it ended
        self.store.runs.finish(run_id, outcome.status, outcome.error)
        base = self.store.jobs.get(run_id)["baseline_run_id"]
        if base:
            self.store.runs.finish(base, outcome.status if outcome.status != "done" else "failed",
                                  outcome.error or "the Slurm job ended before its baseline did")
        if outcome.status != "done" and outcome.error:
            self.store.events.add(run_id, "error", {"message": outcome.error})
        if status is None:
            self.store.events.add(run_id, "done", {"status": outcome.status})
        self.store.events.add(run_id, "log", {"line": f"Slurm job {job_id}: {state or 'gone'} → {outcome.status}"})
        self.store.jobs.update(run_id, finished=1)


def slurm_runner_pid(workspace: Path) -> int | None:
    """The live Slurm runner's pid, from the runner registry (heartbeat + pid/start time)."""
    from backend.execution.supervisor import runner_pid
    return runner_pid(Path(workspace), "slurm")


def ensure_slurm_runner(workspace: Path, store: Store) -> int | None:
    """Start a detached Slurm runner when Slurm runs are waiting and none is alive; its pid or None."""
    if not (store.jobs.open() or (not store.queue.paused() and store.jobs.has_unsubmitted())):
        return None
    pid = slurm_runner_pid(workspace)
    if pid:
        return pid
    log_file = (Path(workspace) / "runner-slurm.log").open("ab")
    cmd = [sys.executable, "-m", "backend", "--runs-dir", str(workspace), "worker", "--executor", "slurm"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            cwd=str(CODE_ROOT))
    log_file.close()
    from backend.execution.supervisor import reap_in_background
    reap_in_background(proc)
    return proc.pid
