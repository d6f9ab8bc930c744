"""The Slurm executor: one submitit job per run, followed from the login node.

Why this shape (the life cycle every scheduler executor shares is in ``scheduler.py``):

- **submitit submits** (it writes the sbatch script and pickles the call); greentui has no
  scheduler of its own. ``scancel`` is called directly, so that its answer is checked: a cancel that
  did not reach the controller is said in one line and retried, never reported as done.
- **States come from ``squeue``, then ``sacct``, then the run folder.** Without Slurm accounting
  (common on small clusters) submitit's ``job.state`` stays ``UNKNOWN``; ``squeue -t all`` knows a
  job until ``MinJobAge`` (300 s by default) after its end, with its restart count, and the job's own
  ``status.json`` says how the pipeline ended.
- **SQLite never leaves the login node.** The job writes only files into its run folder
  (:mod:`backend.execution.sinks`); the runner ingests them (:mod:`backend.execution.ingest`).
- **A requeue is a requeue.** A node that fails (or is set down) under a running job makes Slurm
  requeue it (``JobRequeue=1``): the run becomes ``queued`` with Slurm's reason, the history says so,
  and the restarted job resumes in the same run folder, skipping the tasks it finished.

Run status mapping (Slurm state → run status, with the reason kept in the run's ``error``):
PENDING & co → queued (stage ``submitted``, or ``requeued`` after a restart); RUNNING & co → running;
COMPLETED → the status the job wrote (done / failed); FAILED, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE →
failed; CANCELLED → cancelled (by the user, or "outside greentui"); TIMEOUT, NODE_FAIL, PREEMPTED →
interrupted.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import GreentuiError
from backend.execution.executors.base import Executor, RunnerContext, job_column_cells
from backend.execution.executors.scheduler import JobState, Outcome, SchedulerDispatcher, job_name, job_snapshot
from backend.schema.catalog import EXECUTOR_SETTINGS
from backend.store import Store
from backend.workspace import ensure_run_dir, run_dir

if TYPE_CHECKING:
    from backend.schema.runconfig import RunConfig

__all__ = ["Outcome", "SlurmDispatcher", "SlurmExecutor", "job_logs", "job_name", "map_state", "query_states",
           "slurm_available"]

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


def _last_line(text: str | bytes | None, default: str = "?") -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else default


def query_states(job_ids: Iterable[str]) -> dict[str, JobState] | None:
    """job id → its state, reason, node and restart count, for the jobs Slurm still knows; None when
    Slurm did not answer.

    ``squeue -t all`` first (it keeps finished jobs for MinJobAge); ids it no longer knows are asked
    of ``sacct`` when accounting is enabled. A job absent from both is simply not in the result.
    """
    ids = sorted({str(i) for i in job_ids if i})
    if not ids:
        return {}
    out: dict[str, JobState] = {}
    try:
        # -r and JobArrayID: a job array's tasks one per line under their own ids (12_3; JobID says 12,
        # and without -r pending tasks fold into 12_[3-4]); a plain job's JobArrayID is its JobID
        proc = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids),
                     "-O", "JobArrayID:|,State:|,Reason:|,NodeList:|,RestartCnt:"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None  # the controller did not answer: decide nothing this round
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 5 and parts[0] in ids:
            restarts = int(parts[4]) if parts[4].isdigit() else 0
            out[parts[0]] = JobState(parts[1], parts[2] or None, parts[3] or None, restarts)
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
                    out[parts[0]] = JobState(parts[1], parts[2] or None, parts[3] or None)
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
    """None when Slurm can take jobs from here, else why not (one line): ``sbatch`` on PATH (the
    submission) and a controller that answers ``sinfo``."""
    if shutil.which("sbatch") is None:
        return "Slurm cannot take jobs from here (no sbatch on PATH)"
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


# ------------------------------------------------------------------------------ files

def slurm_folder(workspace: Path, run_id: int) -> Path:
    """submitit's folder for the job (sbatch script, pickles, stdout/stderr): inside the run folder."""
    return run_dir(workspace, run_id) / "slurm"


def job_logs(workspace: Path, run_id: int, job_id: str) -> tuple[Path, Path]:
    """The job's stdout and stderr files (submitit's naming: ``<id>_0_log.out/.err``; a requeued job
    appends to them)."""
    folder = slurm_folder(workspace, run_id)
    return folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err"


def workspace_defaults(workspace: Path) -> dict[str, Any]:
    """The ``[slurm]`` table of ``greentui.toml`` (partition, gpus, time_limit, args), checked by the
    file's one schema (``backend.schema.wsconfig.TABLES``: the keys are the run settings with their
    rules; ``slurm.args.account must be a string or a number``)."""
    from backend.schema.wsconfig import slurm_defaults
    return slurm_defaults(workspace)


