"""Copy what a Slurm job wrote into its run folder into the store, incrementally and exactly once.

Runs on the login node (the only host that opens SQLite). Each JSONL file is read from the byte
offset recorded in ``ingest_offsets`` up to its last complete line (a line still being written is
left for the next pass), and the rows and the new offset are committed in one transaction
(``Store.apply_ingest``): an ingest killed at any point resumes where the store says, so nothing is
lost or doubled. Each ``results/*.json`` is marked ingested the same way (offset 1). The job's
``status.json`` is only read here; the executor decides the run's end with what Slurm says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from backend.execution.sinks import BASELINE_PLACEHOLDER, EVENTS, POWER, RESULTS, STATUS, UPDATES
from backend.store import Store


@dataclass
class IngestCounts:
    """How many records one pass copied (the runner logs them; tests assert on them)."""

    events: int = 0
    power: int = 0
    results: int = 0
    updates: int = 0

    @property
    def total(self) -> int:
        return self.events + self.power + self.results + self.updates


class UpdateBatch(TypedDict):
    """The rows of one slice of ``updates.jsonl``, under the ``store.ingest.apply`` keyword that writes them."""

    run_updates: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    finishes: list[dict[str, Any]]
    efficiency: list[dict[str, Any]]


def _empty_batch() -> UpdateBatch:
    return {"run_updates": [], "metrics": [], "finishes": [], "efficiency": []}


def _complete_lines(path: Path, offset: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Parsed complete lines after ``offset`` as (end offset of the line, record); and the end."""
    if not path.exists():
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out: list[tuple[int, dict[str, Any]]] = []
    pos = offset
    for raw in data[: end + 1].splitlines(keepends=True):
        pos += len(raw)
        text = raw.strip()
        if not text:
            continue
        try:
            out.append((pos, json.loads(text)))
        except json.JSONDecodeError:  # a torn line (e.g. node crash mid-write): skip it, keep going
            continue
    return out, offset + end + 1


def read_status(folder: Path) -> dict[str, Any] | None:
    """The job's own final status (``{status, error, t}``) or None while it has not written one."""
    try:
        return json.loads((folder / STATUS).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class Ingester:
    """Ingests one Slurm run's folder; call :meth:`ingest` as often as you like."""

    def __init__(self, store: Store, run_id: int, folder: Path):
        self.store, self.run_id, self.folder = store, run_id, Path(folder)

    def _baseline_id(self) -> int | None:
        job = self.store.jobs.get(self.run_id)
        return job["baseline_run_id"] if job else None

    def _map(self, run: int) -> int | None:
        """Run id as the job wrote it → the store's run id (None: the baseline is not created yet)."""
        return self._baseline_id() if run == BASELINE_PLACEHOLDER else int(run)

    def ingest(self) -> IngestCounts:
        counts = IngestCounts()
        counts.updates = self._updates()  # first: it creates the baseline run that results refer to
        counts.events = self._jsonl(EVENTS, self._event_rows, "events")
        counts.power = self._jsonl(POWER, self._power_rows, "power")
        counts.results = self._results()
        return counts

    # ---------------------------------------------------------------- JSONL files
    def _event_rows(self, rec: dict[str, Any]) -> dict[str, Any]:
        payload = {k: v for k, v in rec.items() if k not in ("t", "kind")}
        return {"run_id": self.run_id, "t": rec.get("t"), "kind": rec.get("kind", "log"), "payload": payload}

    def _power_rows(self, rec: dict[str, Any]) -> dict[str, Any]:
        return dict(rec, run_id=self.run_id)

    def _jsonl(self, name: str, to_row: Callable[[dict[str, Any]], dict[str, Any]],
               key: Literal["events", "power"]) -> int:
        old = self.store.ingest.offset(self.run_id, name)
        lines, end = _complete_lines(self.folder / name, old)
        if end == old:
            return 0
        rows = [to_row(rec) for _, rec in lines]
        if key == "events":
            applied = self.store.ingest.apply(self.run_id, name, old, end, events=rows)
        else:
            applied = self.store.ingest.apply(self.run_id, name, old, end, power=rows)
        return len(rows) if applied else 0

    def _updates(self) -> int:
        """Updates in order; the slice is cut after a ``create_baseline`` so later lines can map it."""
        old = self.store.ingest.offset(self.run_id, UPDATES)
        lines, end = _complete_lines(self.folder / UPDATES, old)
        n, start = 0, old
        batch = _empty_batch()
        for pos, rec in lines:
            op = rec.get("op")
            if op == "create_baseline":
                baseline = {"model_id": rec.get("model_id"), "config": rec.get("config"),
                            "label": rec.get("label"), "device": rec.get("device"),
                            "baseline_key": rec.get("baseline_key"), "t": rec.get("t")}
                if not self.store.ingest.apply(self.run_id, UPDATES, start, pos, baseline=baseline, **batch):
                    return n
                n += batch_size(batch) + 1
                start, batch = pos, _empty_batch()
                continue
            run = self._map(rec.get("run", self.run_id))
            if run is None:  # refers to a baseline that was never created: nothing to attach it to
                continue
            if op == "update":
                fields = dict(rec.get("fields") or {})
                if fields.get("parent_run_id") == BASELINE_PLACEHOLDER:
                    fields["parent_run_id"] = self._baseline_id()
                batch["run_updates"].append({"run_id": run, "fields": fields})
            elif op == "metric":
                batch["metrics"].append({"run_id": run, "variant": rec["variant"], "name": rec["name"],
                                         "value": rec.get("value"), "detail": rec.get("detail")})
            elif op == "efficiency":
                batch["efficiency"].append({"run_id": run, "variant": rec["variant"], "rows": rec.get("rows") or []})
            elif op == "finish" and run != self.run_id:  # the job's own end is decided by the executor
                batch["finishes"].append({"run_id": run, "status": rec["status"], "error": rec.get("error"),
                                          "t": rec.get("t")})
        if end != start and self.store.ingest.apply(self.run_id, UPDATES, start, end, **batch):
            n += batch_size(batch)
        return n

    # ---------------------------------------------------------------- result documents
    def _results(self) -> int:
        folder = self.folder / RESULTS
        if not folder.is_dir():
            return 0
        n = 0
        for path in sorted(folder.glob("*.json")):
            key = f"{RESULTS}/{path.name}"
            if self.store.ingest.offset(self.run_id, key):
                continue
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # renamed into place whole, so this is a foreign file: leave it
            run = self._map(doc.get("run", self.run_id))
            if run is None:
                continue  # its baseline row is not ingested yet: next pass
            if "windows" in doc:  # a task's paired energy windows (FileRecorder.save_energy_windows)
                win = {"run_id": run, "task": doc.get("task"), "windows": doc.get("windows") or []}
                if self.store.ingest.apply(self.run_id, key, 0, 1, windows=[win]):
                    n += 1
                continue
            row = {k: v for k, v in doc.items() if k not in ("run", "t")}
            row["run_id"] = run
            if self.store.ingest.apply(self.run_id, key, 0, 1, results=[row]):
                n += 1
        return n


def batch_size(batch: UpdateBatch) -> int:
    return len(batch["run_updates"]) + len(batch["metrics"]) + len(batch["finishes"]) + len(batch["efficiency"])
