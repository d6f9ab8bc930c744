"""The SQLite store: schema, migrations and every query of the project (the only module with SQL).

Why SQLite in WAL mode: the TUI, the detached runner and CLI commands are separate processes that
read and write the same workspace at once; WAL lets readers proceed while one writer commits, and a
busy timeout turns lock contention into a short wait instead of "database is locked". Multi-statement
writes take the write lock up front (``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a
read lock. A run's task results are written in one transaction, so a killed process leaves either a
whole task row or none.

Only stdlib ``sqlite3`` and ``sqlite_utils`` are imported here: the UI imports this module and must
start fast.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from backend.errors import GreentuiError

if TYPE_CHECKING:
    import sqlite_utils

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
RUN_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")
# Runs a local runner executes (and judges by pid); Slurm runs are followed by backend.execution.executors.slurm.
LOCAL_ONLY = "COALESCE(json_extract(config, '$.executor'), 'local') = 'local'"
# Run columns a Slurm job may set through the ingester (what the pipeline updates on a run).
RUN_UPDATE_FIELDS = ("model_id", "parent_run_id", "stage", "device", "params_before", "params_after",
                     "baseline_key")
VARIANTS = ("vanilla", "pruned")
TASK_RESULT_FIELDS = (
    "acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n_samples", "seconds", "tokens",
    "energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh", "energy_kwh", "nvml_joules",
    "meter", "cpu_mode", "device", "num_fewshot", "limit_n", "provenance",
)

REPEAT_FIELDS = ("repeat", "seconds", "tokens", "energy_kwh", "energy_cpu_kwh", "energy_gpu_kwh",
                 "energy_ram_kwh", "nvml_joules", "meter")
EFFICIENCY_FIELDS = ("batch_size", "seq_len", "forwards", "tokens", "seconds", "tokens_per_s", "joules",
                     "j_per_token", "meter")


def _fits(value: Any) -> bool:
    """Whether ``value`` is an integer SQLite can bind (64-bit signed); larger ids exist nowhere."""
    return isinstance(value, int) and -(2**63) <= value < 2**63


def now() -> float:
    return time.time()


# --------------------------------------------------------------------------------------- migrations

def _migration_1(db: sqlite_utils.Database) -> None:
    """The first schema (docs/architecture.md, "Data model", lists every table)."""
    db["models"].create({
        "id": int, "ref": str, "name": str, "source": str, "arch": str, "params": int,
        "layers": int, "heads": int, "kv_heads": int, "hidden": int, "intermediate": int,
        "dtype": str, "size_bytes": int, "trust_remote_code": int, "info": str, "added_at": float,
    }, pk="id", not_null={"ref"}, defaults={"trust_remote_code": 0})
    db["models"].create_index(["ref"], unique=True)
    db["runs"].create({
        "id": int, "model_id": int, "parent_run_id": int, "kind": str, "label": str, "config": str,
        "status": str, "pid": int, "device": str, "position": float, "stage": str,
        "created_at": float, "started_at": float, "finished_at": float,
        "params_before": int, "params_after": int, "baseline_key": str, "error": str,
    }, pk="id", not_null={"kind", "status", "config"},
        foreign_keys=[("model_id", "models", "id"), ("parent_run_id", "runs", "id")])
    db["runs"].create_index(["status", "position"])
    db["runs"].create_index(["baseline_key"])
    db["runs"].create_index(["model_id"])
    db["task_results"].create({
        "id": int, "run_id": int, "variant": str, "task": str,
        "acc": float, "acc_stderr": float, "acc_norm": float, "acc_norm_stderr": float,
        "n_samples": int, "seconds": float, "tokens": int,
        "energy_cpu_kwh": float, "energy_gpu_kwh": float, "energy_ram_kwh": float,
        "energy_kwh": float, "nvml_joules": float, "meter": str, "cpu_mode": str, "device": str,
        "num_fewshot": int, "limit_n": int, "provenance": str, "created_at": float,
    }, pk="id", not_null={"run_id", "variant", "task"}, foreign_keys=[("run_id", "runs", "id")])
    db["task_results"].create_index(["run_id", "variant", "task"], unique=True)
    db["run_metrics"].create({
        "id": int, "run_id": int, "variant": str, "name": str, "value": float, "detail": str,
    }, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["run_metrics"].create_index(["run_id", "variant", "name"], unique=True)
    db["events"].create({"id": int, "run_id": int, "t": float, "kind": str, "payload": str},
                        pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["events"].create_index(["run_id", "id"])
    db["power_samples"].create({"id": int, "run_id": int, "t": float, "watts": float,
                                "source": str, "limit_w": float},
                               pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["power_samples"].create_index(["run_id", "id"])
    db["settings"].create({"key": str, "value": str}, pk="key")


def _migration_repeats_efficiency(db: sqlite_utils.Database) -> None:
    """Issue #11: each measured pass of a task (``--repeats``) and the efficiency stage's points.

    ``task_results`` keeps one row per task (the means), so every existing reader still works;
    ``energy_repeats`` holds the passes those means came from, ``efficiency_results`` the
    tokens/s and J/token of each variant at each batch size. Idempotent (tables made if missing).
    """
    if "energy_repeats" not in db.table_names():
        db["energy_repeats"].create({
            "id": int, "run_id": int, "variant": str, "task": str, "repeat": int, "seconds": float,
            "tokens": int, "energy_kwh": float, "energy_cpu_kwh": float, "energy_gpu_kwh": float,
            "energy_ram_kwh": float, "nvml_joules": float, "meter": str, "detail": str,
        }, pk="id", not_null={"run_id", "variant", "task", "repeat"}, foreign_keys=[("run_id", "runs", "id")])
        db["energy_repeats"].create_index(["run_id", "variant", "task", "repeat"], unique=True)
    if "efficiency_results" not in db.table_names():
        db["efficiency_results"].create({
            "id": int, "run_id": int, "variant": str, "batch_size": int, "seq_len": int,
            "forwards": int, "tokens": int, "seconds": float, "tokens_per_s": float,
            "joules": float, "j_per_token": float, "meter": str, "detail": str,
        }, pk="id", not_null={"run_id", "variant", "batch_size"}, foreign_keys=[("run_id", "runs", "id")])
        db["efficiency_results"].create_index(["run_id", "variant", "batch_size"], unique=True)


def _migration_slurm(db: sqlite_utils.Database) -> None:
    """Slurm jobs of runs (backend.execution.executors.slurm) and how far each run-folder file was ingested.

    One row per run sent to Slurm: its job id (kept so that a restarted runner re-attaches instead of
    submitting again), the last state read from Slurm, the node, and the placeholder mapping of the
    baseline run the job created. ``ingest_offsets`` holds, per run and file, the byte offset up to
    which lines were copied into the store; it is updated in the same transaction as the rows it
    covers, so an ingest interrupted at any point neither loses nor doubles a line.
    """
    db["slurm_jobs"].create({
        "run_id": int, "job_id": str, "job_name": str, "state": str, "reason": str, "node": str,
        "submitted_at": float, "updated_at": float, "finished": int, "cancel_requested": int,
        "baseline_run_id": int,
    }, pk="run_id", foreign_keys=[("run_id", "runs", "id")], defaults={"finished": 0, "cancel_requested": 0})
    db["ingest_offsets"].create({"run_id": int, "file": str, "offset": int}, pk=("run_id", "file"))


def _migration_control_plane(db: sqlite_utils.Database) -> None:
    """The control plane (issue #9): who runs what, where, and the cancel flag, all in the store.

    * ``runs.cancel_requested``: when a cancel was asked (NULL = not asked). The run's own process
      polls its row at safe points, so a cancel names a run, never a pid: it cannot hit the next run.
    * ``runs.pid_start``: the process start time (psutil ``create_time``) that goes with ``runs.pid``;
      a pid alone is reused by the kernel, the pair is not.
    * ``runs.runner_id`` / ``executor`` / ``slot``: the runner that claimed the run, how it executes it
      (``local`` or ``slurm``; NULL on old rows = local) and the device slot(s) it holds.
      (A Slurm run's job id, state and node live in ``slurm_jobs``, which the Queue screen joins.)
    * ``runners``: one row per runner process (host, pid + start time, devices, heartbeat). Alive =
      a fresh heartbeat and a matching pid/start time — never decided by taking a lock.
    """
    c = db.conn
    for col, typ in (("cancel_requested", "REAL"), ("pid_start", "REAL"), ("runner_id", "INTEGER"),
                     ("executor", "TEXT"), ("slot", "TEXT")):
        c.execute(f"ALTER TABLE runs ADD COLUMN {col} {typ}")
    c.execute("""CREATE TABLE runners (
        id INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start REAL,
        requested TEXT, devices TEXT, executors TEXT, started_at REAL, heartbeat_at REAL,
        stopped_at REAL)""")
    c.execute("CREATE INDEX idx_runners_alive ON runners (stopped_at, heartbeat_at)")
    c.execute("CREATE INDEX idx_runs_runner ON runs (runner_id)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1, _migration_slurm,
                                                              _migration_repeats_efficiency,
                                                              _migration_control_plane]
SCHEMA_VERSION = len(MIGRATIONS)


# ------------------------------------------------------------------------------------------- store

class ChangeToken(NamedTuple):
    """A cheap fingerprint of the store (``Store.change_token``); equal tokens mean nothing changed."""

    runs: int
    max_run: int | None
    active: int
    max_event: int | None
    max_result: int | None
    results: int
    models: int
    paused: str | None
    queue: str | None
    jobs: float | None = None   # the last change of a Slurm job's state (slurm_jobs.updated_at)

    @property
    def tables(self) -> tuple[Any, ...]:
        """Everything but the event cursor: what run, result, model and queue tables show (a
        progress event alone need not redraw a table)."""
        return self[:3] + self[4:]


class Store:
    """A connection to one workspace's database. Cheap to open; one per thread or process."""

    def __init__(self, path: str | Path, *, check: bool = True):
        """Open (creating when absent) the greentui store at ``path``.

        The rule: an existing file is opened as a store only when it is greentui's (it has the
        ``schema_version`` table) or holds no table at all; anything else is refused before a byte of
        it changes (no table added, no switch to WAL). A store is integrity-checked once per process
        (``PRAGMA quick_check``); a damaged one is refused with what to do (``greentui doctor``).
        ``check=False`` skips that check: ``greentui doctor`` opens damaged stores to report on them.
        """
        self.path = Path(path)
        _refuse_non_database(self.path)
        _refuse_read_only(self.path)
        conn = None
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False, factory=_Connection)
            conn.path = self.path
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _refuse_foreign(conn, self.path)  # before anything below can write to the file
            if check:
                _check_integrity_once(conn, self.path)
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
        except GreentuiError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise GreentuiError(f"{self.path} is not a usable greentui database ({exc}); "
                                "it was left untouched — move it aside or pass another --runs-dir") from exc
        self.journal_mode = mode
        self.conn = conn
        self._db: Any = None
        self._migrate()

    # ---------------------------------------------------------------- plumbing
    @property
    def db(self) -> "sqlite_utils.Database":
        """sqlite_utils over the same connection, made on first use: importing sqlite_utils pulls in
        pandas and numpy when installed (~1.5 s), which the TUI's first screen must not wait for."""
        if self._db is None:
            import sqlite_utils
            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Take the write lock now (BEGIN IMMEDIATE), commit on success, roll back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL)")
            row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise GreentuiError(
                    f"{self.path} has schema version {current}, newer than this greentui ({SCHEMA_VERSION}); "
                    "upgrade greentui")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](self.db)
                c.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now()))

    def schema_version(self) -> int:
        return self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def _row(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # ---------------------------------------------------------------- settings
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def queue_paused(self) -> bool:
        return self.get_setting("queue_paused", "0") == "1"

    def set_queue_paused(self, paused: bool) -> None:
        self.set_setting("queue_paused", "1" if paused else "0")

    # ---------------------------------------------------------------- models
    MODEL_FIELDS = ("name", "source", "arch", "params", "layers", "heads", "kv_heads", "hidden",
                    "intermediate", "dtype", "size_bytes", "trust_remote_code")

    def upsert_model(self, ref: str, **info: Any) -> int:
        """Add or refresh a model by its reference (HF id or absolute path); return its id."""
        fields = {k: info.pop(k) for k in list(info) if k in self.MODEL_FIELDS}
        fields["trust_remote_code"] = int(bool(fields.get("trust_remote_code", 0)))
        extra = json.dumps(info, default=str) if info else None
        with self.transaction() as c:
            row = c.execute("SELECT id FROM models WHERE ref = ?", (ref,)).fetchone()
            if row:
                sets = ", ".join(f"{k} = ?" for k in fields)
                c.execute(f"UPDATE models SET {sets}, info = COALESCE(?, info) WHERE id = ?",
                          (*fields.values(), extra, row[0]))
                return int(row[0])
            cols = ", ".join(["ref", *fields, "info", "added_at"])
            marks = ", ".join("?" * (len(fields) + 3))
            cur = c.execute(f"INSERT INTO models ({cols}) VALUES ({marks})",
                            (ref, *fields.values(), extra, now()))
            return int(cur.lastrowid)

    def record_imports(self, items: list[dict[str, Any]]) -> list[int]:
        """Record imported results as finished runs, all in one transaction: a failure anywhere
        (a bad row, a full disk) leaves no run, no model and no result behind, and no run is ever
        ``running`` on the way. Each item: ``model``, ``config``, ``label``, ``parent_run_id``, ``rows``
        (task result dicts with ``variant`` and ``task``)."""
        ids: list[int] = []
        with self.transaction() as c:
            for it in items:
                row = c.execute("SELECT id FROM models WHERE ref = ?", (it["model"],)).fetchone()
                if row:
                    model_id = int(row[0])
                else:
                    model_id = int(c.execute(
                        "INSERT INTO models (ref, name, source, trust_remote_code, added_at) "
                        "VALUES (?, ?, 'import', 0, ?)", (it["model"], it["model"], now())).lastrowid)
                pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                t = now()
                run_id = int(c.execute(
                    "INSERT INTO runs (model_id, parent_run_id, kind, label, config, status, position, "
                    "created_at, started_at, finished_at) VALUES (?, ?, 'import', ?, ?, 'done', ?, ?, ?, ?)",
                    (model_id, it.get("parent_run_id"), it.get("label"),
                     json.dumps(it["config"], sort_keys=True, default=str), pos, t, t, t)).lastrowid)
                for r in it["rows"]:
                    self._insert_task_result(c, run_id, r)
                ids.append(run_id)
        return ids

    def get_model(self, ref_or_id: str | int) -> dict[str, Any] | None:
        if (isinstance(ref_or_id, int) or str(ref_or_id).isdigit()) and _fits(int(ref_or_id)):
            row = self._row("SELECT * FROM models WHERE id = ?", (int(ref_or_id),))
            if row:
                return row
        return self._row("SELECT * FROM models WHERE ref = ? OR name = ? ORDER BY id LIMIT 1",
                         (str(ref_or_id), str(ref_or_id)))

    def list_models(self) -> list[dict[str, Any]]:
        return self._rows("SELECT m.*, (SELECT COUNT(*) FROM runs r WHERE r.model_id = m.id) AS runs "
                          "FROM models m ORDER BY m.id")

    def remove_model(self, model_id: int) -> None:
        """Remove a model that no run refers to; runs are history and are never dropped implicitly."""
        with self.transaction() as c:
            n = c.execute("SELECT COUNT(*) FROM runs WHERE model_id = ?", (model_id,)).fetchone()[0]
            if n:
                raise GreentuiError(f"model {model_id} has {n} run(s); delete them first (greentui rm RUN)")
            if c.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount == 0:
                raise GreentuiError(f"no model with id {model_id}")

    # ---------------------------------------------------------------- runs
    def create_run(self, model_id: int | None, kind: str, config: dict[str, Any], *,
                   status: str = "queued", parent_run_id: int | None = None, label: str | None = None,
                   baseline_key: str | None = None, device: str | None = None, pid: int | None = None) -> int:
        if status not in RUN_STATES:
            raise ValueError(status)
        with self.transaction() as c:
            pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
            t = now()
            cur = c.execute(
                "INSERT INTO runs (model_id, parent_run_id, kind, label, config, status, pid, device, "
                "position, created_at, started_at, baseline_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (model_id, parent_run_id, kind, label, json.dumps(config, sort_keys=True, default=str),
                 status, pid, device, pos, t, t if status == "running" else None, baseline_key))
            return int(cur.lastrowid)

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        if not _fits(run_id):  # an id SQLite cannot even hold (e.g. `show 99999999999999999999`)
            return None
        row = self._row("SELECT r.*, m.ref AS model_ref, m.arch AS model_arch, "
                        "COALESCE(m.name, json_extract(r.config, '$.reference.model')) AS model_name "
                        "FROM runs r LEFT JOIN models m ON m.id = r.model_id WHERE r.id = ?", (run_id,))
        if row:
            row["config"] = json.loads(row["config"] or "{}")
        return row

    def require_run(self, run_id: int) -> dict[str, Any]:
        row = self.get_run(run_id)
        if row is None:
            raise GreentuiError(f"no run with id {run_id} in {self.path}")
        return row

    def update_run(self, run_id: int, **fields: Any) -> None:
        if not fields:
            return
        if "status" in fields and fields["status"] not in RUN_STATES:
            raise ValueError(fields["status"])
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"], sort_keys=True, default=str)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Close a run unless it was already closed (e.g. cancelled while finishing)."""
        self.conn.execute("UPDATE runs SET status = ?, error = COALESCE(?, error), finished_at = ?, pid = NULL "
                          "WHERE id = ? AND status IN ('queued', 'running')", (status, error, now(), run_id))

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete runs and everything they recorded; running runs are refused."""
        ids = [int(i) for i in run_ids]
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self.transaction() as c:
            busy = c.execute(f"SELECT id FROM runs WHERE status = 'running' AND id IN ({marks})", ids).fetchall()
            if busy:
                raise GreentuiError(f"run {busy[0][0]} is running; cancel it before deleting")
            jobs = c.execute(f"SELECT run_id FROM slurm_jobs WHERE finished = 0 AND run_id IN ({marks})",
                             ids).fetchall()
            if jobs:
                raise GreentuiError(f"run {jobs[0][0]} has a Slurm job; cancel it before deleting")
            c.execute(f"UPDATE runs SET parent_run_id = NULL WHERE parent_run_id IN ({marks})", ids)
            for table in ("task_results", "run_metrics", "events", "power_samples", "slurm_jobs",
                          "ingest_offsets", "energy_repeats", "efficiency_results"):
                c.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
            return c.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids).rowcount

    #: Store.list_runs orders that need every run's averages; any other order pages first
    AGGREGATE_ORDERS = frozenset({"avg_acc", "avg_wh", "acc_ratio", "wh_ratio"})

    def list_runs(self, *, limit: int = 200, offset: int = 0, text: str | None = None,
                  statuses: Iterable[str] | None = None, model_id: int | None = None,
                  order: str = "id", descending: bool = True) -> list[dict[str, Any]]:
        """Run summaries for tables: own averages, the baseline's averages and their ratios.

        Paged (``limit``/``offset``) so that the UI shows its first screen at once with 10,000 runs.
        Unless the order is by an average (``AGGREGATE_ORDERS``), the page's run ids are chosen first
        and only their task results (and their baselines') are averaged: 10,000 runs list in ~2 ms,
        not the ~27 ms of averaging every run (P2, the UI's first frame).
        """
        where, params = self._run_filter(text, statuses, model_id)
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
                   sj.job_id AS job_id, sj.state AS job_state, sj.node AS node,
                   sj.cancel_requested AS job_cancel_requested,
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
            LEFT JOIN slurm_jobs sj ON sj.run_id = r.id
            {tail}"""
        return self._rows(sql, bindings)

    def count_runs(self, *, text: str | None = None, statuses: Iterable[str] | None = None,
                   model_id: int | None = None) -> int:
        where, params = self._run_filter(text, statuses, model_id)
        return self.conn.execute(f"SELECT COUNT(*) FROM runs r LEFT JOIN models m ON m.id = r.model_id {where}",
                                 params).fetchone()[0]

    @staticmethod
    def _run_filter(text: str | None, statuses: Iterable[str] | None,
                    model_id: int | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if text:
            like = f"%{text}%"
            clauses.append("(m.ref LIKE ? OR r.status LIKE ? OR r.kind LIKE ? OR r.label LIKE ? "
                           "OR r.config LIKE ? OR CAST(r.id AS TEXT) = ?)")
            params += [like, like, like, like, like, text]
        if statuses:
            st = list(statuses)
            clauses.append(f"r.status IN ({','.join('?' * len(st))})")
            params += st
        if model_id is not None:
            clauses.append("r.model_id = ?")
            params.append(model_id)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    # ---------------------------------------------------------------- queue
    def queued_runs(self) -> list[dict[str, Any]]:
        return self.list_runs(statuses=ACTIVE_STATES, order="position", descending=False, limit=10_000)

    def queued_candidates(self, limit: int = 500) -> list[dict[str, Any]]:
        """Queued runs in execution order, config parsed: what a runner may claim next."""
        rows = self._rows("SELECT id, config, position, device FROM runs WHERE status = 'queued' "
                          "ORDER BY position, id LIMIT ?", (limit,))
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
        return rows

    def claim_run(self, run_id: int, *, runner_id: int | None, executor: str, device: str | None,
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

    # ---------------------------------------------------------------- runners
    def register_runner(self, host: str, pid: int, pid_start: float | None, *, requested: str,
                        devices: list[str], executors: list[str]) -> int:
        t = now()
        cur = self.conn.execute(
            "INSERT INTO runners (host, pid, pid_start, requested, devices, executors, started_at, heartbeat_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (host, pid, pid_start, requested, json.dumps(devices), json.dumps(executors), t, t))
        return int(cur.lastrowid)

    def describe_runner(self, runner_id: int, *, devices: list[str], executors: list[str]) -> None:
        self.conn.execute("UPDATE runners SET devices = ?, executors = ? WHERE id = ?",
                          (json.dumps(devices), json.dumps(executors), runner_id))

    def heartbeat(self, runner_id: int) -> None:
        self.conn.execute("UPDATE runners SET heartbeat_at = ? WHERE id = ?", (now(), runner_id))

    def stop_runner(self, runner_id: int) -> None:
        self.conn.execute("UPDATE runners SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
                          (now(), runner_id))

    def active_runners(self) -> list[dict[str, Any]]:
        """Runners that have not said goodbye (some may be dead: see ``supervisor.runner_alive``)."""
        rows = self._rows("SELECT * FROM runners WHERE stopped_at IS NULL ORDER BY id")
        for r in rows:
            r["devices"] = json.loads(r["devices"] or "[]")
            r["executors"] = json.loads(r["executors"] or "[]")
        return rows

    def get_runner(self, runner_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM runners WHERE id = ?", (runner_id,))

    def move_in_queue(self, run_id: int, delta: int) -> None:
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

    def running_runs(self) -> list[dict[str, Any]]:
        """Running runs executed by a local process (a Slurm run is followed by its job, not a pid)."""
        return self._rows("SELECT id, pid, pid_start, device, runner_id, executor, slot FROM runs "
                          f"WHERE status = 'running' AND {LOCAL_ONLY}")

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

    def requeue(self, run_id: int) -> int:
        """A new queued run with the same model, kind and config (the old one stays as history)."""
        run = self.require_run(run_id)
        return self.create_run(run["model_id"], run["kind"], run["config"], label=run["label"],
                               baseline_key=run["baseline_key"])

    def cancel_queued(self, run_id: int) -> bool:
        return self.conn.execute("UPDATE runs SET status = 'cancelled', finished_at = ?, "
                                 "error = 'cancelled by the user' "
                                 "WHERE id = ? AND status = 'queued'", (now(), run_id)).rowcount == 1

    def overlapping_runs(self, run_id: int) -> list[int]:
        """Other runs on the same device whose running time overlapped this run's (its own baseline,
        which runs inside it, and the experiment that made it excepted): their load was in this
        run's energy figures."""
        run = self.require_run(run_id)
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

    def save_reference_runs(self, items: list[dict[str, Any]]) -> list[int]:
        """Store published-table rows as reference runs (``backend.results.reference_tables``), all in one
        transaction: a table is stored whole or not at all. An item whose ``key`` (model and pair
        position) matches an existing reference run merges into it — an accuracy table and an
        energy table of the same models become the same runs; a figure already there is replaced."""
        ids: list[int] = []
        with self.transaction() as c:
            for it in items:
                found = None
                for rid, cfg_text in c.execute("SELECT id, config FROM runs WHERE kind = 'reference' "
                                               "AND json_extract(config, '$.reference.key') = ? ORDER BY id",
                                               (it["key"],)).fetchall():
                    found = (rid, json.loads(cfg_text))
                metric = it["metric"]
                if found is None:
                    cfg = {"reference": {"key": it["key"], "model": it["model"], "sources": {}, "files": {},
                                         "lines": {}, "checks": {}, "percent": {}}, "no_prune": False}
                    t = now()
                    pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                    rid = int(c.execute(
                        "INSERT INTO runs (model_id, kind, label, config, status, position, created_at, "
                        "started_at, finished_at) VALUES (NULL, 'reference', ?, '{}', 'done', ?, ?, ?, ?)",
                        (f"{it['model']} — {it['source']}", pos, t, t, t)).lastrowid)
                else:
                    rid, cfg = found
                ref = cfg["reference"]
                ref["sources"][metric] = it["source"]
                ref["files"][metric] = it["file"]
                ref["lines"][metric] = it["lines"]
                ref["checks"][metric] = it["checks"]
                ref["percent"][metric] = it["percent"]
                c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(cfg, sort_keys=True), rid))
                for variant, tasks in it["results"].items():
                    for task, fields in tasks.items():
                        old = c.execute("SELECT * FROM task_results WHERE run_id = ? AND variant = ? AND task = ?",
                                        (rid, variant, task))
                        cols = [d[0] for d in old.description]
                        prev = old.fetchone()
                        row: dict[str, Any] = dict(zip(cols, prev)) if prev else {}
                        row.update(fields)
                        if "energy_kwh" in fields:
                            row["meter"] = f"published ({it['source']})"
                        prov = json.loads(row["provenance"]) if isinstance(row.get("provenance"), str) else {}
                        prov.setdefault("reference", {})[metric] = {"source": it["source"], "file": it["file"]}
                        row["provenance"] = prov
                        self._insert_task_result(c, rid, dict(row, variant=variant, task=task))
                ids.append(rid)
        return ids

    # ---------------------------------------------------------------- baselines
    def find_baseline(self, baseline_key: str, tasks: Iterable[str]) -> dict[str, Any] | None:
        """The newest finished baseline with this key that holds every requested task."""
        want = sorted(set(tasks))
        for row in self._rows("SELECT id FROM runs WHERE baseline_key = ? AND kind = 'baseline' "
                              "AND status = 'done' ORDER BY id DESC", (baseline_key,)):
            have = {r["task"] for r in self.task_results(row["id"], variant="vanilla")}
            if set(want) <= have:
                return self.get_run(row["id"])
        return None

    # ---------------------------------------------------------------- results
    def save_task_result(self, run_id: int, variant: str, task: str, result: dict[str, Any]) -> None:
        self.save_task_results(run_id, [dict(result, variant=variant, task=task)])

    def save_task_results(self, run_id: int, rows: Iterable[dict[str, Any]]) -> None:
        """Write whole task results in one transaction (replacing a previous row of the same task).

        A row's ``repeats`` (the measured passes of ``--repeats``) go to ``energy_repeats`` in the
        same transaction, so a task is stored with all its passes or not at all.
        """
        rows = list(rows)
        with self.transaction() as c:
            for r in rows:
                self._insert_task_result(c, run_id, r)

    @staticmethod
    def _insert_task_result(c: sqlite3.Connection, run_id: int, r: dict[str, Any]) -> None:
        if r["variant"] not in VARIANTS:
            raise ValueError(f"variant {r['variant']!r}")
        vals = {k: r.get(k) for k in TASK_RESULT_FIELDS}
        if isinstance(vals["provenance"], (dict, list)):
            vals["provenance"] = json.dumps(vals["provenance"], sort_keys=True, default=str)
        cols = ["run_id", "variant", "task", *vals, "created_at"]
        c.execute(f"INSERT OR REPLACE INTO task_results ({', '.join(cols)}) "
                  f"VALUES ({', '.join('?' * len(cols))})",
                  (run_id, r["variant"], r["task"], *vals.values(), now()))
        if r.get("repeats"):
            c.execute("DELETE FROM energy_repeats WHERE run_id = ? AND variant = ? AND task = ?",
                      (run_id, r["variant"], r["task"]))
            for p in r["repeats"]:
                detail = {k: v for k, v in p.items() if k not in REPEAT_FIELDS}
                c.execute(f"INSERT INTO energy_repeats (run_id, variant, task, {', '.join(REPEAT_FIELDS)}, "
                          f"detail) VALUES (?, ?, ?, {', '.join('?' * len(REPEAT_FIELDS))}, ?)",
                          (run_id, r["variant"], r["task"], *(p.get(k) for k in REPEAT_FIELDS),
                           json.dumps(detail, sort_keys=True, default=str) if detail else None))

    def _run_rows(self, table: str, run_id: int, variant: str | None) -> list[dict[str, Any]]:
        """A run's rows of a per-task table (optionally one variant), in insertion order."""
        sql = f"SELECT * FROM {table} WHERE run_id = ?"
        params: list[Any] = [run_id]
        if variant:
            sql += " AND variant = ?"
            params.append(variant)
        return self._rows(sql + " ORDER BY id", params)

    def task_results(self, run_id: int, variant: str | None = None) -> list[dict[str, Any]]:
        rows = self._run_rows("task_results", run_id, variant)
        for r in rows:
            if r.get("provenance"):
                r["provenance"] = json.loads(r["provenance"])
        return rows

    def energy_repeats(self, run_id: int, variant: str | None = None) -> list[dict[str, Any]]:
        """The measured passes of each task (one per ``--repeats``), in task then pass order."""
        rows = self._run_rows("energy_repeats", run_id, variant)
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r.get("detail") else {}
        return rows

    def save_efficiency(self, run_id: int, variant: str, rows: Iterable[dict[str, Any]]) -> None:
        """The efficiency stage's points of one variant, in one transaction (replacing older ones)."""
        with self.transaction() as c:
            self._replace_efficiency(c, run_id, variant, rows)

    @staticmethod
    def _replace_efficiency(c: sqlite3.Connection, run_id: int, variant: str, rows: Iterable[dict[str, Any]]) -> None:
        c.execute("DELETE FROM efficiency_results WHERE run_id = ? AND variant = ?", (run_id, variant))
        for r in rows:
            detail = {k: v for k, v in r.items() if k not in EFFICIENCY_FIELDS}
            c.execute(f"INSERT INTO efficiency_results (run_id, variant, {', '.join(EFFICIENCY_FIELDS)}, "
                      f"detail) VALUES (?, ?, {', '.join('?' * len(EFFICIENCY_FIELDS))}, ?)",
                      (run_id, variant, *(r.get(k) for k in EFFICIENCY_FIELDS),
                       json.dumps(detail, sort_keys=True, default=str) if detail else None))

    def efficiency(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM efficiency_results WHERE run_id = ? ORDER BY variant DESC, batch_size",
                          (run_id,))
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r.get("detail") else {}
        return rows

    def save_metric(self, run_id: int, variant: str, name: str, value: float | None,
                    detail: dict[str, Any] | None = None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO run_metrics (run_id, variant, name, value, detail) "
                          "VALUES (?, ?, ?, ?, ?)",
                          (run_id, variant, name, value, json.dumps(detail, default=str) if detail else None))

    def metrics(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT variant, name, value, detail FROM run_metrics WHERE run_id = ? ORDER BY id",
                          (run_id,))

    # ---------------------------------------------------------------- events and power
    def add_event(self, run_id: int, kind: str, payload: dict[str, Any] | None = None,
                  t: float | None = None) -> int:
        cur = self.conn.execute("INSERT INTO events (run_id, t, kind, payload) VALUES (?, ?, ?, ?)",
                                (run_id, t or now(), kind, json.dumps(payload or {}, default=str)))
        return int(cur.lastrowid)

    def events(self, run_id: int, after_id: int = 0, kinds: Iterable[str] | None = None,
               limit: int = 5000) -> list[dict[str, Any]]:
        sql = "SELECT id, t, kind, payload FROM events WHERE run_id = ? AND id > ?"
        params: list[Any] = [run_id, after_id]
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

    def power_samples(self, run_id: int, after_id: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        return self._rows("SELECT id, t, watts, source, limit_w FROM power_samples WHERE run_id = ? AND id > ? "
                          "ORDER BY id LIMIT ?", (run_id, after_id, limit))

    def change_token(self) -> ChangeToken:
        """A cheap fingerprint that changes whenever a run, event, result or the queue changes.

        The TUI polls it twice a second and redraws only when it moves (indexed MAX/COUNT lookups).
        """
        return ChangeToken(*self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM runs), (SELECT MAX(id) FROM runs), "
            "(SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')), "
            "(SELECT MAX(id) FROM events), (SELECT MAX(id) FROM task_results), "
            "(SELECT COUNT(*) FROM task_results), (SELECT COUNT(*) FROM models), "
            "(SELECT value FROM settings WHERE key = 'queue_paused'), "
            "(SELECT group_concat(id || status || COALESCE(position, '') || COALESCE(cancel_requested, '')) "
            " FROM (SELECT id, status, position, cancel_requested FROM runs "
            "  WHERE status IN ('queued', 'running') ORDER BY position, id)), "
            "(SELECT MAX(updated_at) FROM slurm_jobs)").fetchone())

    # ---------------------------------------------------------------- Slurm jobs and ingestion
    def claim_slurm_submission(self, job_name_for: Callable[[int], str]) -> dict[str, Any] | None:
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
        return self.slurm_job(row[0])

    def slurm_job(self, run_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM slurm_jobs WHERE run_id = ?", (run_id,))

    def open_slurm_jobs(self) -> list[dict[str, Any]]:
        """Jobs this workspace still follows (submitted or being submitted, not yet closed)."""
        return self._rows("SELECT * FROM slurm_jobs WHERE finished = 0 ORDER BY run_id")

    def update_slurm_job(self, run_id: int, **fields: Any) -> None:
        if fields:
            fields["updated_at"] = now()
            sets = ", ".join(f"{k} = ?" for k in fields)
            self.conn.execute(f"UPDATE slurm_jobs SET {sets} WHERE run_id = ?", (*fields.values(), run_id))

    def has_unsubmitted_slurm_runs(self) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM runs r LEFT JOIN slurm_jobs j ON j.run_id = r.id WHERE r.status = 'queued' "
            "AND json_extract(r.config, '$.executor') = 'slurm' AND j.run_id IS NULL LIMIT 1").fetchone() is not None

    def mark_started(self, run_id: int) -> None:
        """A queued run whose job started elsewhere (a Slurm node) is now running."""
        self.conn.execute("UPDATE runs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
                          (now(), run_id))

    def ingest_offset(self, run_id: int, file: str) -> int:
        row = self.conn.execute("SELECT offset FROM ingest_offsets WHERE run_id = ? AND file = ?",
                                (run_id, file)).fetchone()
        return int(row[0]) if row else 0

    def apply_ingest(self, run_id: int, file: str, old_offset: int, new_offset: int, *,
                     events: Iterable[dict[str, Any]] = (), power: Iterable[dict[str, Any]] = (),
                     results: Iterable[dict[str, Any]] = (), run_updates: Iterable[dict[str, Any]] = (),
                     metrics: Iterable[dict[str, Any]] = (), finishes: Iterable[dict[str, Any]] = (),
                     efficiency: Iterable[dict[str, Any]] = (), baseline: dict[str, Any] | None = None) -> bool:
        """Copy one slice of a run-folder file into the store and advance its offset, atomically.

        Compare-and-set on the offset: when it is no longer ``old_offset`` (another ingester got
        there first) nothing is written and False is returned. ``baseline`` creates the baseline run
        a Slurm job evaluated (kind, config, …) and maps it in ``slurm_jobs.baseline_run_id``.
        """
        with self.transaction() as c:
            row = c.execute("SELECT offset FROM ingest_offsets WHERE run_id = ? AND file = ?",
                            (run_id, file)).fetchone()
            if (int(row[0]) if row else 0) != old_offset:
                return False
            if baseline is not None:
                have = c.execute("SELECT baseline_run_id FROM slurm_jobs WHERE run_id = ?", (run_id,)).fetchone()
                if not have or have[0] is None:
                    pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                    cur = c.execute(
                        "INSERT INTO runs (model_id, kind, label, config, status, device, position, created_at, "
                        "started_at, baseline_key) VALUES (?, 'baseline', ?, ?, 'running', ?, ?, ?, ?, ?)",
                        (baseline.get("model_id"), baseline.get("label"),
                         json.dumps(baseline.get("config") or {}, sort_keys=True, default=str),
                         baseline.get("device"), pos, baseline.get("t") or now(), baseline.get("t") or now(),
                         baseline.get("baseline_key")))
                    c.execute("UPDATE slurm_jobs SET baseline_run_id = ? WHERE run_id = ?", (cur.lastrowid, run_id))
            for e in events:
                c.execute("INSERT INTO events (run_id, t, kind, payload) VALUES (?, ?, ?, ?)",
                          (e["run_id"], e["t"], e["kind"], json.dumps(e.get("payload") or {}, default=str)))
            for p in power:
                c.execute("INSERT INTO power_samples (run_id, t, watts, source, limit_w) VALUES (?, ?, ?, ?, ?)",
                          (p["run_id"], p["t"], p["watts"], p.get("source"), p.get("limit_w")))
            for r in results:
                self._insert_task_result(c, r["run_id"], r)
            for u in run_updates:
                fields = {k: v for k, v in u["fields"].items() if k in RUN_UPDATE_FIELDS}
                if fields:
                    sets = ", ".join(f"{k} = ?" for k in fields)
                    c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), u["run_id"]))
            for m in metrics:
                c.execute("INSERT OR REPLACE INTO run_metrics (run_id, variant, name, value, detail) "
                          "VALUES (?, ?, ?, ?, ?)", (m["run_id"], m["variant"], m["name"], m["value"],
                                                     json.dumps(m["detail"], default=str) if m.get("detail") else None))
            for e in efficiency:
                self._replace_efficiency(c, e["run_id"], e["variant"], e["rows"])
            for f in finishes:
                c.execute("UPDATE runs SET status = ?, error = COALESCE(?, error), finished_at = ?, pid = NULL "
                          "WHERE id = ? AND status IN ('queued', 'running')",
                          (f["status"], f.get("error"), f.get("t") or now(), f["run_id"]))
            c.execute("INSERT INTO ingest_offsets (run_id, file, offset) VALUES (?, ?, ?) "
                      "ON CONFLICT(run_id, file) DO UPDATE SET offset = excluded.offset", (run_id, file, new_offset))
        return True

    # ---------------------------------------------------------------- bulk, for tests and benches
    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Insert many rows in one transaction (the demo seeding and the 10,000-run bench use it)."""
        rows = list(rows)
        if not rows:
            return
        cols = list(rows[0])
        with self.transaction() as c:
            c.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                          [tuple(r.get(k) for k in cols) for r in rows])


# Database files this process has already checked (and so may hold open with SQLite locks).
_CHECKED: set[str] = set()


def _refuse_non_database(path: Path) -> None:
    """Never open (and so never let SQLite rewrite) a file that is not an SQLite database.

    The header is read once per process and path, before this process's first connection: SQLite's
    locks are POSIX advisory locks, which ``close()`` of *any* descriptor on the file drops for the
    whole process (sqlite.org/howtocorrupt.html §2.2). Re-reading the header while another Store of
    this process is open would drop its locks; another process closing its connection would then
    think it was the last one, checkpoint and delete the WAL under us, and our later writes would go
    to an orphaned WAL that no other process sees (a queued run or a result silently lost).
    """
    if path.is_dir():
        raise GreentuiError(f"{path} is a directory, not a greentui database")
    key = str(path.resolve())
    if key in _CHECKED:
        return
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            head = fh.read(16)
        if head != SQLITE_MAGIC:
            raise GreentuiError(f"{path} is not an SQLite database (corrupted or another file); "
                                "it was left untouched — move it aside or pass another --runs-dir")
    _CHECKED.add(key)  # absent or empty: SQLite creates it, and it is ours from now on


class StoreError(GreentuiError, sqlite3.OperationalError):
    """SQLite refused a read or write for a reason the user can act on (full disk, read-only file,
    damaged file): one line naming the file and what to do. Still an ``OperationalError``, so code
    that handles SQLite errors keeps working."""


def explain(exc: sqlite3.Error, path: Path) -> GreentuiError | None:
    """The one-line answer to an SQLite error a user can fix, or None for anything else (a bug)."""
    text = str(exc).lower()
    if "disk is full" in text or "disk full" in text:
        return StoreError(f"the disk holding {path} is full ({exc}); free some space and retry — what was "
                          "already recorded is intact")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path} is read-only ({exc}); greentui must write to its store, so make the file "
                          "and its folder writable or pass another --runs-dir")
    if "malformed" in text or "not a database" in text or "disk i/o error" in text:
        return StoreError(f"{path} is damaged ({exc}); run `greentui doctor --runs-dir {path.parent}` "
                          "to check it and for what to do")
    return None


class _Connection(sqlite3.Connection):
    """A connection whose errors that the user can fix become one-line ``StoreError``s."""

    path: Path = Path("greentui.db")

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().execute(*args, **kwargs)
        except StoreError:
            raise
        except sqlite3.Error as exc:
            better = explain(exc, self.path)
            if better is None:
                raise
            raise better from exc

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.Error as exc:
            better = explain(exc, self.path)
            if better is None:
                raise
            raise better from exc


def _refuse_read_only(path: Path) -> None:
    """A store greentui cannot write (read-only file, folder or file system) is refused at open with
    one line: even reading a WAL store needs its ``-shm`` file, and every command records something."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only; greentui must write to its store, so make it writable "
                         "or pass another --runs-dir")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"the folder of {path} is read-only; greentui must write its store there (and "
                         "the store's -wal/-shm files), so make it writable or pass another --runs-dir")


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a database that is neither greentui's (``schema_version``) nor empty; reads only."""
    try:
        tables = [r[0] for r in sqlite3.Connection.execute(
            conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise GreentuiError(f"{path} cannot be read as an SQLite database ({exc}); it was left untouched — "
                            f"run `greentui doctor --runs-dir {path.parent}` or move it aside") from exc
    if tables and "schema_version" not in tables:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise GreentuiError(f"{path} is another application's SQLite database (tables: {shown}), not a "
                            "greentui store; it was left untouched — pass another --runs-dir")


_INTEGRITY_CHECKED: set[str] = set()


def _check_integrity_once(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` the first time this process opens ``path`` (milliseconds on a store of
    10,000 runs): a damaged page is reported at open, with what to do, not as a traceback later."""
    key = str(path.resolve())
    if key in _INTEGRITY_CHECKED:
        return
    try:
        rows = [r[0] for r in sqlite3.Connection.execute(conn, "PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        detail = " ".join(" ".join(rows).split())[:200]
        raise GreentuiError(f"{path} is damaged (integrity check: {detail}); run `greentui doctor "
                            f"--runs-dir {path.parent}` to check it and recover what it can (it keeps a copy)")
    _INTEGRITY_CHECKED.add(key)


def check_integrity_in_background(path: str | Path) -> Callable[[], None]:
    """Start this process's integrity check of ``path`` on a thread; return the wait for its verdict.

    Why: ``PRAGMA quick_check`` reads the whole file (~20 ms for 10,000 runs, more as the store grows)
    and SQLite lets go of the GIL while it reads, so the TUI runs it on another core while Textual
    builds its first screen (P2), then waits for the verdict before the first query. The check and its
    one-line error are those of ``Store(path)``; the wait raises that ``GreentuiError``.
    """
    path = Path(path)
    verdict: list[BaseException] = []

    def check() -> None:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                _check_integrity_once(conn, path)
            finally:
                conn.close()
        except GreentuiError as exc:
            verdict.append(exc)
        except sqlite3.Error as exc:
            verdict.append(explain(exc, path) or GreentuiError(f"{path} cannot be checked ({exc})"))

    thread = threading.Thread(target=check, name="greentui-integrity", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if verdict:
            raise verdict[0]

    return wait


def open_store(workspace: Path) -> Store:
    from backend.workspace import db_path
    return Store(db_path(workspace))