# ------------------------------------------------------------------------------ the executor

def scancel(job_id: str) -> str | None:
    """``scancel JOB``: SIGTERM to the job, SIGKILL after Slurm's KillWait. None when Slurm accepted it,
    else why not, in one line (the controller did not answer)."""
    try:
        proc = _run(["scancel", str(job_id)])
    except FileNotFoundError:
        return "scancel is not on PATH"
    except subprocess.TimeoutExpired:
        return f"the Slurm controller did not answer scancel within {SLURM_CMD_TIMEOUT_S} s"
    if proc.returncode != 0:
        return _last_line(proc.stderr or proc.stdout, f"scancel exited with {proc.returncode}")
    return None


class SlurmExecutor(Executor):
    """Runs as Slurm jobs, one per run, submitted and followed by this workspace's Slurm runner."""

    name = "slurm"
    help = "one Slurm job per run (submitit), followed from the login node"
    job_label = "Slurm job"
    settings = EXECUTOR_SETTINGS["slurm"]
    queue_columns = job_column_cells()
    states = {"PENDING": "queued", "REQUEUED": "queued (requeued: a node failed or the job was preempted)",
              "RUNNING": "running", "COMPLETED": "done, or failed as the job recorded",
              "FAILED": "failed", "OUT_OF_MEMORY": "failed", "CANCELLED": "cancelled",
              "TIMEOUT": "interrupted", "NODE_FAIL": "interrupted", "PREEMPTED": "interrupted"}

    def unavailable(self) -> str | None:
        return slurm_available()

    def apply_defaults(self, cfg: RunConfig, workspace: Path) -> RunConfig:
        d = workspace_defaults(workspace)
        cfg.partition = cfg.partition or d.get("partition")
        cfg.gpus = cfg.gpus if cfg.gpus is not None else d.get("gpus")
        cfg.time_limit = cfg.time_limit or d.get("time_limit")
        given = {a.split("=", 1)[0] for a in cfg.slurm_arg}
        cfg.slurm_arg = [*(f"{k}={v}" for k, v in (d.get("args") or {}).items() if k not in given), *cfg.slurm_arg]
        return cfg

    def check(self, cfg: RunConfig, workspace: Path) -> None:
        from backend.schema.settings import SettingError
        why = self.unavailable()
        if why:
            raise SettingError("executor", f"slurm: {why}")
        why = cfg.partition and partition_problem(cfg.partition)
        if why:
            raise SettingError("partition", why)

    def dispatcher(self, ctx: RunnerContext) -> SlurmDispatcher | None:
        return SlurmDispatcher.create(self, ctx)

    def cancel(self, store: Store, run: dict[str, Any]) -> str:
        """``greentui cancel`` of a Slurm run: ``scancel`` now (this is the login node), the runner
        records the end. Leaves ``cancel.request`` in the run folder, which the job reads at its safe
        points. When the controller does not answer, the cancel stays recorded (the runner retries it)
        and this says so in one line, as an error, until a call finds it delivered."""
        run_id = int(run["id"])
        job = store.jobs.get(run_id)
        if run["status"] == "cancelled" and job is not None and job["cancel_requested"]:
            return "cancelled"  # asked before, and it has landed: say so, as a success
        if run["status"] not in ("queued", "running"):
            raise GreentuiError(f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
        if job is None:  # not submitted yet: an ordinary queued run
            store.queue.cancel_queued(run_id)
            return "cancelled"
        workspace = store.path.parent
        store.jobs.update(run_id, cancel_requested=1)
        folder = ensure_run_dir(workspace, run_id)  # a real folder, never a planted symlink
        (folder / "cancel.request").write_text(f"{time.time()}\n")
        why = None
        if job["job_id"]:
            why = scancel(job["job_id"])
            if why is None:
                store.jobs.update(run_id, cancel_sent=time.time())
                store.events.add(run_id, "log", {"line": f"cancel requested (scancel of Slurm job {job['job_id']})"})
        self.start_runner(workspace, store)
        if why is not None:
            raise GreentuiError(f"run {run_id}: the cancel of Slurm job {job['job_id']} did not reach Slurm ({why}); "
                                "it stays recorded and the Slurm runner retries it — cancel again to check")
        return "cancelling"

    def log_files(self, workspace: Path, run_id: int, job: dict[str, Any] | None) -> dict[str, Path]:
        """The job's stdout/stderr: where its submission recorded them (``detail``: a job array's tasks
        share one folder), else submitit's files in the run folder."""
        if not job or not job.get("job_id"):
            return {}
        detail = job.get("detail") or {}
        if detail.get("stdout") and detail.get("stderr"):
            return {"out": Path(detail["stdout"]), "err": Path(detail["stderr"])}
        out, err = job_logs(workspace, run_id, job["job_id"])
        return {"out": out, "err": err}


class SlurmDispatcher(SchedulerDispatcher):
    """The Slurm side of the scheduler life cycle: sbatch through submitit, squeue, scancel."""

    poll_s = POLL_S
    #: a study's runs go as one job array (``store.jobs.claim_submissions`` groups them); Slurm's
    #: default MaxArraySize is 1001
    batch = 1000

    def submit(self, store: Store, runs: list[dict[str, Any]], names: dict[int, str]) -> dict[int, str]:
        if len(runs) > 1:
            return submit_array_of(store, self.workspace, runs, names[int(runs[0]["id"])])
        return {int(run["id"]): submit(store, self.workspace, run, names[int(run["id"])]) for run in runs}

    def find_job(self, name: str) -> str | None:
        return find_job_by_name(name)

    def task_id(self, found: str, job: dict[str, Any]) -> str:
        """An array's reservation found again by name: its task (``<array>_<index>``)."""
        index = (job.get("detail") or {}).get("array_index")
        return found if index is None else f"{found.split('_', 1)[0]}_{index}"

    def query(self, job_ids: list[str]) -> dict[str, JobState] | None:
        return query_states(job_ids)

    def outcome(self, state: JobState | None, job_status: dict[str, Any] | None, *, cancel_requested: bool,
                job_id: str) -> Outcome:
        return map_state(state.state if state else None, state.reason if state else None, job_status=job_status,
                         cancel_requested=cancel_requested, job_id=job_id)

    def send_cancel(self, job: dict[str, Any]) -> str | None:
        return scancel(job["job_id"])

    def requeue_cause(self, job: dict[str, Any]) -> str | None:
        """slurmstepd's last word in the job's stderr: ``*** STEP 19.0 ON vm CANCELLED AT … DUE TO NODE
        FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***`` (or ``JOB 19``) → "node failure"."""
        import re
        err = self.executor.log_files(self.workspace, int(job["run_id"]), job).get("err")
        if err is None:
            return None
        try:
            with err.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, 2) - 8192))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return None
        pattern = re.compile(rf"\*\*\* (?:JOB|STEP) {re.escape(str(job['job_id']))}(?:\.\S+)? ON \S+ CANCELLED AT \S+ "
                             r"DUE TO ([^,*]+)")
        causes = pattern.findall(tail)
        return causes[-1].strip().lower() if causes else None


