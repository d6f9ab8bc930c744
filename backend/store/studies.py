"""Studies: a named grid of runs (its file, its cells, the runs that hold each cell's result).

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.studies``. The study's file is parsed and checked by
``backend.schema.study``; this module only records what was decided.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from typing import Any

from backend.errors import GreentuiError
from backend.store.base import Repository, inserted_id
from backend.store.tables import now


class StudyRepository(Repository):
    """Studies and their cells."""

    def save(self, name: str, text: str, *, preset: str | None = None, source: str | None = None,
             array_parallelism: int | None = None) -> int:
        """Create the study ``name`` or record its file's new text (and the Slurm array throttle it
        is run with); its id."""
        t = now()
        with self.transaction() as c:
            row = c.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone()
            if row:
                c.execute("UPDATE studies SET text = ?, preset = ?, source = ?, array_parallelism = ?, updated_at = ? "
                          "WHERE id = ?", (text, preset, source, array_parallelism, t, row[0]))
                return int(row[0])
            cur = c.execute("INSERT INTO studies (name, text, preset, source, array_parallelism, created_at, "
                            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (name, text, preset, source, array_parallelism, t, t))
            return inserted_id(cur)

    def get(self, name: str) -> dict[str, Any] | None:
        return self._row("SELECT * FROM studies WHERE name = ?", (name,))

    def require(self, name: str) -> dict[str, Any]:
        row = self.get(name)
        if row is None:
            names = [r["name"] for r in self.list()]
            known = f" (studies here: {', '.join(names[:8])}{', …' if len(names) > 8 else ''})" if names else \
                " (none here yet: greentui study run FILE.toml)"
            raise GreentuiError(f"no study named {name!r} in {self.path}{known}")
        return row

    def list(self) -> list[dict[str, Any]]:
        """Every study with its cell count and how many cells are done."""
        return self._rows(
            "SELECT s.*, COUNT(c.id) AS cells, SUM(CASE WHEN r.status = 'done' THEN 1 ELSE 0 END) AS done "
            "FROM studies s LEFT JOIN study_cells c ON c.study_id = s.id LEFT JOIN runs r ON r.id = c.run_id "
            "GROUP BY s.id ORDER BY s.id")

    def set_cells(self, study_id: int, cells: Iterable[dict[str, Any]]) -> None:
        """Make the study's cells exactly ``cells`` (dicts with key, model, label, swept, config,
        baseline): a cell already recorded keeps its run; cells no longer in the file are dropped
        from the study (their runs stay in the store)."""
        cells = list(cells)
        keys = [c["key"] for c in cells]
        with self.transaction() as c:
            marks = ",".join("?" * len(keys))
            c.execute(f"DELETE FROM study_cells WHERE study_id = ? AND key NOT IN ({marks})", (study_id, *keys))
            for pos, cell in enumerate(cells, 1):
                values = (pos, cell["model"], cell.get("label"), json.dumps(cell.get("swept") or {}, sort_keys=True),
                          json.dumps(cell["config"], sort_keys=True, default=str), int(bool(cell.get("baseline"))))
                if c.execute("UPDATE study_cells SET position = ?, model = ?, label = ?, swept = ?, config = ?, "
                             "baseline = ? WHERE study_id = ? AND key = ?", (*values, study_id, cell["key"])).rowcount:
                    continue
                c.execute("INSERT INTO study_cells (position, model, label, swept, config, baseline, study_id, key) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*values, study_id, cell["key"]))

    def cells(self, study_id: int) -> builtins.list[dict[str, Any]]:
        """The study's cells in grid order, each with its run's state, stage, error and summary."""
        rows = self._rows(
            "SELECT c.*, r.status, r.stage, r.error, r.kind AS run_kind, r.parent_run_id, r.model_id, "
            "r.params_before, r.params_after, r.started_at, r.finished_at, r.after_run_id "
            "FROM study_cells c LEFT JOIN runs r ON r.id = c.run_id WHERE c.study_id = ? ORDER BY c.position",
            (study_id,))
        for r in rows:
            r["swept"] = json.loads(r["swept"] or "{}")
            r["config"] = json.loads(r["config"] or "{}")
        return rows

    def link(self, study_id: int, key: str, run_id: int) -> None:
        """The cell ``key`` is now held by ``run_id``."""
        self.conn.execute("UPDATE study_cells SET run_id = ? WHERE study_id = ? AND key = ?", (run_id, study_id, key))

    def queue_cells(self, study_id: int, items: builtins.list[dict[str, Any]]) -> builtins.list[int]:
        """Queue runs for cells in one transaction, each linked to its cell: a runner never sees part of
        a study's runs, nor a cell's run before it knows which baseline it waits for (a Slurm runner
        submits the whole set as one job array). ``items``: key, model_id, kind, config, label, and
        ``after`` — a run id, or ``"baseline:<key>"`` for a baseline cell queued in the same call."""
        ids: builtins.list[int] = []
        by_key: dict[str, int] = {}
        with self.transaction() as c:
            pos = c.execute("SELECT COALESCE(MAX(position), 0) FROM runs").fetchone()[0]
            t = now()
            for it in items:
                after = it.get("after")
                if isinstance(after, str):
                    after = by_key[after.removeprefix("baseline:")]
                pos += 1
                run_id = inserted_id(c.execute(
                    "INSERT INTO runs (model_id, kind, label, config, status, position, created_at, after_run_id) "
                    "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (it["model_id"], it["kind"], it.get("label"), json.dumps(it["config"], sort_keys=True, default=str),
                     pos, t, after)))
                c.execute("UPDATE study_cells SET run_id = ? WHERE study_id = ? AND key = ?",
                          (run_id, study_id, it["key"]))
                by_key[it["key"]] = run_id
                ids.append(run_id)
        return ids

    def of_run(self, run_id: int) -> builtins.list[dict[str, Any]]:
        """The studies (name, cell label) a run holds a cell of."""
        return self._rows("SELECT s.name, s.array_parallelism, c.label, c.position FROM study_cells c "
                          "JOIN studies s ON s.id = c.study_id "
                          "WHERE c.run_id = ? ORDER BY s.id", (run_id,))

    def delete(self, name: str) -> None:
        """Forget a study (its runs stay)."""
        study = self.require(name)
        with self.transaction() as c:
            c.execute("DELETE FROM study_cells WHERE study_id = ?", (study["id"],))
            c.execute("DELETE FROM studies WHERE id = ?", (study["id"],))
