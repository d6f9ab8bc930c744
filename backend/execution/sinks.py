"""Where a run's records go: the store (local runs) or files in the run folder (Slurm jobs).

The pipeline records through a small interface, :class:`RunRecorder`: the subset of
the store's repositories it calls. A local run records through :class:`StoreRecorder`, straight
into the workspace's store. A Slurm job runs on a compute node, where the workspace sits on a network
filesystem and SQLite must not be opened (its WAL mode needs shared memory on one host,
sqlite.org/wal.html), so it passes a :class:`FileRecorder`, which appends everything to files in
the run's own folder; ``backend.execution.ingest`` copies those into the store on the login node.

Files a :class:`FileRecorder` writes (all appends are whole lines, all JSON documents are written
to a temporary name and renamed, so a reader never sees half a record):

- ``events.jsonl``   the run's events (written by :class:`backend.execution.events.EventSink`, as for local runs)
- ``updates.jsonl``  run-row updates, metrics, the baseline run it creates and that run's end
- ``power.jsonl``    live power samples
- ``results/*.json`` one document per finished task
- ``status.json``    the run's final status and error, written last

A job that its scheduler requeues (a node failed) restarts in the same folder. Every file is
append-only or written whole, so what the first attempt recorded stays valid; its
:class:`FileRecorder` reads the folder back at the start (:class:`EarlierAttempt`), and the pipeline
skips what is already there: finished tasks, measured perplexities, the baseline it created.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from backend.store import Store
from backend.workspace import ensure_real_folder

# The baseline run a Slurm job evaluates does not exist in the store when the job starts: the job
# refers to it by this placeholder id, and the ingester creates the row and maps the id.
BASELINE_PLACEHOLDER = -1
UPDATES, POWER, RESULTS, STATUS, EVENTS = "updates.jsonl", "power.jsonl", "results", "status.json", "events.jsonl"

PowerCallback = Callable[[float, float, str, "float | None"], None]


class RunRecorder(Protocol):
    """What the pipeline needs to record a run: :class:`StoreRecorder` (local) or :class:`FileRecorder`."""

    def require_run(self, run_id: int) -> dict[str, Any]: ...
    def get_run(self, run_id: int) -> dict[str, Any] | None: ...
    def get_model(self, ref_or_id: str | int) -> dict[str, Any] | None: ...
    def update_run(self, run_id: int, **fields: Any) -> None: ...
    def create_run(self, model_id: int | None, kind: str, config: dict[str, Any], **kw: Any) -> int: ...
    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None: ...
    def find_baseline(self, baseline_key: str, tasks: Iterable[str], **rules: Any) -> dict[str, Any] | None: ...
    def save_energy_windows(self, run_id: int, task: str, windows: Iterable[dict[str, Any]]) -> None: ...
    def save_task_result(self, run_id: int, variant: str, task: str, result: dict[str, Any]) -> None: ...
    def save_metric(self, run_id: int, variant: str, name: str, value: float | None,
                    detail: dict[str, Any] | None = None) -> None: ...
    def add_event(self, run_id: int, kind: str, payload: dict[str, Any] | None = None,
                  t: float | None = None) -> int: ...
    def save_efficiency(self, run_id: int, variant: str, rows: Iterable[dict[str, Any]]) -> None: ...
    def register_model(self, ref: str, trust_remote_code: bool) -> int: ...
    def finished_tasks(self, run_id: int, variant: str) -> set[str]: ...
    def has_metric(self, run_id: int, variant: str, name: str) -> bool: ...


class StoreRecorder:
    """A local run's recorder: each call goes to the store's repository for it, in the run's process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.path

    def require_run(self, run_id: int) -> dict[str, Any]:
        return self.store.runs.require(run_id)

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        return self.store.runs.get(run_id)

    def get_model(self, ref_or_id: str | int) -> dict[str, Any] | None:
        return self.store.models.get(ref_or_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        self.store.runs.update(run_id, **fields)

    def create_run(self, model_id: int | None, kind: str, config: dict[str, Any], **kw: Any) -> int:
        return self.store.runs.create(model_id, kind, config, **kw)

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.store.runs.finish(run_id, status, error)

    def find_baseline(self, baseline_key: str, tasks: Iterable[str], **rules: Any) -> dict[str, Any] | None:
        return self.store.results.find_baseline(baseline_key, tasks, **rules)

    def save_energy_windows(self, run_id: int, task: str, windows: Iterable[dict[str, Any]]) -> None:
        self.store.results.save_energy_windows(run_id, task, windows)

    def save_task_result(self, run_id: int, variant: str, task: str, result: dict[str, Any]) -> None:
        self.store.results.save_task_result(run_id, variant, task, result)

    def save_metric(self, run_id: int, variant: str, name: str, value: float | None,
                    detail: dict[str, Any] | None = None) -> None:
        self.store.results.save_metric(run_id, variant, name, value, detail)

    def add_event(self, run_id: int, kind: str, payload: dict[str, Any] | None = None,
                  t: float | None = None) -> int:
        return self.store.events.add(run_id, kind, payload, t=t)

    def save_efficiency(self, run_id: int, variant: str, rows: Iterable[dict[str, Any]]) -> None:
        self.store.results.save_efficiency(run_id, variant, rows)

    def register_model(self, ref: str, trust_remote_code: bool) -> int:
        from backend.stages.models import register_model
        return register_model(self.store, ref, trust_remote_code)

    def finished_tasks(self, run_id: int, variant: str) -> set[str]:
        return {r["task"] for r in self.store.results.task_results(run_id, variant)}

    def has_metric(self, run_id: int, variant: str, name: str) -> bool:
        return any(m["variant"] == variant and m["name"] == name for m in self.store.results.metrics(run_id))

    def cancel_flag(self, run_ids: Iterable[int]) -> float | None:
        return self.store.queue.cancel_flag(run_ids)


def as_recorder(target: Store | RunRecorder) -> RunRecorder:
    """The recorder for ``target``: a store is wrapped, a recorder is itself."""
    return StoreRecorder(target) if isinstance(target, Store) else target


def power_callback(recorder: RunRecorder, run_id: int) -> PowerCallback:
    """A thread-safe ``on_sample`` for the power sampler thread of this run.

    For the store, the sampler thread opens its own connection on first use (one SQLite connection
    per thread); a :class:`FileRecorder` appends under a lock.
    """
    if isinstance(recorder, FileRecorder):
        return recorder.add_power_sample_now
    db_file = recorder.path  # type: ignore[attr-defined]
    conn: dict[str, Any] = {}

    def on_sample(t: float, watts: float, source: str, limit_w: float | None) -> None:
        if "store" not in conn:
            conn["store"] = Store(db_file)
        conn["store"].events.add_power_sample(run_id, t, watts, source, limit_w)
    return on_sample


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a JSON document under a temporary name, then rename it (readers see all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str, sort_keys=True) + "\n")
    os.replace(tmp, path)