def time_limit_minutes(text: str) -> int:
    """``D-HH:MM:SS`` or ``HH:MM:SS`` (the run schema's time limit) in whole minutes, rounded up."""
    days, _, clock = text.rpartition("-")
    h, m, sec = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)


def sbatch_parameters(cfg: Any, name: str) -> dict[str, Any]:
    """submitit's sbatch parameters for a run's config (a single job, or every task of an array)."""
    # SIGUSR2 30 s before the limit (Slurm may send it up to 60 s earlier still): logged by a single
    # job; a study's array task is requeued by it (slurm_array)
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
    return params


def submit_array_of(store: Store, workspace: Path, runs: list[dict[str, Any]], name: str) -> dict[int, str]:
    """Submit a study's runs as one job array (``slurm_array``); each run's task id. Raises GreentuiError."""
    from backend.execution.executors.slurm_array import submit_array
    from backend.schema.runconfig import RunConfig

    logging.getLogger("submitit").setLevel(logging.ERROR)
    params = sbatch_parameters(RunConfig.from_dict(runs[0]["config"]), name)
    if params["time"]:  # submitit times a checkpointable task in minutes (when it was signalled: timeout or not)
        params["time"] = time_limit_minutes(params["time"])
    try:
        return submit_array(store, workspace, runs, name, params)
    except subprocess.CalledProcessError as exc:
        raise GreentuiError(f"sbatch refused the job array: {_last_line(exc.stderr or exc.output, str(exc))}") from exc
    except GreentuiError:
        raise
    except Exception as exc:  # submitit wraps sbatch failures in several types
        raise GreentuiError(f"sbatch refused the job array: {_last_line(str(exc), type(exc).__name__)}") from exc


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
    executor.update_parameters(**sbatch_parameters(cfg, name))
    snap = job_snapshot(store, run)
    try:
        job = executor.submit(run_job, str(workspace), int(run["id"]), snap)
    except subprocess.CalledProcessError as exc:
        raise GreentuiError(f"sbatch refused the job: {_last_line(exc.stderr or exc.output, str(exc))}") from exc
    except Exception as exc:  # submitit wraps sbatch failures in several types
        raise GreentuiError(f"sbatch refused the job: {_last_line(str(exc), type(exc).__name__)}") from exc
    return str(job.job_id)
