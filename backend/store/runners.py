"""Runner processes: registration, heartbeat, goodbye.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.runners``.
"""

from __future__ import annotations

import json
from typing import Any

from backend.store.base import Repository, inserted_id
from backend.store.tables import (
    now,
)


class RunnerRepository(Repository):
    """Runner processes: registration, heartbeat, goodbye."""

    def register(self, host: str, pid: int, pid_start: float | None, *, requested: str,
                        devices: list[str], executors: list[str]) -> int:
        t = now()
        cur = self.conn.execute(
            "INSERT INTO runners (host, pid, pid_start, requested, devices, executors, started_at, heartbeat_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (host, pid, pid_start, requested, json.dumps(devices), json.dumps(executors), t, t))
        return inserted_id(cur)

    def describe(self, runner_id: int, *, devices: list[str], executors: list[str]) -> None:
        self.conn.execute("UPDATE runners SET devices = ?, executors = ? WHERE id = ?",
                          (json.dumps(devices), json.dumps(executors), runner_id))

    def heartbeat(self, runner_id: int) -> None:
        self.conn.execute("UPDATE runners SET heartbeat_at = ? WHERE id = ?", (now(), runner_id))

    def stop(self, runner_id: int) -> None:
        self.conn.execute("UPDATE runners SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
                          (now(), runner_id))

    def active(self) -> list[dict[str, Any]]:
        """Runners that have not said goodbye (some may be dead: see ``supervisor.runner_alive``)."""
        rows = self._rows("SELECT * FROM runners WHERE stopped_at IS NULL ORDER BY id")
        for r in rows:
            r["devices"] = json.loads(r["devices"] or "[]")
            r["executors"] = json.loads(r["executors"] or "[]")
        return rows

    def get(self, runner_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM runners WHERE id = ?", (runner_id,))
