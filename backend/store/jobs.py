"""Scheduler jobs of runs (Slurm today): submission, state, node.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.jobs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.store.base import Repository
from backend.store.tables import (
    now,
)


class JobRepository(Repository):
    """Scheduler jobs of runs (Slurm today): submission, state, node."""

    def claim_submission(self, job_name_for: Callable[[int], str]) -> dict[str, Any] | None:
        """Reserve the first queued Slurm run that has no job yet (row with job_id NULL); None when none.

        The reservation is recorded before ``sbatch`` runs, so a runner that dies between the two
        finds the row on restart and looks the job up by name instead of submitting it again.
        """
        with self.transaction() as c:
            if c.execute("SELECT value FROM settings WHERE key = 'queue_paused'").fetchone() == ("1",):
                return None
            row = c.execute(
                "SELECT r.id FROM runs r LEFT JOIN slurm_jobs j ON j.run_id = r.id "
                "WHERE r.status = 'queued' AND json_extract(r.config, '$.executor') = 'slurm' "
                "AND j.run_id IS NULL ORDER BY r.position, r.id LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute("INSERT INTO slurm_jobs (run_id, job_name, state, updated_at) VALUES (?, ?, 'SUBMITTING', ?)",
                      (row[0], job_name_for(row[0]), now()))
        return self.get(row[0])

    def get(self, run_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM slurm_jobs WHERE run_id = ?", (run_id,))

    def open(self) -> list[dict[str, Any]]:
        """Jobs this workspace still follows (submitted or being submitted, not yet closed)."""
        return self._rows("SELECT * FROM slurm_jobs WHERE finished = 0 ORDER BY run_id")

    def update(self, run_id: int, **fields: Any) -> None:
        if fields:
            fields["updated_at"] = now()
            sets = ", ".join(f"{k} = ?" for k in fields)
            self.conn.execute(f"UPDATE slurm_jobs SET {sets} WHERE run_id = ?", (*fields.values(), run_id))

    def has_unsubmitted(self) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM runs r LEFT JOIN slurm_jobs j ON j.run_id = r.id WHERE r.status = 'queued' "
            "AND json_extract(r.config, '$.executor') = 'slurm' AND j.run_id IS NULL LIMIT 1").fetchone() is not None