def seal_torn_lines(folder: Path) -> None:
    """End the last line of each JSONL file a killed attempt left half-written, so that this attempt's
    first record starts a line of its own (the torn one is skipped by every reader)."""
    for name in (EVENTS, UPDATES, POWER):
        path = folder / name
        try:
            with path.open("rb+") as fh:
                if fh.seek(0, 2) == 0:
                    continue
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
        except FileNotFoundError:
            continue


class EarlierAttempt:
    """What earlier attempts of this job left in its run folder (a job the scheduler restarted).

    Read once when the :class:`FileRecorder` starts: the baseline run it created (and whether it
    finished it), the task results on disk, the metrics recorded. A torn last line is skipped.
    """

    def __init__(self, folder: Path):
        self.baseline_created = False
        self.baseline_status: str | None = None
        self.metrics: set[tuple[int, str, str]] = set()
        self.results: set[tuple[str, str, str]] = set()   # (own|baseline, variant, task)
        try:
            lines = (folder / UPDATES).read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("op") == "create_baseline":
                self.baseline_created = True
            elif rec.get("op") == "finish" and rec.get("run") == BASELINE_PLACEHOLDER:
                self.baseline_status = rec.get("status")
            elif rec.get("op") == "metric":
                self.metrics.add((int(rec.get("run", 0)), str(rec.get("variant")), str(rec.get("name"))))
        for path in (folder / RESULTS).glob("*.json") if (folder / RESULTS).is_dir() else []:
            who, _, rest = path.stem.partition("-")
            variant, _, task = rest.partition("-")
            if who in ("own", "baseline") and variant and task:
                self.results.add((who, variant, task))

    @property
    def any(self) -> bool:
        return self.baseline_created or bool(self.results) or bool(self.metrics)


