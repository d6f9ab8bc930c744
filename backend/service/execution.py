"""What the UI may know about execution: runners, dead runs, the executors' Queue columns, job logs.

The workbench never imports ``backend.execution`` (an import-linter contract): it asks here. The
module stays light for the UI's first frame (``recover_stale_runs`` and ``runner_pid`` run before the
first screen is drawn): the executor registry, which reads installed plugins' entry points, is
imported only by the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.execution import supervisor
from backend.store import Store

if TYPE_CHECKING:
    from backend.execution.executors.base import QueueColumn


def recover_stale_runs(store: Store) -> list[int]:
    """Runs whose process is gone become ``interrupted`` (the queue pauses); their ids."""
    return supervisor.recover_stale_runs(store)


def runner_pid(workspace: Path, device: str = "auto") -> int | None:
    """The live local runner serving ``device``, or None."""
    return supervisor.runner_pid(workspace, device, executor="local")


def live_runners(store: Store) -> list[dict[str, Any]]:
    """Registered runners that are alive (dead registrations are closed on the way)."""
    return supervisor.live_runners(store)


@dataclass(frozen=True)
class JobView:
    """A run's scheduler job as Run detail shows it: a title part and the files it tails."""

    summary: str                  # "Slurm job 12 PENDING (BeginTime) on node7, requeued 1×"
    label: str                    # the pane's title: "Slurm job stdout/stderr"
    files: dict[str, Path]        # tag ("out", "err") → file


def job_view(workspace: Path, store: Store, run: dict[str, Any]) -> JobView | None:
    """The job of ``run`` as its executor describes it; None for a run that has no job."""
    job = store.jobs.get(int(run["id"]))
    if not job or not job.get("job_id"):
        return None
    from backend.errors import GreentuiError
    from backend.execution.executors import executor
    try:
        ex = executor(job["executor"])
    except GreentuiError:  # its executor is not installed here: show what the store knows
        return JobView(f"{job['executor']} job {job['job_id']} {job.get('state') or ''}".rstrip(),
                       f"{job['executor']} job output", {})
    label = ex.job_label or f"{ex.name} job"
    return JobView(ex.job_summary(job), f"{label} stdout/stderr", ex.log_files(workspace, int(run["id"]), job))


def queue_columns() -> list[QueueColumn]:
    """The columns the installed executors add to the Queue screen (merged by key, in registry order),
    each with its ``cell(row)`` for a row of the queue."""
    from backend.execution.executors import executors
    seen: dict[str, QueueColumn] = {}
    for ex in executors():
        for column in ex.queue_columns:
            seen.setdefault(column.key, column)
    return list(seen.values())
