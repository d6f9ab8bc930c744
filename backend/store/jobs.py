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
from typing import Any, overload

from backend.errors import GreentuiError
from backend.store.base import Repository
from backend.store.tables import RUN_EXECUTOR, now

#: Columns an executor may set with :meth:`JobRepository.update` (``detail`` is JSON).
JOB_FIELDS = ("job_id", "job_name", "submission", "state", "reason", "node", "submitted_at", "finished",
              "cancel_requested", "cancel_sent", "restarts", "baseline_run_id", "detail")


class JobRepository(Repository):
    """Scheduler jobs of runs: reservation, submission, state, node, restarts, cancel."""

    def claim_submissions(self, executor: str, job_name_for: Callable[[int], str],
                          limit: int = 1) -> list[dict[str, Any]]:
        """Reserve the next submission of ``executor``: its first queued run without a job, and — when
        ``limit`` > 1 and that run holds a study's cell — every queued, unsubmitted run of the same
        study placed alike (partition, time limit, GPUs, sbatch options), in queue order, up to
        ``limit``: one job array per study (issue #20). The runs of one submission share its job name,
        and each keeps its index in the submission (``detail.array_index``).

        Each reservation is a row with ``job_id`` NULL, written before the scheduler is asked, so a
        runner that dies between the two finds the row on restart and looks the job up by name
        instead of submitting it again. Nothing is reserved while the queue is paused.
        """
        unsubmitted = (f"r.status = 'queued' AND {RUN_EXECUTOR} = ? AND NOT EXISTS "
                       "(SELECT 1 FROM jobs j WHERE j.run_id = r.id)")
        with self.transaction() as c:
            if c.execute("SELECT value FROM settings WHERE key = 'queue_paused'").fetchone() == ("1",):
                return []
            first = c.execute(f"SELECT r.id, r.config FROM runs r WHERE {unsubmitted} ORDER BY r.position, r.id "
                              "LIMIT 1", (executor,)).fetchone()
            if first is None:
                return []
            ids = [first[0]]
            study = c.execute("SELECT study_id FROM study_cells WHERE run_id = ?", (first[0],)).fetchone()
            if study is not None and limit > 1:
                placement = _placement(first[1])
                ids = [rid for rid, cfg in c.execute(
                    f"SELECT r.id, r.config FROM runs r WHERE r.id IN (SELECT run_id FROM study_cells "
                    f"WHERE study_id = ?) AND {unsubmitted} ORDER BY r.position, r.id",
                    (study[0], executor)).fetchall() if _placement(cfg) == placement][:int(limit)]
            t = now()
            name = job_name_for(ids[0]) + ("-array" if len(ids) > 1 else "")
            for i, run_id in enumerate(ids):
                detail = json.dumps({"array_index": i}) if len(ids) > 1 else None
                c.execute("INSERT INTO jobs (run_id, executor, job_name, state, updated_at, detail) "
                          "VALUES (?, ?, ?, 'SUBMITTING', ?, ?)", (run_id, executor, name, t, detail))
        return [job for run_id in ids if (job := self.get(run_id)) is not None]

    def get(self, run_id: int) -> dict[str, Any] | None:
        return self._decoded(self._row("SELECT * FROM jobs WHERE run_id = ?", (run_id,)))

    def require(self, run_id: int) -> dict[str, Any]:
        """The job of a run that has one (an executor following it); a missing one is one clear error."""
        job = self.get(run_id)
        if job is None:
            raise GreentuiError(f"run {run_id} has no job in {self.path}")
        return job

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

    @overload
    @staticmethod
    def _decoded(row: dict[str, Any]) -> dict[str, Any]: ...

    @overload
    @staticmethod
    def _decoded(row: None) -> None: ...

    @staticmethod
    def _decoded(row: dict[str, Any] | None) -> dict[str, Any] | None:
        """The row with its ``detail`` JSON decoded ({} when empty); a row read decodes to a row, a
        missing one stays None (the overloads say so to the callers that read many rows)."""
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


#: The run settings an array's tasks must share (one sbatch script carries them all).
PLACEMENT_KEYS = ("partition", "time_limit", "gpus", "slurm_arg", "device")


def _placement(config: str | None) -> tuple[str, ...]:
    cfg = json.loads(config or "{}")
    return tuple(json.dumps(cfg.get(k), sort_keys=True) for k in PLACEMENT_KEYS)
