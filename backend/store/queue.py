"""The queue: what runs next, claiming a run, moving it, pausing, cancel flags.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.queue``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from backend.errors import GreentuiError
from backend.store.base import Repository
from backend.store.tables import (
    ACTIVE_STATES,
    now,
)


class QueueRepository(Repository):
    """The queue: what runs next, claiming a run, moving it, pausing, cancel flags."""

    def paused(self) -> bool:
        return self._store.settings.get("queue_paused", "0") == "1"

    def set_paused(self, paused: bool) -> None:
        self._store.settings.set("queue_paused", "1" if paused else "0")

    def queued(self) -> list[dict[str, Any]]:
        return self._store.runs.list(statuses=ACTIVE_STATES, order="position", descending=False, limit=10_000)

    def candidates(self, limit: int = 500) -> list[dict[str, Any]]:
        """Queued runs in execution order, config parsed: what a runner may claim next. A run queued
        after another (``after_run_id``: a study's cell after the baseline it shares) waits while that
        run is queued or running."""
        rows = self._rows("SELECT id, config, position, device FROM runs r WHERE status = 'queued' "
                          "AND NOT EXISTS (SELECT 1 FROM runs b WHERE b.id = r.after_run_id "
                          "AND b.status IN ('queued', 'running')) ORDER BY position, id LIMIT ?", (limit,))
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
        return rows

    def claim(self, run_id: int, *, runner_id: int | None, executor: str, device: str | None,
                  slot: str | None = None) -> bool:
        """Atomically move one queued run to running for a runner; False when another runner took it,
        it was cancelled meanwhile or the queue is paused."""
        with self.transaction() as c:
            if c.execute("SELECT value FROM settings WHERE key = 'queue_paused'").fetchone() == ("1",):
                return False
            n = c.execute("UPDATE runs SET status = 'running', runner_id = ?, executor = ?, device = ?, "
                          "slot = ?, started_at = ?, pid = NULL, pid_start = NULL, cancel_requested = NULL "
                          "WHERE id = ? AND status = 'queued'",
                          (runner_id, executor, device, slot, now(), run_id)).rowcount
        return n == 1

    def record_process(self, run_id: int, pid: int, pid_start: float | None) -> None:
        """Record the process that executes a running run (pid + start time = its identity)."""
        self.conn.execute("UPDATE runs SET pid = ?, pid_start = ? WHERE id = ? AND status = 'running'",
                          (pid, pid_start, run_id))

    def request_cancel(self, run_id: int) -> str | None:
        """Cancel a queued run at once, or raise the cancel flag of a running one.

        Returns ``"cancelled"``, ``"cancelling"`` or None when the run is in neither state (it ended
        meanwhile). One transaction, keyed by run id: a cancel racing the end of a run lands on that
        run's row or nowhere, never on the next run."""
        with self.transaction() as c:
            if c.execute("UPDATE runs SET status = 'cancelled', finished_at = ?, error = 'cancelled by the user' "
                         "WHERE id = ? AND status = 'queued'", (now(), run_id)).rowcount:
                return "cancelled"
            if c.execute("UPDATE runs SET cancel_requested = COALESCE(cancel_requested, ?) "
                         "WHERE id = ? AND status = 'running'", (now(), run_id)).rowcount:
                return "cancelling"
        return None

    def cancel_flag(self, run_ids: Iterable[int]) -> float | None:
        """The earliest cancel request among ``run_ids`` (a run and its baseline), or None."""
        ids = [int(i) for i in run_ids]
        row = self.conn.execute(f"SELECT MIN(cancel_requested) FROM runs WHERE id IN ({','.join('?' * len(ids))})",
                                ids).fetchone()
        return row[0] if row else None

    def cancel_requests(self) -> list[dict[str, Any]]:
        """Running runs whose cancel flag is up (the runner escalates those that ignore it)."""
        return self._rows("SELECT id, pid, pid_start, runner_id, executor, cancel_requested FROM runs "
                          "WHERE status = 'running' AND cancel_requested IS NOT NULL")

    def move(self, run_id: int, delta: int) -> None:
        """Swap a queued run with its neighbour (delta -1 = earlier, +1 = later)."""
        with self.transaction() as c:
            rows = c.execute("SELECT id, position FROM runs WHERE status = 'queued' ORDER BY position, id").fetchall()
            ids = [r[0] for r in rows]
            if run_id not in ids:
                raise GreentuiError(f"run {run_id} is not queued")
            i = ids.index(run_id)
            j = i + delta
            if 0 <= j < len(ids):
                (a, pa), (b, pb) = rows[i], rows[j]
                c.execute("UPDATE runs SET position = ? WHERE id = ?", (pb, a))
                c.execute("UPDATE runs SET position = ? WHERE id = ?", (pa, b))

    def requeue(self, run_id: int) -> int:
        """A new queued run with the same model, kind and config (the old one stays as history)."""
        run = self._store.runs.require(run_id)
        return self._store.runs.create(run["model_id"], run["kind"], run["config"], label=run["label"],
                               baseline_key=run["baseline_key"])

    def cancel_queued(self, run_id: int) -> bool:
        return self.conn.execute("UPDATE runs SET status = 'cancelled', finished_at = ?, "
                                 "error = 'cancelled by the user' "
                                 "WHERE id = ? AND status = 'queued'", (now(), run_id)).rowcount == 1
