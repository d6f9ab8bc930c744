"""What runs measured: task results and their energy passes, metrics, the efficiency sweep,
baselines to reuse, and imported or published results.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.results``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from backend.store.base import Repository, inserted_id
from backend.store.tables import (
    EFFICIENCY_FIELDS,
    REPEAT_FIELDS,
    TASK_RESULT_FIELDS,
    VARIANTS,
    WINDOW_FIELDS,
    now,
)


class ResultRepository(Repository):
    """What runs measured: task results and their energy passes, metrics, the efficiency sweep,"""

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
                    model_id = inserted_id(c.execute(
                        "INSERT INTO models (ref, name, source, trust_remote_code, added_at) "
                        "VALUES (?, ?, 'import', 0, ?)", (it["model"], it["model"], now())))
                pos = c.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                t = now()
                run_id = inserted_id(c.execute(
                    "INSERT INTO runs (model_id, parent_run_id, kind, label, config, status, position, "
                    "created_at, started_at, finished_at) VALUES (?, ?, 'import', ?, ?, 'done', ?, ?, ?, ?)",
                    (model_id, it.get("parent_run_id"), it.get("label"),
                     json.dumps(it["config"], sort_keys=True, default=str), pos, t, t, t)))
                for r in it["rows"]:
                    self._insert_task_result(c, run_id, r)
                ids.append(run_id)
        return ids

    #: reference runs written per transaction: each holds the write lock for milliseconds, so the
    #: runner's heartbeat, ``pause`` and the UI's writes never wait behind a long import
    REFERENCE_BATCH = 200

    def save_reference_runs(self, items: list[dict[str, Any]], *, batch: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> list[int]:
        """Store published-table rows as reference runs (``backend.results.reference_tables``).

        Where an item goes: an existing reference run with the same ``key`` (model name in any case,
        and pair position) that holds this metric *from the same source* is replaced (importing a
        table again updates it); else the first such run that lacks this metric takes it (an
        accuracy table and an energy table of the same models become the same runs); else a new
        run — a second paper's accuracy table never replaces the first paper's rows.

        Written in batches of ``REFERENCE_BATCH`` items, one short transaction each, in time linear
        in the items (every existing key is read once). If a batch fails (a full disk), what the
        earlier batches wrote is undone before the error goes on: the store is as it was. A process
        killed between batches leaves the batches it wrote; importing the same table with the same
        source again replaces them.
        """
        size = batch or self.REFERENCE_BATCH
        existing: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for rid, cfg_text in self.conn.execute("SELECT id, config FROM runs WHERE kind = 'reference' ORDER BY id"):
            cfg = json.loads(cfg_text or "{}")
            key = str((cfg.get("reference") or {}).get("key") or "")
            existing.setdefault(key.casefold(), []).append((rid, cfg))
        ids: list[int] = []
        undo = _ReferenceUndo()
        pos = self.conn.execute("SELECT COALESCE(MAX(position), 0) FROM runs").fetchone()[0]
        try:
            for start in range(0, len(items), size):
                with self.transaction() as c:
                    # runs queued since the last batch: only ids above ours (a rowid range, not a scan)
                    pos = max(pos, c.execute("SELECT COALESCE(MAX(position), 0) FROM runs WHERE id > ?",
                                             (ids[-1] if ids else 0,)).fetchone()[0])
                    for it in items[start:start + size]:
                        pos += 1
                        ids.append(self._save_reference_run(c, it, existing, pos, undo))
                if progress is not None:
                    progress(min(start + size, len(items)), len(items))
        except BaseException:
            if undo:
                with self.transaction() as c:
                    undo.apply(c)
            raise
        return ids

    def _save_reference_run(self, c: sqlite3.Connection, it: dict[str, Any],
                            existing: dict[str, list[tuple[int, dict[str, Any]]]], pos: int,
                            undo: _ReferenceUndo) -> int:
        metric, source = it["metric"], it["source"]
        candidates = existing.setdefault(it["key"].casefold(), [])
        sources = [(rid, cfg, cfg["reference"]["sources"].get(metric)) for rid, cfg in candidates]
        found = (next(((rid, cfg) for rid, cfg, s in sources if s == source), None)
                 or next(((rid, cfg) for rid, cfg, s in sources if s is None), None))
        if found is None:
            cfg: dict[str, Any] = {"reference": {"key": it["key"], "model": it["model"], "sources": {}, "files": {},
                                 "lines": {}, "checks": {}, "percent": {}}, "no_prune": False}
            t = now()
            rid = inserted_id(c.execute(
                "INSERT INTO runs (model_id, kind, label, config, status, position, created_at, "
                "started_at, finished_at) VALUES (NULL, 'reference', ?, '{}', 'done', ?, ?, ?, ?)",
                (f"{it['model']} — {source}", pos, t, t, t)))
            candidates.append((rid, cfg))
            undo.created.append(rid)
            new = True
        else:
            rid, cfg = found
            new = False
            undo.remember_config(rid, cfg)
        ref = cfg["reference"]
        ref["sources"][metric] = source
        ref["files"][metric] = it["file"]
        ref["lines"][metric] = it["lines"]
        ref["checks"][metric] = it["checks"]
        ref["percent"][metric] = it["percent"]
        c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(cfg, sort_keys=True), rid))
        meter = f"published ({source})" if metric == "wh" else None
        if new:  # nothing to merge with: one prepared statement for all its figures
            prov = json.dumps({"reference": {metric: {"source": source, "file": it["file"]}}}, sort_keys=True)
            t = now()
            c.executemany(
                "INSERT INTO task_results (run_id, variant, task, acc, energy_kwh, meter, provenance, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(rid, variant, task, fields.get("acc"), fields.get("energy_kwh"), meter, prov, t)
                 for variant, tasks in it["results"].items() for task, fields in tasks.items()])
            return rid
        for variant, tasks in it["results"].items():
            for task, fields in tasks.items():
                old = c.execute("SELECT * FROM task_results WHERE run_id = ? AND variant = ? AND task = ?",
                                (rid, variant, task))
                cols = [d[0] for d in old.description]
                prev = old.fetchone()
                row: dict[str, Any] = dict(zip(cols, prev)) if prev else {}
                undo.remember_result(rid, variant, task, dict(row) if row else None)
                row.update(fields)
                if meter:
                    row["meter"] = meter
                prov = json.loads(row["provenance"]) if isinstance(row.get("provenance"), str) else {}
                prov.setdefault("reference", {})[metric] = {"source": source, "file": it["file"]}
                row["provenance"] = prov
                self._insert_task_result(c, rid, dict(row, variant=variant, task=task))
        return rid

    def find_baseline(self, baseline_key: str, tasks: Iterable[str], *, fingerprint: dict[str, Any] | None = None,
                      max_age_s: float | None = None, why_not: list[str] | None = None) -> dict[str, Any] | None:
        """The newest finished baseline with this key that holds every requested task.

        With ``fingerprint`` (issue #18) a baseline is reused only when the fingerprint recorded with it
        (the ``fingerprint`` run metric: hardware and software, ``backend.measure.machine.fingerprint``,
        and the data digest) is the same; with ``max_age_s`` only when it finished that recently. Each
        baseline passed over for either reason is named in ``why_not``."""
        want = sorted(set(tasks))
        for row in self._rows("SELECT id, finished_at FROM runs WHERE baseline_key = ? AND kind = 'baseline' "
                              "AND status = 'done' ORDER BY id DESC", (baseline_key,)):
            have = {r["task"] for r in self.task_results(row["id"], variant="vanilla")}
            if not set(want) <= have:
                continue
            if max_age_s is not None and (row["finished_at"] or 0) < now() - max_age_s:
                if why_not is not None:
                    why_not.append(f"run {row['id']}: older than {max_age_s / 86400:g} days")
                continue
            if fingerprint is not None:
                theirs = self.fingerprint(row["id"])
                differ = sorted(k for k in set(fingerprint) | set(theirs or {})
                                if (theirs or {}).get(k) != fingerprint.get(k)) if theirs else ["no fingerprint"]
                if differ:
                    if why_not is not None:
                        why_not.append(f"run {row['id']}: {', '.join(differ)} differ")
                    continue
            return self._store.runs.get(row["id"])
        return None

    def fingerprint(self, run_id: int) -> dict[str, Any] | None:
        """The machine, software and data fingerprint recorded with a run (None before issue #18)."""
        row = self.conn.execute("SELECT detail FROM run_metrics WHERE run_id = ? AND variant = 'run' "
                                "AND name = 'fingerprint'", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

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

    def save_energy_windows(self, run_id: int, task: str, windows: Iterable[dict[str, Any]]) -> None:
        """A task's paired windows (both variants) in one transaction, replacing earlier ones of the task."""
        with self.transaction() as c:
            self._replace_windows(c, run_id, task, list(windows))

    @staticmethod
    def _replace_windows(c: sqlite3.Connection, run_id: int, task: str, windows: list[dict[str, Any]]) -> None:
        c.execute("DELETE FROM energy_repeats WHERE run_id = ? AND task = ?", (run_id, task))
        cols = REPEAT_FIELDS + WINDOW_FIELDS
        for w in windows:
            if w["variant"] not in VARIANTS:
                raise ValueError(f"variant {w['variant']!r}")
            detail = {k: v for k, v in w.items() if k not in cols and k not in ("variant", "task")}
            c.execute(f"INSERT INTO energy_repeats (run_id, variant, task, {', '.join(cols)}, detail) "
                      f"VALUES (?, ?, ?, {', '.join('?' * len(cols))}, ?)",
                      (run_id, w["variant"], task, *(w.get(k) for k in cols),
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

    def parents(self, run_ids: Iterable[int]) -> dict[int, int]:
        """Run → its baseline run (``parent_run_id``), for the runs that have one, in one query."""
        ids = [int(i) for i in run_ids]
        if not ids:
            return {}
        rows = self.conn.execute(f"SELECT id, parent_run_id FROM runs WHERE parent_run_id IS NOT NULL AND id IN "
                                 f"({','.join('?' * len(ids))})", ids).fetchall()
        return {int(a): int(b) for a, b in rows}

    def task_results_of(self, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Run → its task results (the columns ratios need), for a page of runs in one query."""
        return self._of("SELECT run_id, variant, task, acc, acc_stderr, energy_kwh FROM task_results", run_ids)

    def energy_repeats_of(self, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Run → its measured passes (variant, task, repeat, energy), for a page of runs in one query."""
        return self._of("SELECT run_id, variant, task, repeat, energy_kwh FROM energy_repeats", run_ids)

    def _of(self, select: str, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        ids = sorted({int(i) for i in run_ids})
        out: dict[int, list[dict[str, Any]]] = {}
        if not ids:
            return out
        for r in self._rows(f"{select} WHERE run_id IN ({','.join('?' * len(ids))}) ORDER BY id", ids):
            out.setdefault(r["run_id"], []).append(r)
        return out

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


class _ReferenceUndo:
    """What a reference import changed, to put back if a later batch fails: the runs it created,
    and the configs and task rows it replaced in runs that were there before."""

    def __init__(self) -> None:
        self.created: list[int] = []
        self.configs: dict[int, str] = {}
        self.results: dict[tuple[int, str, str], dict[str, Any] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.created or self.configs or self.results)

    def remember_config(self, run_id: int, cfg: dict[str, Any]) -> None:
        if run_id not in self.configs and run_id not in self.created:
            self.configs[run_id] = json.dumps(cfg, sort_keys=True)

    def remember_result(self, run_id: int, variant: str, task: str, row: dict[str, Any] | None) -> None:
        if run_id not in self.created:
            self.results.setdefault((run_id, variant, task), row)

    def apply(self, c: sqlite3.Connection) -> None:
        for rid in self.created:
            c.execute("DELETE FROM task_results WHERE run_id = ?", (rid,))
            c.execute("DELETE FROM runs WHERE id = ?", (rid,))
        for rid, cfg in self.configs.items():
            c.execute("UPDATE runs SET config = ? WHERE id = ?", (cfg, rid))
        for (rid, variant, task), row in self.results.items():
            c.execute("DELETE FROM task_results WHERE run_id = ? AND variant = ? AND task = ?", (rid, variant, task))
            if row is not None:
                cols = list(row)
                c.execute(f"INSERT INTO task_results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                          tuple(row.values()))