class FileRecorder:
    """A :class:`RunRecorder` that writes only into one run folder (for a job on a compute node).

    ``snapshot`` is what the login node knew when it submitted the job: the run row (with its
    config), the model row, and the finished baselines the run may reuse (by baseline key).
    """

    def __init__(self, folder: Path, snapshot: dict[str, Any]):
        self.folder = ensure_real_folder(Path(folder))
        self.run: dict[str, Any] = dict(snapshot["run"])
        self.run_id = int(self.run["id"])
        self.model: dict[str, Any] = dict(snapshot["model"])
        self.baselines: dict[str, dict[str, Any]] = dict(snapshot.get("baselines") or {})
        self.path = self.folder  # the store's ``path`` attribute; nothing opens it as a database
        self._lock = threading.RLock()  # reentrant: a signal handler may log while the main thread appends
        seal_torn_lines(self.folder)
        self.earlier = EarlierAttempt(self.folder)
        self._baseline_created = False

    # ---------------------------------------------------------------- plumbing
    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str, sort_keys=True) + "\n"
        with self._lock, (self.folder / name).open("a") as fh:
            fh.write(line)
            fh.flush()

    def _update(self, op: str, run_id: int, **data: Any) -> None:
        self._append(UPDATES, {"op": op, "run": run_id, "t": time.time(), **data})

    def note(self, line: str) -> None:
        """A log line into ``events.jsonl`` from outside the pipeline (a signal handler)."""
        self._append(EVENTS, {"t": time.time(), "kind": "log", "line": line})

    def cancel_requested(self, run_id: int) -> bool:
        """True when the login node asked this job to stop (``cancel.request`` in the run folder)."""
        return (self.folder / "cancel.request").exists()

    # ---------------------------------------------------------------- reads (from the snapshot)
    def register_model(self, ref: str, trust_remote_code: bool) -> int:
        raise RuntimeError("a Slurm job's run has its model registered at queue time")

    def require_run(self, run_id: int) -> dict[str, Any]:
        run = self.get_run(run_id)
        if run is None:
            raise KeyError(f"run {run_id} is not the run of this job ({self.run_id})")
        return run

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        return dict(self.run) if run_id == self.run_id else None

    def get_model(self, ref_or_id: str | int) -> dict[str, Any] | None:
        m = self.model
        return dict(m) if str(ref_or_id) in (str(m.get("id")), m.get("ref"), m.get("name")) else None

    def find_baseline(self, baseline_key: str, tasks: Iterable[str], **rules: Any) -> dict[str, Any] | None:
        """A finished baseline the run may reuse: one the store had at submission, or the one an earlier
        attempt of this job evaluated whole (closed as done here if that attempt was stopped first).

        The fingerprint and age ``rules`` are applied here, on the job's node, whose fingerprint only the
        job knows, to the fingerprint and finish time the login node put in the snapshot
        (``scheduler.job_snapshot``); a baseline passed over is named in ``rules['why_not']``."""
        from backend.store.results import baseline_refusal
        wanted = set(tasks)
        found = self.baselines.get(baseline_key)
        if found and wanted <= set(found.get("tasks") or []):
            reason = baseline_refusal(found.get("finished_at"), found.get("fingerprint"),
                                      fingerprint=rules.get("fingerprint"), max_age_s=rules.get("max_age_s"))
            if reason is None:
                return dict(found)
            if rules.get("why_not") is not None:
                rules["why_not"].append(f"run {found['id']}: {reason}")
        if self.earlier.baseline_created and wanted <= self.finished_tasks(BASELINE_PLACEHOLDER, "vanilla"):
            self._baseline_created = True
            if self.earlier.baseline_status != "done":
                self.finish_run(BASELINE_PLACEHOLDER, "done")
            return {"id": BASELINE_PLACEHOLDER, "tasks": sorted(wanted),
                    "label": "this job's attempt before the restart"}
        return None

    def finished_tasks(self, run_id: int, variant: str) -> set[str]:
        """Tasks whose result document is in the folder (written whole by an earlier attempt)."""
        who = "baseline" if run_id == BASELINE_PLACEHOLDER else "own"
        return {task for w, v, task in self.earlier.results if w == who and v == variant}

    def has_metric(self, run_id: int, variant: str, name: str) -> bool:
        return (int(run_id), variant, name) in self.earlier.metrics

    # ---------------------------------------------------------------- writes (to files)
    def update_run(self, run_id: int, **fields: Any) -> None:
        if fields:
            if run_id == self.run_id:
                self.run.update(fields)
            self._update("update", run_id, fields=fields)

    def create_run(self, model_id: int | None, kind: str, config: dict[str, Any], **kw: Any) -> int:
        """Only the baseline run of this job can be created; it gets the placeholder id. A restarted
        job gets the baseline its earlier attempt created again (the row exists; it resumes it)."""
        if kind != "baseline" or self._baseline_created:
            raise ValueError("a Slurm job creates at most one run: its vanilla baseline")
        self._baseline_created = True
        if self.earlier.baseline_created:
            return BASELINE_PLACEHOLDER
        self._update("create_baseline", BASELINE_PLACEHOLDER, model_id=model_id, config=config,
                     label=kw.get("label"), device=kw.get("device"), baseline_key=kw.get("baseline_key"))
        return BASELINE_PLACEHOLDER

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """The job's own end goes to ``status.json`` (read by the executor, which also knows what
        Slurm says); the baseline's end is an ordinary update."""
        if run_id == self.run_id:
            write_json_atomic(self.folder / STATUS, {"status": status, "error": error, "t": time.time()})
        else:
            self._update("finish", run_id, status=status, error=error)

    def save_task_result(self, run_id: int, variant: str, task: str, result: dict[str, Any]) -> None:
        who = "baseline" if run_id == BASELINE_PLACEHOLDER else "own"
        write_json_atomic(self.folder / RESULTS / f"{who}-{variant}-{task}.json",
                          dict(result, run=run_id, variant=variant, task=task, t=time.time()))

    def save_energy_windows(self, run_id: int, task: str, windows: Iterable[dict[str, Any]]) -> None:
        """One document per task's windows, ingested like a task result (``ingest._results``)."""
        write_json_atomic(self.folder / RESULTS / f"own-windows-{task}.json",
                          {"run": run_id, "task": task, "windows": list(windows), "t": time.time()})

    def save_metric(self, run_id: int, variant: str, name: str, value: float | None,
                    detail: dict[str, Any] | None = None) -> None:
        self._update("metric", run_id, variant=variant, name=name, value=value, detail=detail)

    def save_efficiency(self, run_id: int, variant: str, rows: Iterable[dict[str, Any]]) -> None:
        self._update("efficiency", run_id, variant=variant, rows=list(rows))

    def add_event(self, run_id: int, kind: str, payload: dict[str, Any] | None = None,
                  t: float | None = None) -> int:
        """Nothing to do: ``EventSink`` writes every event to ``events.jsonl`` itself."""
        return 0

    def add_power_sample_now(self, t: float, watts: float, source: str, limit_w: float | None) -> None:
        self._append(POWER, {"t": t, "watts": watts, "source": source, "limit_w": limit_w})
