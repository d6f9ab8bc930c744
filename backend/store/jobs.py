"""Scheduler jobs of runs, for every executor that hands runs to a scheduler (Slurm, or a plugin's).

One row per run sent to a scheduler (``jobs``): which executor, the job id (reserved before the
submission, so a runner that dies in between finds the job again instead of submitting it twice), the
submission that carried it (one job array may carry several runs), the scheduler's last state, reason
and node, how often the scheduler restarted it, the cancel flag and whether the cancel reached the
scheduler, and the baseline run the job created. A local run has no row.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.jobs``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from backend.store.base import Repository
from backend.store.tables import RUN_EXECUTOR, now

#: Columns an executor may set with :meth:`JobRepository.update` (``detail`` is JSON).
JOB_FIELDS = ("job_id", "job_name", "submission", "state", "reason", "node", "submitted_at", "finished",
              "cancel_requested", "cancel_sent", "restarts", "baseline_run_id", "detail")


class JobRepository(Repository):
    """Scheduler jobs of runs: reservation, submission, state, node, restarts, cancel."""

    def claim_submissions(self, executor: str, job_name_for: Callable[[int], str],
                          limit: int = 1) -> list[dict[str, Any]]:
        """Reserve up to ``limit`` queued runs of ``executor`` that have no job yet, in queue order.

        Each reservation is a row with ``job_id`` NULL, written before the scheduler is asked, so a
        runner that dies between the two finds the row on restart and looks the job up by name
        instead of submitting it again. Nothing is reserved while the queue is paused.
        """
        with self.transaction() as c:
            if c.execute("SELECT value FROM settings WHERE key = 'queue_paused'").fetchone() == ("1",):
                return []
            ids = [r[0] for r in c.execute(
                f"SELECT r.id FROM runs r LEFT JOIN jobs j ON j.run_id = r.id "
                f"WHERE r.status = 'queued' AND {RUN_EXECUTOR} = ? AND j.run_id IS NULL "
                f"ORDER BY r.position, r.id LIMIT ?", (executor, int(limit))).fetchall()]
            t = now()
            for run_id in ids:
                c.execute("INSERT INTO jobs (run_id, executor, job_name, state, updated_at) "
                          "VALUES (?, ?, ?, 'SUBMITTING', ?)", (run_id, executor, job_name_for(run_id), t))
        return [job for run_id in ids if (job := self.get(run_id)) is not None]

    def get(self, run_id: int) -> dict[str, Any] | None:
        return self._decoded(self._row("SELECT * FROM jobs WHERE run_id = ?", (run_id,)))

    def open(self, executor: str | None = None) -> list[dict[str, Any]]:
        """Jobs still followed (being submitted, or submitted and not yet closed), of one executor or all."""
        if executor is None:
            rows = self._rows("SELECT * FROM jobs WHERE finished = 0 ORDER BY run_id")
        else:
            rows = self._rows("SELECT * FROM jobs WHERE finished = 0 AND executor = ? ORDER BY run_id", (executor,))
        return [self._decoded(r) for r in rows]

    def update(self, run_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(JOB_FIELDS)
        if unknown:
            raise ValueError(f"not a job field: {', '.join(sorted(unknown))}")
        if fields:
            if "detail" in fields and fields["detail"] is not None:
                fields["detail"] = json.dumps(fields["detail"], sort_keys=True, default=str)
            fields["updated_at"] = now()
            sets = ", ".join(f"{k} = ?" for k in fields)
            self.conn.execute(f"UPDATE jobs SET {sets} WHERE run_id = ?", (*fields.values(), run_id))

    def has_unsubmitted(self, executor: str) -> bool:
        """A queued run of ``executor`` waits for its submission."""
        return self.conn.execute(
            f"SELECT 1 FROM runs r LEFT JOIN jobs j ON j.run_id = r.id WHERE r.status = 'queued' "
            f"AND {RUN_EXECUTOR} = ? AND j.run_id IS NULL LIMIT 1", (executor,)).fetchone() is not None

    def pending_cancels(self, executor: str) -> list[dict[str, Any]]:
        """Open jobs whose cancel was recorded but has not reached the scheduler (it was down)."""
        return [self._decoded(r) for r in self._rows(
            "SELECT * FROM jobs WHERE executor = ? AND finished = 0 AND cancel_requested = 1 "
            "AND cancel_sent IS NULL AND job_id IS NOT NULL ORDER BY run_id", (executor,))]

    @staticmethod
    def _decoded(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is not None:
            row["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
        return row

    def executors_with_work(self, paused: bool) -> list[str]:
        """Executors that have open jobs, or (queue not ``paused``) queued runs without a job."""
        rows = self.conn.execute("SELECT DISTINCT executor FROM jobs WHERE finished = 0").fetchall()
        names = {r[0] for r in rows}
        if not paused:
            names |= {r[0] for r in self.conn.execute(
                f"SELECT DISTINCT {RUN_EXECUTOR} FROM runs r WHERE r.status = 'queued' "
                "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id)").fetchall()}
        return sorted(names)


def job_ids(jobs: Iterable[dict[str, Any]]) -> list[str]:
    """The scheduler ids of ``jobs`` that have one."""
    return [str(j["job_id"]) for j in jobs if j.get("job_id")]
