"""Copying what a remote job wrote into its run folder into the store, exactly once.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.ingest``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from backend.store.base import Repository
from backend.store.tables import (
    RUN_UPDATE_FIELDS,
    now,
)


class IngestRepository(Repository):
    """Copying what a remote job wrote into its run folder into the store, exactly once."""

    def offset(self, run_id: int, file: str) -> int:
        row = self.conn.execute("SELECT offset FROM ingest_offsets WHERE run_id = ? AND file = ?",
                                (run_id, file)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, run_id: int, file: str, old_offset: int, new_offset: int, *,
                     events: Iterable[dict[str, Any]] = (), power: Iterable[dict[str, Any]] = (),
                     results: Iterable[dict[str, Any]] = (), run_updates: Iterable[dict[str, Any]] = (),
                     metrics: Iterable[dict[str, Any]] = (), finishes: Iterable[dict[str, Any]] = (),
                     efficiency: Iterable[dict[str, Any]] = (), windows: Iterable[dict[str, Any]] = (),
                     baseline: dict[str, Any] | None = None) -> bool:
        """Copy one slice of a run-folder file into the store and advance its offset, atomically.

        Compare-and-set on the offset: when it is no longer ``old_offset`` (another ingester got
        there first) nothing is written and False is returned. ``baseline`` creates the baseline run
        a remote job evaluated (kind, config, …) and maps it in ``jobs.baseline_run_id``.
        """
        with self.transaction() as c:
            row = c.execute("SELECT offset FROM ingest_offsets WHERE run_id = ? AND file = ?",
                            (run_id, file)).fetchone()
            if (int(row[0]) if row else 0) != old_offset:
                return False
            if baseline is not None:
                have = c.execute("SELECT baseline_run_id FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
                if not have or have[0] is None:
                    pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                    cur = c.execute(
                        "INSERT INTO runs (model_id, kind, label, config, status, device, position, created_at, "
                        "started_at, baseline_key) VALUES (?, 'baseline', ?, ?, 'running', ?, ?, ?, ?, ?)",
                        (baseline.get("model_id"), baseline.get("label"),
                         json.dumps(baseline.get("config") or {}, sort_keys=True, default=str),
                         baseline.get("device"), pos, baseline.get("t") or now(), baseline.get("t") or now(),
                         baseline.get("baseline_key")))
                    c.execute("UPDATE jobs SET baseline_run_id = ? WHERE run_id = ?", (cur.lastrowid, run_id))
            for e in events:
                c.execute("INSERT INTO events (run_id, t, kind, payload) VALUES (?, ?, ?, ?)",
                          (e["run_id"], e["t"], e["kind"], json.dumps(e.get("payload") or {}, default=str)))
            for p in power:
                c.execute("INSERT INTO power_samples (run_id, t, watts, source, limit_w) VALUES (?, ?, ?, ?, ?)",
                          (p["run_id"], p["t"], p["watts"], p.get("source"), p.get("limit_w")))
            for r in results:
                self._store.results._insert_task_result(c, r["run_id"], r)
            for u in run_updates:
                fields = {k: v for k, v in u["fields"].items() if k in RUN_UPDATE_FIELDS}
                if fields:
                    if isinstance(fields.get("config"), dict):  # the energy design the job settled on (#18)
                        fields["config"] = json.dumps(fields["config"], sort_keys=True, default=str)
                    sets = ", ".join(f"{k} = ?" for k in fields)
                    c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), u["run_id"]))
            for m in metrics:
                c.execute("INSERT OR REPLACE INTO run_metrics (run_id, variant, name, value, detail) "
                          "VALUES (?, ?, ?, ?, ?)", (m["run_id"], m["variant"], m["name"], m["value"],
                                                     json.dumps(m["detail"], default=str) if m.get("detail") else None))
            for e in efficiency:
                self._store.results._replace_efficiency(c, e["run_id"], e["variant"], e["rows"])
            for w in windows:
                self._store.results._replace_windows(c, w["run_id"], w["task"], w["windows"])
            for f in finishes:
                c.execute("UPDATE runs SET status = ?, error = COALESCE(?, error), finished_at = ?, pid = NULL "
                          "WHERE id = ? AND status IN ('queued', 'running')",
                          (f["status"], f.get("error"), f.get("t") or now(), f["run_id"]))
            c.execute("INSERT INTO ingest_offsets (run_id, file, offset) VALUES (?, ?, ?) "
                      "ON CONFLICT(run_id, file) DO UPDATE SET offset = excluded.offset", (run_id, file, new_offset))
        return True
