"""The store's tables: their columns, the migrations that make them (applied in order and recorded
in ``schema_version``), and the vocabularies of their columns (run states, variants)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

RUN_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")
#: The executor a run asked for (its config's ``executor``; runs recorded before there was a choice: local).
RUN_EXECUTOR = "COALESCE(json_extract(config, '$.executor'), 'local')"
# Run columns a remote job may set through the ingester (what the pipeline updates on a run).
RUN_UPDATE_FIELDS = ("model_id", "parent_run_id", "stage", "device", "params_before", "params_after",
                     "baseline_key", "config")
VARIANTS = ("vanilla", "pruned")
TASK_RESULT_FIELDS = (
    "acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n_samples", "seconds", "tokens",
    "energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh", "energy_kwh", "nvml_joules",
    "meter", "cpu_mode", "device", "num_fewshot", "limit_n", "provenance",
)

REPEAT_FIELDS = ("repeat", "seconds", "tokens", "energy_kwh", "energy_cpu_kwh", "energy_gpu_kwh",
                 "energy_ram_kwh", "nvml_joules", "meter")
#: Columns of a paired energy window (issue #18) beside REPEAT_FIELDS: its place in the run's order of
#: windows, the uncounted warm-up before it, the requests measured per pass and the factor that scales
#: them to the task, how often they were repeated to fill the window and how long it lasted, the block
#: (blocked design) and the drift probe measured at that block's edge.
WINDOW_FIELDS = ("position", "warmup_s", "sample_n", "scale", "passes", "window_s", "block", "probe_s", "probe_kwh")
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
    db.table("models").create({
        "id": int, "ref": str, "name": str, "source": str, "arch": str, "params": int,
        "layers": int, "heads": int, "kv_heads": int, "hidden": int, "intermediate": int,
        "dtype": str, "size_bytes": int, "trust_remote_code": int, "info": str, "added_at": float,
    }, pk="id", not_null={"ref"}, defaults={"trust_remote_code": 0})
    db.table("models").create_index(["ref"], unique=True)
    db.table("runs").create({
        "id": int, "model_id": int, "parent_run_id": int, "kind": str, "label": str, "config": str,
        "status": str, "pid": int, "device": str, "position": float, "stage": str,
        "created_at": float, "started_at": float, "finished_at": float,
        "params_before": int, "params_after": int, "baseline_key": str, "error": str,
    }, pk="id", not_null={"kind", "status", "config"},
        foreign_keys=[("model_id", "models", "id"), ("parent_run_id", "runs", "id")])
    db.table("runs").create_index(["status", "position"])
    db.table("runs").create_index(["baseline_key"])
    db.table("runs").create_index(["model_id"])
    db.table("task_results").create({
        "id": int, "run_id": int, "variant": str, "task": str,
        "acc": float, "acc_stderr": float, "acc_norm": float, "acc_norm_stderr": float,
        "n_samples": int, "seconds": float, "tokens": int,
        "energy_cpu_kwh": float, "energy_gpu_kwh": float, "energy_ram_kwh": float,
        "energy_kwh": float, "nvml_joules": float, "meter": str, "cpu_mode": str, "device": str,
        "num_fewshot": int, "limit_n": int, "provenance": str, "created_at": float,
    }, pk="id", not_null={"run_id", "variant", "task"}, foreign_keys=[("run_id", "runs", "id")])
    db.table("task_results").create_index(["run_id", "variant", "task"], unique=True)
    db.table("run_metrics").create({
        "id": int, "run_id": int, "variant": str, "name": str, "value": float, "detail": str,
    }, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("run_metrics").create_index(["run_id", "variant", "name"], unique=True)
    db.table("events").create({"id": int, "run_id": int, "t": float, "kind": str, "payload": str},
                        pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("events").create_index(["run_id", "id"])
    db.table("power_samples").create({"id": int, "run_id": int, "t": float, "watts": float,
                                "source": str, "limit_w": float},
                               pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("power_samples").create_index(["run_id", "id"])
    db.table("settings").create({"key": str, "value": str}, pk="key")


def _migration_repeats_efficiency(db: sqlite_utils.Database) -> None:
    """Issue #11: each measured pass of a task (``--repeats``) and the efficiency stage's points.

    ``task_results`` keeps one row per task (the means), so every existing reader still works;
    ``energy_repeats`` holds the passes those means came from, ``efficiency_results`` the
    tokens/s and J/token of each variant at each batch size. Idempotent (tables made if missing).
    """
    if "energy_repeats" not in db.table_names():
        db.table("energy_repeats").create({
            "id": int, "run_id": int, "variant": str, "task": str, "repeat": int, "seconds": float,
            "tokens": int, "energy_kwh": float, "energy_cpu_kwh": float, "energy_gpu_kwh": float,
            "energy_ram_kwh": float, "nvml_joules": float, "meter": str, "detail": str,
        }, pk="id", not_null={"run_id", "variant", "task", "repeat"}, foreign_keys=[("run_id", "runs", "id")])
        db.table("energy_repeats").create_index(["run_id", "variant", "task", "repeat"], unique=True)
    if "efficiency_results" not in db.table_names():
        db.table("efficiency_results").create({
            "id": int, "run_id": int, "variant": str, "batch_size": int, "seq_len": int,
            "forwards": int, "tokens": int, "seconds": float, "tokens_per_s": float,
            "joules": float, "j_per_token": float, "meter": str, "detail": str,
        }, pk="id", not_null={"run_id", "variant", "batch_size"}, foreign_keys=[("run_id", "runs", "id")])
        db.table("efficiency_results").create_index(["run_id", "variant", "batch_size"], unique=True)


def _migration_slurm(db: sqlite_utils.Database) -> None:
    """Slurm jobs of runs (backend.execution.executors.slurm) and how far each run-folder file was ingested.

    One row per run sent to Slurm: its job id (kept so that a restarted runner re-attaches instead of
    submitting again), the last state read from Slurm, the node, and the placeholder mapping of the
    baseline run the job created. ``ingest_offsets`` holds, per run and file, the byte offset up to
    which lines were copied into the store; it is updated in the same transaction as the rows it
    covers, so an ingest interrupted at any point neither loses nor doubles a line.
    """
    db.table("slurm_jobs").create({
        "run_id": int, "job_id": str, "job_name": str, "state": str, "reason": str, "node": str,
        "submitted_at": float, "updated_at": float, "finished": int, "cancel_requested": int,
        "baseline_run_id": int,
    }, pk="run_id", foreign_keys=[("run_id", "runs", "id")], defaults={"finished": 0, "cancel_requested": 0})
    db.table("ingest_offsets").create({"run_id": int, "file": str, "offset": int}, pk=("run_id", "file"))


def _migration_control_plane(db: sqlite_utils.Database) -> None:
    """The control plane (issue #9): who runs what, where, and the cancel flag, all in the store.

    * ``runs.cancel_requested``: when a cancel was asked (NULL = not asked). The run's own process
      polls its row at safe points, so a cancel names a run, never a pid: it cannot hit the next run.
    * ``runs.pid_start``: the process start time (psutil ``create_time``) that goes with ``runs.pid``;
      a pid alone is reused by the kernel, the pair is not.
    * ``runs.runner_id`` / ``executor`` / ``slot``: the runner that claimed the run, how it executes it
      (``local`` or ``slurm``; NULL on old rows = local) and the device slot(s) it holds.
      (A scheduler's job id, state and node live in ``jobs``, which the Queue screen joins.)
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


def _migration_jobs(db: sqlite_utils.Database) -> None:
    """Issue #19: one ``jobs`` table for every executor that hands runs to a scheduler (Slurm today).

    ``slurm_jobs`` rows move into it with every field, and ``executor = 'slurm'``. New columns:
    ``submission`` (the id of the submission that carried the run: a job array's id, else the job's
    own), ``restarts`` (how often the scheduler requeued the job, as the executor last saw it),
    ``cancel_sent`` (when the scheduler accepted the cancel: a recorded cancel that did not reach it
    yet is retried) and ``detail`` (JSON the executor keeps for itself).
    """
    c = db.conn
    c.execute("""CREATE TABLE jobs (
        run_id INTEGER PRIMARY KEY REFERENCES runs(id), executor TEXT NOT NULL, job_id TEXT, job_name TEXT,
        submission TEXT, state TEXT, reason TEXT, node TEXT, submitted_at REAL, updated_at REAL,
        finished INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_sent REAL,
        restarts INTEGER NOT NULL DEFAULT 0, baseline_run_id INTEGER, detail TEXT)""")
    c.execute("CREATE INDEX idx_jobs_open ON jobs (executor, finished)")
    c.execute("""INSERT INTO jobs (run_id, executor, job_id, job_name, submission, state, reason, node, submitted_at,
                                   updated_at, finished, cancel_requested, cancel_sent, baseline_run_id)
                 SELECT run_id, 'slurm', job_id, job_name, job_id, state, reason, node, submitted_at, updated_at,
                        COALESCE(finished, 0), COALESCE(cancel_requested, 0),
                        CASE WHEN cancel_requested THEN updated_at END, baseline_run_id
                 FROM slurm_jobs""")
    c.execute("DROP TABLE slurm_jobs")


def _migration_studies(db: sqlite_utils.Database) -> None:
    """Studies (issue #20): a grid of runs under one name, and the order between runs it needs.

    * ``studies``: one row per study — its name (the handle), the file's text as last run, the preset
      it came from, the Slurm array throttle it was last run with, and when it was created and last run.
    * ``study_cells``: one row per cell of the current file — its identity (``key``: a hash of what it
      computes, placement left out), the model, the swept values, the full run config, whether it is
      the vanilla baseline its model's cells share, and the run that holds (or will hold) its result.
      A cell queued again points at the new run; the old one stays in ``runs`` as history.
    * ``runs.after_run_id``: a queued run is not claimed while that run is still queued or running —
      a study's cells wait for the vanilla baseline they share instead of each evaluating their own.

    Idempotent (a workspace made while the migrations were being ordered may hold part of it).
    """
    c = db.conn
    c.execute("""CREATE TABLE IF NOT EXISTS studies (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, text TEXT NOT NULL, preset TEXT, source TEXT,
        array_parallelism INTEGER, created_at REAL, updated_at REAL)""")
    c.execute("""CREATE TABLE IF NOT EXISTS study_cells (
        id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id), position INTEGER NOT NULL,
        key TEXT NOT NULL, model TEXT NOT NULL, label TEXT, swept TEXT, config TEXT NOT NULL,
        baseline INTEGER NOT NULL DEFAULT 0, run_id INTEGER REFERENCES runs(id))""")
    c.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_study_cells_key ON study_cells (study_id, key)")
    c.execute("CREATE INDEX IF NOT EXISTS idx_study_cells_run ON study_cells (run_id)")
    if "after_run_id" not in {r[1] for r in c.execute("PRAGMA table_info(runs)")}:
        c.execute("ALTER TABLE runs ADD COLUMN after_run_id INTEGER")


def _migration_paired_windows(db: sqlite_utils.Database) -> None:
    """Issue #18: the paired protocol's windows are ``energy_repeats`` rows of the run itself (variant
    ``vanilla`` and ``pruned``, same task, same ``repeat`` = one pair); these columns say how each was
    measured (``WINDOW_FIELDS``). Rows recorded before keep NULL there: they were measured sequentially.
    Idempotent."""
    c = db.conn
    have = {r[1] for r in c.execute("PRAGMA table_info(energy_repeats)")}
    for col in WINDOW_FIELDS:
        if col not in have:
            typ = "INTEGER" if col in ("position", "sample_n", "passes", "block") else "REAL"
            c.execute(f"ALTER TABLE energy_repeats ADD COLUMN {col} {typ}")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1, _migration_slurm,
                                                              _migration_repeats_efficiency,
                                                              _migration_control_plane, _migration_jobs,
                                                              _migration_studies, _migration_paired_windows]
SCHEMA_VERSION = len(MIGRATIONS)
