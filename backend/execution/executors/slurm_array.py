"""A study's runs as one Slurm job array (issue #20), through submitit's ``executor.batch()``.

The scheduler life cycle (``scheduler.py``) reserves a study's queued runs as one submission
(``store.jobs.claim_submissions``: the runs of one study placed alike, each with its index); this
module submits them as one ``sbatch --array`` job and says where each task writes its logs. Each
task is one run, executed by :func:`slurm_job.run_job` like a single job's, with two additions:

- **Requeued before its time limit.** When the study gives a time limit, a task runs as a
  :class:`ArrayTask` — submitit's ``Checkpointable`` — and Slurm signals it (SIGUSR2) before the
  limit: submitit requeues it (``scontrol requeue``) and it resumes in its run folder with its
  finished tasks, its baseline and its saved pruned model kept (the pipeline's resume). A task that
  is preempted is requeued by Slurm and resumes the same way. ``REQUEUES`` bounds the time-limit
  requeues of one task.
- **One shared baseline.** The study's vanilla baseline of a model is a task of the same array; a
  cell's task waits on its node for that task's run folder to say it is done, then reuses it (the
  snapshot names the run and its folder), instead of evaluating its own. A failed or cancelled
  baseline lets the cell evaluate its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import submitit

from backend.store import Store

#: How often one array task may be requeued before its time limit (then Slurm's TIMEOUT ends it).
REQUEUES = 3
#: How often a cell's task looks at its shared baseline's run folder.
BASELINE_POLL_S = 5.0


def array_folder(workspace: Path, first_run: int) -> Path:
    """submitit's folder of an array (sbatch script, pickles, every task's stdout/stderr)."""
    return Path(workspace) / "slurm-arrays" / f"from-run-{first_run}"


def submit_array(store: Store, workspace: Path, runs: list[dict[str, Any]], name: str,
                 parameters: dict[str, Any]) -> dict[int, str]:
    """Submit ``runs`` as one job array named ``name`` (sbatch ``parameters`` shared by every task);
    record where each task logs; return each run's task id (``<array>_<index>``)."""
    from backend.execution.executors.scheduler import job_snapshot
    from backend.schema.runconfig import RunConfig
    from backend.workspace import run_dir

    cfg = RunConfig.from_dict(runs[0]["config"])
    folder = array_folder(workspace, int(runs[0]["id"]))
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=REQUEUES if cfg.time_limit else 0)
    study = store.studies.of_run(int(runs[0]["id"]))
    parallelism = next((s["array_parallelism"] for s in study if s.get("array_parallelism")), None)
    params = dict(parameters)
    if parallelism:
        params["array_parallelism"] = int(parallelism)
    executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for run in runs:
            snap = job_snapshot(store, run)
            waits = run.get("after_run_id")
            base = store.runs.get(int(waits)) if waits else None
            if base is not None and base["status"] in ("queued", "running"):
                base_id = int(base["id"])  # the run it waits for
                snap["await_baseline"] = {"run_id": base_id, "folder": str(run_dir(workspace, base_id))}
            snap["requeue_on_limit"] = bool(cfg.time_limit)
            jobs.append(executor.submit(ArrayTask(), str(workspace), int(run["id"]), snap))
    out: dict[int, str] = {}
    for i, (run, job) in enumerate(zip(runs, jobs)):
        out[int(run["id"])] = str(job.job_id)
        store.jobs.update(int(run["id"]), detail={"array_index": i, "stdout": str(job.paths.stdout),
                                                  "stderr": str(job.paths.stderr)})
    return out


class ArrayTask(submitit.helpers.Checkpointable):
    """One task of a study's array: the run's pipeline, requeued by submitit before a time limit
    (``Checkpointable.checkpoint`` resubmits the same call; the pipeline resumes from its folder)."""

    def __call__(self, workspace: str, run_id: int, snapshot: dict[str, Any]) -> str:
        from backend.execution.executors.slurm_job import run_job
        return run_job(workspace, run_id, snapshot)


def wait_for_shared_baseline(recorder: Any, snapshot: dict[str, Any]) -> None:
    """On the node, before the pipeline: wait for the array's baseline task named in the snapshot,
    then offer its results to the pipeline (``recorder.baselines``) — its baseline key from its
    ``updates.jsonl``, its tasks from its result files. A baseline that failed is not offered."""
    import json

    from backend.execution.ingest import read_status
    wanted = snapshot.get("await_baseline")
    if not wanted:
        return
    folder = Path(wanted["folder"])
    said = False
    while (status := read_status(folder)) is None:
        if not said:
            recorder.note(f"waiting for the study's shared vanilla baseline (run {wanted['run_id']}), a task of "
                          "this job array")
            said = True
        time.sleep(BASELINE_POLL_S)
    if status.get("status") != "done":
        recorder.note(f"the shared baseline run {wanted['run_id']} ended {status.get('status')}: this run "
                      "evaluates its own")
        return
    key, fingerprint = None, None
    try:
        for line in (folder / "updates.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("op") == "update" and (rec.get("fields") or {}).get("baseline_key"):
                key = rec["fields"]["baseline_key"]
            if rec.get("op") == "metric" and rec.get("name") == "fingerprint" and rec.get("variant") == "run":
                fingerprint = rec.get("detail")
    except (OSError, json.JSONDecodeError):
        key = None
    tasks = sorted(p.stem.split("-", 2)[2] for p in (folder / "results").glob("own-vanilla-*.json"))
    if key and tasks:
        # its fingerprint and end as the store would hold them: the pipeline's reuse rule (same machine
        # and software, young enough) is applied to them on this node (``FileRecorder.find_baseline``)
        recorder.baselines[key] = {"id": int(wanted["run_id"]), "tasks": tasks, "fingerprint": fingerprint,
                                   "finished_at": status.get("t")}
        recorder.note(f"the shared baseline run {wanted['run_id']} is done: reusing its {len(tasks)} task(s)")
