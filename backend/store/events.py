"""A run's event stream (stages, progress, logs) and its live power samples.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.events``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from typing import Any

from backend.store.base import Repository, inserted_id
from backend.store.tables import (
    now,
)


class EventRepository(Repository):
    """A run's event stream (stages, progress, logs) and its live power samples."""

    def add(self, run_id: int, kind: str, payload: dict[str, Any] | None = None,
                  t: float | None = None) -> int:
        cur = self.conn.execute("INSERT INTO events (run_id, t, kind, payload) VALUES (?, ?, ?, ?)",
                                (run_id, t or now(), kind, json.dumps(payload or {}, default=str)))
        return inserted_id(cur)

    def list(self, run_id: int, after_id: int = 0, kinds: Iterable[str] | None = None,
               limit: int = 5000) -> builtins.list[dict[str, Any]]:
        sql = "SELECT id, t, kind, payload FROM events WHERE run_id = ? AND id > ?"
        params: builtins.list[Any] = [run_id, after_id]
        if kinds:
            k = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(k))})"
            params += k
        rows = self._rows(sql + " ORDER BY id LIMIT ?", [*params, limit])
        for r in rows:
            r["payload"] = json.loads(r["payload"] or "{}")
        return rows

    def add_power_sample(self, run_id: int, t: float, watts: float, source: str,
                         limit_w: float | None = None) -> None:
        self.conn.execute("INSERT INTO power_samples (run_id, t, watts, source, limit_w) VALUES (?, ?, ?, ?, ?)",
                          (run_id, t, watts, source, limit_w))

    def power_samples(self, run_id: int, after_id: int = 0, limit: int = 10_000) -> builtins.list[dict[str, Any]]:
        return self._rows("SELECT id, t, watts, source, limit_w FROM power_samples WHERE run_id = ? AND id > ? "
                          "ORDER BY id LIMIT ?", (run_id, after_id, limit))
