"""The job that runs on a Slurm compute node: one run's pipeline, recorded into its run folder only.

submitit pickles :func:`run_job` by reference and calls it on the node. The node never opens the
workspace's SQLite database (a network filesystem breaks its WAL locking); everything goes through a
:class:`backend.execution.sinks.FileRecorder` and the login node's ingester copies it into the store.

Signals: Slurm sends SIGTERM on ``scancel``, at the end of the time limit, on preemption and when
the node is set down (then SIGKILL after KillWait); submitit asks for SIGUSR2 shortly before the
limit. submitit's own handlers ignore SIGTERM and turn SIGUSR2 into an error inside whatever runs.
Here SIGTERM stops the pipeline at once (``RunCancelled``: every finished task is already on disk):
as a cancel when the user asked for one (``cancel.request`` in the run folder), else as an
interruption, which leaves the run's end (and its baseline) to the login node, since Slurm may
requeue the job. SIGUSR2 is only logged, so the job runs to its limit and Slurm's own state
(TIMEOUT) says why it ended — except for a study's array task with a time limit
(``slurm_array.ArrayTask``), which submitit's own handler requeues before the limit; such a task
may also wait here for the study's shared baseline, a task of the same array.

A requeued job runs again in the same run folder (``SLURM_RESTART_COUNT`` > 0): the status of the
attempt that was stopped is removed, and the pipeline resumes from what the folder holds (finished
tasks, the baseline, the saved pruned model).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

STOP_REASON = "stopped by Slurm (SIGTERM: scancel, time limit or preemption)"


def run_job(workspace: str, run_id: int, snapshot: dict[str, Any]) -> str:
    """Execute run ``run_id`` of ``workspace`` on this node; return its final status."""
    from backend.execution.pipeline import RunCancelled, execute_run, quiet_libraries
    from backend.execution.sinks import STATUS, FileRecorder
    from backend.workspace import run_dir

    stopped: list[str] = []
    folder = run_dir(Path(workspace), run_id)
    (folder / STATUS).unlink(missing_ok=True)  # an earlier attempt's end: this attempt writes its own
    recorder = FileRecorder(folder, snapshot)
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts or recorder.earlier.any:
        recorder.note("Slurm restarted this job: resuming in the same run folder; finished tasks are kept")

    def stop(signum: int, frame: Any) -> None:
        if not stopped:
            stopped.append(STOP_REASON)
            if recorder.cancel_requested(run_id):
                raise RunCancelled()
            raise RunCancelled(STOP_REASON, status="interrupted")

    requeue = signal.getsignal(signal.SIGUSR2) if snapshot.get("requeue_on_limit") else None

    def warn(signum: int, frame: Any) -> None:
        if callable(requeue):  # a study's array task: submitit requeues it and it resumes here
            recorder.note("Slurm: the time limit is near (SIGUSR2): requeued to resume in this run folder; "
                          "finished tasks are kept")
            requeue(signum, frame)
            return
        recorder.note("Slurm: the time limit is near (SIGUSR2); finished tasks are saved as they end")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR2, warn)
    quiet_libraries()
    if snapshot.get("await_baseline"):
        from backend.execution.executors.slurm_array import wait_for_shared_baseline
        from backend.execution.sinks import write_json_atomic
        try:
            wait_for_shared_baseline(recorder, snapshot)
        except RunCancelled as exc:
            status = getattr(exc, "status", None) or "cancelled"
            if status == "cancelled":  # an interruption's end is the login node's (Slurm may requeue)
                write_json_atomic(folder / STATUS, {"status": status, "error": "cancelled by the user"})
            return status
    return execute_run(recorder, Path(workspace), run_id)
