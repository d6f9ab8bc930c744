"""The job that runs on a Slurm compute node: one run's pipeline, recorded into its run folder only.

submitit pickles :func:`run_job` by reference and calls it on the node. The node never opens the
workspace's SQLite database (a network filesystem breaks its WAL locking); everything goes through a
:class:`backend.execution.sinks.FileRecorder` and the login node's ingester copies it into the store.

Signals: Slurm sends SIGTERM on ``scancel``, at the end of the time limit and on preemption (then
SIGKILL after KillWait); submitit asks for SIGUSR2 shortly before the limit. submitit's own handlers
ignore SIGTERM and turn SIGUSR2 into an error inside whatever runs. Here SIGTERM stops the pipeline
at once (``RunCancelled``: every finished task is already on disk) and SIGUSR2 is only logged, so
the job runs to its limit and Slurm's own state (TIMEOUT) says why it ended.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

STOP_REASON = "stopped by Slurm (SIGTERM: scancel, time limit or preemption)"


def run_job(workspace: str, run_id: int, snapshot: dict[str, Any]) -> str:
    """Execute run ``run_id`` of ``workspace`` on this node; return its final status."""
    from backend.execution.pipeline import RunCancelled, execute_run, quiet_libraries
    from backend.execution.sinks import STATUS, FileRecorder, write_json_atomic
    from backend.workspace import run_dir

    stopped: list[str] = []
    folder = run_dir(Path(workspace), run_id)
    recorder = FileRecorder(folder, snapshot)

    def stop(signum: int, frame: Any) -> None:
        if not stopped:
            stopped.append(STOP_REASON)
            raise RunCancelled(STOP_REASON)

    def warn(signum: int, frame: Any) -> None:
        recorder.note("Slurm: the time limit is near (SIGUSR2); finished tasks are saved as they end")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR2, warn)
    quiet_libraries()
    status = execute_run(recorder, Path(workspace), run_id)
    if stopped and status == "cancelled" and not recorder.cancel_requested(run_id):
        status = "interrupted"
        write_json_atomic(folder / STATUS, {"status": status, "error": stopped[0]})
    return status
