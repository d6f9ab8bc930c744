"""The job that runs on a Slurm compute node: one run's pipeline, recorded into its run folder only.

submitit pickles :func:`run_job` by reference and calls it on the node. The node never opens the
workspace's SQLite database (a network filesystem breaks its WAL locking); everything goes through a
:class:`backend.sinks.FileRecorder` and the login node's ingester copies it into the store.

Signals: Slurm sends SIGTERM on ``scancel`` and at the end of the time limit, and submitit asks for
SIGUSR2 90 s before the limit (or on preemption). submitit's own handlers ignore SIGTERM and turn
SIGUSR2 into an error inside whatever runs; here both stop the pipeline at once (``RunCancelled``)
so the finished tasks are on disk and ``status.json`` names the signal.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

STOP_REASONS = {
    signal.SIGTERM: "stopped by Slurm (SIGTERM: scancel, time limit or preemption)",
    signal.SIGUSR2: "stopped by Slurm before its time limit or for preemption (SIGUSR2)",
}


def run_job(workspace: str, run_id: int, snapshot: dict[str, Any]) -> str:
    """Execute run ``run_id`` of ``workspace`` on this node; return its final status."""
    from ..pipeline import RunCancelled, execute_run, quiet_libraries
    from ..sinks import STATUS, FileRecorder, write_json_atomic
    from ..workspace import run_dir

    stopped: list[str] = []

    def stop(signum: int, frame: Any) -> None:
        if not stopped:
            stopped.append(STOP_REASONS.get(signum, f"signal {signum}"))
            raise RunCancelled(stopped[0])

    for sig in STOP_REASONS:
        signal.signal(sig, stop)
    quiet_libraries()
    folder = run_dir(Path(workspace), run_id)
    recorder = FileRecorder(folder, snapshot)
    status = execute_run(recorder, Path(workspace), run_id)
    if stopped and status == "cancelled" and not recorder.cancel_requested(run_id):
        status = "interrupted"
        write_json_atomic(folder / STATUS, {"status": status, "error": stopped[0]})
    return status
