"""``echo``: a scheduler executor in one module, registered by an entry point (``pyproject.toml``).

It is what the executor contract asks of a new executor and nothing more: the deciding half
(:class:`EchoExecutor`: availability, workspace defaults from ``[echo]`` in ``greentui.toml``, a
queue-time check, its log files, its Queue columns and states) and the scheduler half
(:class:`EchoDispatcher`: submit, query, outcome, cancel). greentui's scheduler life cycle does the
rest (the ``jobs`` table, following, requeue, cancel retries, the runner). Its "cluster" is
``echo-cluster.json`` in the workspace; each query moves a job one state on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backend.execution.executors.base import Executor, RunnerContext, job_column_cells
from backend.execution.executors.scheduler import JobState, Outcome, SchedulerDispatcher
from backend.schema.settings import SettingError
from backend.schema.wsconfig import load_workspace_config
from backend.workspace import run_dir

NEXT = {"PENDING": "RUNNING", "RUNNING": "COMPLETED"}
MAX_GPUS = 8


def _cluster(workspace: Path) -> Path:
    return Path(workspace) / "echo-cluster.json"


def _load(workspace: Path) -> dict[str, Any]:
    path = _cluster(workspace)
    return json.loads(path.read_text()) if path.exists() else {"next": 1, "jobs": {}}


def _save(workspace: Path, data: dict[str, Any]) -> None:
    tmp = _cluster(workspace).with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, _cluster(workspace))


def _log(workspace: Path, run_id: int, job_id: str, line: str) -> None:
    folder = run_dir(workspace, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"echo-{job_id}.log").open("a") as fh:
        fh.write(line + "\n")


class EchoExecutor(Executor):
    name = "echo"
    help = "a test scheduler: every job completes without executing anything"
    job_label = "echo job"
    queue_columns = job_column_cells()
    states = {"PENDING": "queued", "RUNNING": "running", "COMPLETED": "done", "CANCELLED": "cancelled"}

    def unavailable(self) -> str | None:
        return os.environ.get("ECHO_UNAVAILABLE") or None

    def apply_defaults(self, cfg: Any, workspace: Path) -> Any:
        table = load_workspace_config(workspace).get("echo", {})
        if cfg.gpus is None and isinstance(table.get("gpus"), int):
            cfg.gpus = table["gpus"]
        return cfg

    def check(self, cfg: Any, workspace: Path) -> None:
        why = self.unavailable()
        if why:
            raise SettingError("executor", f"echo: {why}")
        if cfg.gpus and cfg.gpus > MAX_GPUS:
            raise SettingError("gpus", f"echo: at most {MAX_GPUS} GPUs per job (got {cfg.gpus})")

    def dispatcher(self, ctx: RunnerContext) -> EchoDispatcher | None:
        return EchoDispatcher.create(self, ctx)

    def log_files(self, workspace: Path, run_id: int, job: dict[str, Any] | None) -> dict[str, Path]:
        if not job or not job.get("job_id"):
            return {}
        return {"out": run_dir(workspace, run_id) / f"echo-{job['job_id']}.log"}


class EchoDispatcher(SchedulerDispatcher):
    poll_s = 0.2
    grace_s = 0.0

    def submit(self, store: Any, runs: list[dict[str, Any]], names: dict[int, str]) -> dict[int, str]:
        data = _load(self.workspace)
        ids = {}
        for run in runs:
            job_id = str(data["next"])
            data["next"] += 1
            data["jobs"][job_id] = {"state": "PENDING", "name": names[int(run["id"])], "run": int(run["id"])}
            _log(self.workspace, int(run["id"]), job_id, "PENDING")
            ids[int(run["id"])] = job_id
        _save(self.workspace, data)
        return ids

    def find_job(self, name: str) -> str | None:
        return next((i for i, j in _load(self.workspace)["jobs"].items() if j["name"] == name), None)

    def query(self, job_ids: list[str]) -> dict[str, JobState] | None:
        data = _load(self.workspace)
        out = {}
        for job_id in job_ids:
            job = data["jobs"].get(job_id)
            if job is None:
                continue
            out[job_id] = JobState(job["state"], None, "echo-node")
            if job["state"] in NEXT:
                job["state"] = NEXT[job["state"]]
                _log(self.workspace, job["run"], job_id, job["state"])
        _save(self.workspace, data)
        return out

    def outcome(self, state: JobState | None, job_status: dict[str, Any] | None, *, cancel_requested: bool,
                job_id: str) -> Outcome:
        word = state.state if state else "GONE"
        if word == "PENDING":
            return Outcome("queued")
        if word == "RUNNING":
            return Outcome("running")
        if word == "COMPLETED":
            return Outcome("done", None, True)
        if word == "CANCELLED":
            return Outcome("cancelled", "cancelled by the user" if cancel_requested else "cancelled outside", True)
        return Outcome("interrupted", f"echo forgot job {job_id}", True)

    def send_cancel(self, job: dict[str, Any]) -> str | None:
        data = _load(self.workspace)
        if os.environ.get("ECHO_CONTROLLER_DOWN"):
            return "the echo controller does not answer"
        data["jobs"][job["job_id"]]["state"] = "CANCELLED"
        _log(self.workspace, job["run_id"], job["job_id"], "CANCELLED")
        _save(self.workspace, data)
        return None
