"""Runs: one row per run, its status, stage, config and the summaries tables show.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.runs``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from typing import Any

from backend.errors import GreentuiError
from backend.store.base import Repository, inserted_id
from backend.store.tables import (
    RUN_STATES,
    _fits,
    now,
)

#: the method a run's row shows (``backend.results.fmt.method_label``): "vanilla" for a baseline or a
#: run that does not prune, else the importance it prunes by
SHOWN_METHOD = ("(CASE WHEN r.kind = 'baseline' OR json_extract(r.config, '$.no_prune') IN (1, 'true') "
                "THEN 'vanilla' ELSE COALESCE(json_extract(r.config, '$.importance'), '') END)")


class RunRepository(Repository):
    """Runs: one row per run, its status, stage, config and the summaries tables show."""

    def create(self, model_id: int | None, kind: str, config: dict[str, Any], *,
                   status: str = "queued", parent_run_id: int | None = None, label: str | None = None,
                   baseline_key: str | None = None, device: str | None = None, pid: int | None = None,
                   after_run_id: int | None = None) -> int:
        """A new run; ``after_run_id``: a runner claims it only once that run is neither queued nor running."""
        if status not in RUN_STATES:
            raise ValueError(status)
        with self.transaction() as c:
            pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
            t = now()
            row = {"model_id": model_id, "parent_run_id": parent_run_id, "kind": kind, "label": label,
                   "config": json.dumps(config, sort_keys=True, default=str), "status": status, "pid": pid,
                   "device": device, "position": pos, "created_at": t,
                   "started_at": t if status == "running" else None, "baseline_key": baseline_key}
            if after_run_id is not None:
                row["after_run_id"] = after_run_id
            cur = c.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values()))
            return inserted_id(cur)

    def get(self, run_id: int) -> dict[str, Any] | None:
        if not _fits(run_id):  # an id SQLite cannot even hold (e.g. `show 99999999999999999999`)
            return None
        row = self._row("SELECT r.*, m.ref AS model_ref, m.arch AS model_arch, "
                        "COALESCE(m.name, json_extract(r.config, '$.reference.model')) AS model_name "
                        "FROM runs r LEFT JOIN models m ON m.id = r.model_id WHERE r.id = ?", (run_id,))
        if row:
            row["config"] = json.loads(row["config"] or "{}")
        return row

    def dependents(self, run_ids: Iterable[int], statuses: Iterable[str] = ("queued", "running")) -> list[dict[str, Any]]:
        """Runs in ``statuses`` whose baseline (``parent_run_id``) is one of ``run_ids``: what deleting those
        baselines would take from under them. ``[{"id", "parent_run_id", "status"}]``, by id."""
        ids = [int(i) for i in run_ids if _fits(int(i))]
        states = list(statuses)
        if not ids or not states:
            return []
        return self._rows(f"SELECT id, parent_run_id, status FROM runs WHERE parent_run_id IN "
                          f"({','.join('?' * len(ids))}) AND status IN ({','.join('?' * len(states))}) "
                          "ORDER BY id", (*ids, *states))

    def require(self, run_id: int) -> dict[str, Any]:
        row = self.get(run_id)
        if row is None:
            raise GreentuiError(f"no run with id {run_id} in {self.path}")
        return row

    def update(self, run_id: int, **fields: Any) -> None:
        if not fields:
            return
        if "status" in fields and fields["status"] not in RUN_STATES:
            raise ValueError(fields["status"])
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"], sort_keys=True, default=str)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        """Close a run unless it was already closed (e.g. cancelled while finishing)."""
        self.conn.execute("UPDATE runs SET status = ?, error = COALESCE(?, error), finished_at = ?, pid = NULL "
                          "WHERE id = ? AND status IN ('queued', 'running')", (status, error, now(), run_id))

    def delete(self, run_ids: Iterable[int]) -> int:
        """Delete runs and everything they recorded; running runs are refused."""
        ids = [int(i) for i in run_ids]
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self.transaction() as c:
            busy = c.execute(f"SELECT id FROM runs WHERE status = 'running' AND id IN ({marks})", ids).fetchall()
            if busy:
                raise GreentuiError(f"run {busy[0][0]} is running; cancel it before deleting")
            jobs = c.execute(f"SELECT run_id, executor FROM jobs WHERE finished = 0 AND run_id IN ({marks})",
                             ids).fetchall()
            if jobs:
                raise GreentuiError(f"run {jobs[0][0]} has an open {jobs[0][1]} job; cancel it before deleting")
            c.execute(f"UPDATE runs SET parent_run_id = NULL WHERE parent_run_id IN ({marks})", ids)
            c.execute(f"UPDATE runs SET after_run_id = NULL WHERE after_run_id IN ({marks})", ids)
            c.execute(f"UPDATE study_cells SET run_id = NULL WHERE run_id IN ({marks})", ids)
            for table in ("task_results", "run_metrics", "events", "power_samples", "jobs",
                          "ingest_offsets", "energy_repeats", "efficiency_results"):
                c.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
            return c.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids).rowcount

    #: Store.list_runs orders that need every run's averages; any other order pages first
    AGGREGATE_ORDERS = frozenset({"avg_acc", "avg_wh", "acc_ratio", "wh_ratio"})

    def list(self, *, limit: int = 200, offset: int = 0, text: str | None = None,
                  statuses: Iterable[str] | None = None, model_id: int | None = None,
                  order: str = "id", descending: bool = True) -> builtins.list[dict[str, Any]]:
        """Run summaries for tables: own averages, the baseline's averages and their ratios.

        Paged (``limit``/``offset``) so that the UI shows its first screen at once with 10,000 runs.
        Unless the order is by an average (``AGGREGATE_ORDERS``), the page's run ids are chosen first
        and only their task results (and their baselines') are averaged: 10,000 runs list in ~2 ms,
        not the ~27 ms of averaging every run (P2, the UI's first frame).
        """
        where, params = self._filter(text, statuses, model_id)
        order_sql = {"id": "r.id", "model": "m.ref", "status": "r.status", "avg_acc": "own.acc",
                     "avg_wh": "own.wh", "acc_ratio": "own.acc / base.acc", "wh_ratio": "own.wh / base.wh",
                     "created": "r.created_at", "ratio": "json_extract(r.config, '$.prune_ratio')",
                     "method": "json_extract(r.config, '$.importance')",
                     "position": "r.position"}.get(order, "r.id")
        direction = "DESC" if descending else "ASC"
        ordering = f"ORDER BY {order_sql} {direction}, r.id {direction}"
        # the filter's and the page's placeholders appear once either way: in the page or in the tail
        bindings = [*params, int(limit), int(offset)]
        if order in self.AGGREGATE_ORDERS:
            page_cte, page_from, scope = "", "runs r", ""
            tail = f"{where} {ordering} LIMIT ? OFFSET ?"
        else:
            page_cte = (f"page AS (SELECT r.id FROM runs r LEFT JOIN models m ON m.id = r.model_id {where} "
                        f"{ordering} LIMIT ? OFFSET ?),")
            page_from = "page CROSS JOIN runs r ON r.id = page.id"  # the page drives the join
            scope = ("WHERE run_id IN (SELECT id FROM page UNION "
                     "SELECT parent_run_id FROM runs WHERE id IN (SELECT id FROM page))")
            tail = ordering
        sql = f"""
            WITH {page_cte} agg AS (
                SELECT run_id, variant, AVG(acc) AS acc, AVG(energy_kwh) * 1000.0 AS wh,
                       COUNT(*) AS tasks
                FROM task_results {scope} GROUP BY run_id, variant)
            SELECT r.id, r.model_id, r.parent_run_id, r.kind, r.label, r.status, r.stage, r.device,
                   r.created_at, r.started_at, r.finished_at, r.params_before, r.params_after, r.error,
                   r.position, r.pid, r.executor, r.slot, r.cancel_requested, r.runner_id,
                   j.job_id AS job_id, j.state AS job_state, j.reason AS job_reason, j.node AS node,
                   j.cancel_requested AS job_cancel_requested, j.restarts AS job_restarts,
                   json_extract(r.config, '$.executor') AS asked_executor,
                   m.ref AS model_ref,
                   COALESCE(m.name, json_extract(r.config, '$.reference.model')) AS model_name,
                   json_extract(r.config, '$.importance') AS method,
                   json_extract(r.config, '$.prune_ratio') AS prune_ratio,
                   json_extract(r.config, '$.no_prune') AS no_prune,
                   own.acc AS avg_acc, own.wh AS avg_wh, own.tasks AS tasks_done,
                   json_array_length(r.config, '$.tasks') AS tasks_planned,
                   base.acc AS base_acc, base.wh AS base_wh,
                   CASE WHEN base.acc > 0 THEN own.acc / base.acc END AS acc_ratio,
                   CASE WHEN base.wh > 0 THEN own.wh / base.wh END AS wh_ratio
            FROM {page_from}
            LEFT JOIN models m ON m.id = r.model_id
            LEFT JOIN agg own ON own.run_id = r.id AND own.variant =
                 (CASE WHEN r.kind = 'experiment' THEN 'pruned'
                  WHEN r.kind = 'reference' THEN COALESCE((SELECT 'pruned' FROM task_results t
                       WHERE t.run_id = r.id AND t.variant = 'pruned' LIMIT 1), 'vanilla') ELSE
                   COALESCE((SELECT variant FROM task_results t WHERE t.run_id = r.id LIMIT 1), 'vanilla') END)
            LEFT JOIN agg base ON base.variant = 'vanilla' AND base.run_id =  -- one key: an index lookup
                 (CASE WHEN r.kind != 'reference' THEN r.parent_run_id
                  WHEN own.variant = 'pruned' THEN r.id END)
            LEFT JOIN jobs j ON j.run_id = r.id
            {tail}"""
        return self._rows(sql, bindings)

    def count(self, *, text: str | None = None, statuses: Iterable[str] | None = None,
                   model_id: int | None = None) -> int:
        where, params = self._filter(text, statuses, model_id)
        return self.conn.execute(f"SELECT COUNT(*) FROM runs r LEFT JOIN models m ON m.id = r.model_id {where}",
                                 params).fetchone()[0]

    @staticmethod
    def _filter(text: str | None, statuses: Iterable[str] | None,
                    model_id: int | None) -> tuple[str, builtins.list[Any]]:
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if text:
            # what a row shows, not its whole config: "taylor" found the vanilla baseline too, whose
            # config carries the default importance it never used
            like = f"%{text}%"
            clauses.append("(m.ref LIKE ? OR COALESCE(m.name, json_extract(r.config, '$.reference.model')) LIKE ? "
                           "OR r.status LIKE ? OR r.kind LIKE ? OR r.label LIKE ? "
                           f"OR {SHOWN_METHOD} LIKE ? OR CAST(r.id AS TEXT) = ?)")
            params += [like, like, like, like, like, like, text]
        if statuses:
            st = list(statuses)
            clauses.append(f"r.status IN ({','.join('?' * len(st))})")
            params += st
        if model_id is not None:
            clauses.append("r.model_id = ?")
            params.append(model_id)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def last_queued_config(self) -> dict[str, Any] | None:
        """The raw config of the newest run the user queued: an experiment, or a baseline queued on its
        own — never the vanilla baseline the pipeline recorded for an experiment (its id is above that
        experiment's). None when there is none."""
        rows = self._rows(
            "SELECT config FROM runs b WHERE kind IN ('experiment', 'baseline') AND NOT (kind = 'baseline' AND "
            "EXISTS (SELECT 1 FROM runs e WHERE e.parent_run_id = b.id AND e.id < b.id)) "
            "ORDER BY id DESC LIMIT 1")
        return json.loads(rows[0]["config"] or "{}") if rows else None

    def finished_count(self) -> int:
        """How many experiments and baselines finished (``done``): the time estimate's sample size."""
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'done' AND kind IN "
                                 "('experiment', 'baseline')").fetchone()[0]

    def recent_finished(self, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """The newest finished experiments and baselines with a parameter count: id, raw config (parsed
        JSON), params_before — what the form's time estimate learns its rates from."""
        rows = self._rows("SELECT id, config, params_before FROM runs WHERE status = 'done' "
                          "AND kind IN ('experiment', 'baseline') AND params_before > 0 "
                          "ORDER BY id DESC LIMIT ?", [limit])
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
        return rows

    def running(self) -> builtins.list[dict[str, Any]]:
        """Running runs executed by a process of this machine, judged by its pid and its runner: every
        running run but those a scheduler's job follows (a ``jobs`` row, or the baseline a job made)."""
        return self._rows("SELECT id, pid, pid_start, device, runner_id, executor, slot FROM runs r "
                          "WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id "
                          "OR j.baseline_run_id = r.id)")

    def mark_interrupted(self, run_ids: Iterable[int], reason: str) -> int:
        """Runs whose process vanished become interrupted; their task rows are whole tasks (each was
        written in one transaction) and stay. The queue is paused so nothing surprising starts after
        a crash."""
        ids = list(run_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self.transaction() as c:
            n = c.execute(f"UPDATE runs SET status = 'interrupted', error = ?, finished_at = ?, pid = NULL "
                          f"WHERE status = 'running' AND id IN ({marks})", (reason, now(), *ids)).rowcount
            if n:
                c.execute("INSERT INTO settings (key, value) VALUES ('queue_paused', '1') "
                          "ON CONFLICT(key) DO UPDATE SET value = '1'")
            return n

    def overlapping(self, run_id: int) -> builtins.list[int]:
        """Other runs on the same device whose running time overlapped this run's (its own baseline,
        which runs inside it, and the experiment that made it excepted): their load was in this
        run's energy figures."""
        run = self.require(run_id)
        if not run.get("started_at") or not run.get("device"):
            return []
        t = now()
        rows = self._rows(
            "SELECT id FROM runs WHERE id != ? AND device = ? AND started_at IS NOT NULL "
            "AND started_at < ? AND COALESCE(finished_at, ?) > ? AND COALESCE(parent_run_id, -1) != ? "
            "AND id != ? AND kind NOT IN ('import', 'reference') ORDER BY id",
            (run_id, run["device"], run.get("finished_at") or t, t, run["started_at"], run_id,
             run.get("parent_run_id") or -1))
        return [r["id"] for r in rows]

    def requeued(self, run_id: int, stage: str) -> None:
        """A running run whose job a scheduler put back in its queue (a node failed) is queued again;
        its results so far stay, and the job resumes it in the same run folder."""
        self.conn.execute("UPDATE runs SET status = 'queued', stage = ? WHERE id = ? AND status = 'running'",
                          (stage, run_id))

    def mark_started(self, run_id: int) -> None:
        """A queued run whose job started elsewhere (a scheduler's node) is now running."""
        self.conn.execute("UPDATE runs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
                          (now(), run_id))

    def ids(self) -> set[int]:
        """Every run's id (``greentui doctor`` matches run folders against them)."""
        return {int(r[0]) for r in self.conn.execute("SELECT id FROM runs")}

    def finished_with_folders(self) -> builtins.list[int]:
        """Finished runs that ran in this workspace and so have a run folder: experiments and
        baselines that started and ended ``done``. A baseline that a remote job evaluated keeps its
        files in the experiment's folder (``jobs.baseline_run_id``), and imported or published runs
        never had one."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM runs WHERE status = 'done' AND kind IN ('experiment', 'baseline') "
            "AND started_at IS NOT NULL AND id NOT IN "
            "(SELECT baseline_run_id FROM jobs WHERE baseline_run_id IS NOT NULL) ORDER BY id")]
