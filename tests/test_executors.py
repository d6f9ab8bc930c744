"""The executor contract (``backend/execution/executors``): the registry and its entry point, the generic
``jobs`` table, the scheduler life cycle (submit, follow, requeue, cancel retries) and a remote job
that resumes in its run folder after a restart.

The plugin executor is a real separate package (``tests/plugins/greentui-echo-executor``, installed by
``scripts/bootstrap``), found through the ``greentui.executors`` entry point. Stores are real SQLite;
Slurm itself is exercised in ``test_slurm.py`` (slow tier, a real one-node cluster).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from backend.errors import GreentuiError
from backend.execution.executors import RunnerContext, executor, executors
from backend.execution.executors.scheduler import JobState
from backend.execution.sinks import BASELINE_PLACEHOLDER, FileRecorder
from backend.schema import catalog
from backend.schema.runconfig import RunConfig
from backend.schema.settings import SettingError
from backend.service import runs as service
from backend.service.execution import job_view, queue_columns
from backend.store import Store

from .conftest import require_plugin


@pytest.fixture(scope="module")
def echo_installed():
    require_plugin("greentui-echo-executor")


def _store(ws: Path) -> Store:
    store = Store(ws / "greentui.db")
    store.models.upsert("/models/tiny", name="tiny")
    return store


# ------------------------------------------------------------------------------ the jobs table

def test_the_jobs_migration_moves_every_slurm_job_field(tmp_path):
    """A store made before the generic table (schema 4, ``slurm_jobs``) opens with its rows in ``jobs``."""
    import sqlite_utils

    from backend.store.tables import MIGRATIONS
    path = tmp_path / "greentui.db"
    db = sqlite_utils.Database(sqlite3.connect(path))
    db.conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at REAL)")
    for version, migrate in enumerate(MIGRATIONS[:4], 1):
        migrate(db)
        db.conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
    db.conn.execute("INSERT INTO runs (id, kind, status, config, created_at) VALUES "
                    "(7, 'experiment', 'running', '{\"executor\": \"slurm\"}', 1), "
                    "(8, 'baseline', 'running', '{\"executor\": \"slurm\"}', 2)")
    old = dict(run_id=7, job_id="4242", job_name="greentui-ab-run7", state="RUNNING", reason="None", node="n7",
               submitted_at=10.5, updated_at=11.5, finished=0, cancel_requested=1, baseline_run_id=8)
    db["slurm_jobs"].insert(old)
    db.conn.commit()
    db.conn.close()
    with Store(path) as store:
        job = store.jobs.get(7)
        assert {k: job[k] for k in old} == old
        assert (job["executor"], job["submission"], job["restarts"]) == ("slurm", "4242", 0)
        assert job["cancel_sent"] == 11.5  # a cancel recorded before had been sent (scancel ran at once)
        assert "slurm_jobs" not in {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert store.runs.running() == []  # the job's run and its baseline are the job's, not a pid's


# ------------------------------------------------------------------------------ registry and plugin

def test_a_package_adds_an_executor_through_the_entry_point(echo_installed):
    echo = executor("echo")
    assert type(echo).__module__ == "greentui_echo_executor"
    assert [e.name for e in executors()][:2] == ["local", "slurm"] and "echo" in catalog.EXECUTORS
    assert RunConfig(model="m", executor="echo").problems() == {}
    assert "executor" in RunConfig(model="m", executor="k8s").problems()
    # Slurm's own settings are refused for another executor, naming the flags
    problem = RunConfig(model="m", executor="echo", partition="gpu").problems()["executor"]
    assert problem == "--partition needs --executor slurm"
    with pytest.raises(GreentuiError, match="unknown executor 'k8s'; one of local, slurm, echo"):
        executor("k8s")


def test_the_plugin_executors_life_cycle(echo_installed, tmp_path, monkeypatch):
    """Queue-time check and defaults, submission, states, Queue columns, logs and cancel — all through
    the contract, for an executor greentui's code does not name."""
    ws = tmp_path
    store = _store(ws)
    cfg = lambda **kw: RunConfig(model="/models/tiny", no_prune=True, executor="echo", **kw)  # noqa: E731
    with pytest.raises(SettingError, match="echo: at most 8 GPUs") as refused:
        service.queue_run(ws, store, cfg(gpus=9), start=False)
    assert refused.value.field == "gpus" and store.runs.count() == 0
    monkeypatch.setenv("ECHO_UNAVAILABLE", "the echo cluster is closed")
    with pytest.raises(SettingError, match="echo: the echo cluster is closed"):
        service.queue_run(ws, store, cfg(), start=False)
    monkeypatch.delenv("ECHO_UNAVAILABLE")
    (ws / "greentui.toml").write_text("[echo]\ngpus = 2\n")
    a = service.queue_run(ws, store, cfg(), start=False).run_id
    b = service.queue_run(ws, store, cfg(), start=False).run_id
    assert store.runs.get(a)["config"]["gpus"] == 2  # the workspace default, filled by the executor

    dispatcher = executor("echo").dispatcher(RunnerContext(ws, runner_id=0))
    assert executor("echo").dispatcher(RunnerContext(ws, runner_id=0)) is None  # one runner per workspace
    dispatcher.step(store)  # submits both; each is PENDING
    assert [store.jobs.get(r)["job_id"] for r in (a, b)] == ["1", "2"]
    assert store.runs.get(a)["status"] == "queued" and store.runs.get(a)["stage"] == "submitted"
    row = {r["id"]: r for r in store.queue.queued()}[a]
    cells = {c.key: c.cell(row) for c in queue_columns()}
    assert cells == {"job": "1", "job_state": "PENDING"}
    assert service.cancel(store, b) == "cancelling"
    monkeypatch.setenv("ECHO_CONTROLLER_DOWN", "1")
    dispatcher.step(store)  # a → RUNNING; b's cancel does not reach the controller: it stays recorded
    assert store.runs.get(a)["status"] == "running"
    assert store.jobs.get(b)["cancel_requested"] == 1 and store.jobs.get(b)["cancel_sent"] is None
    monkeypatch.delenv("ECHO_CONTROLLER_DOWN")
    dispatcher.step(store)  # the cancel is delivered; a completes
    dispatcher.step(store)
    assert dispatcher.step(store) is False  # nothing left to follow
    assert (store.runs.get(a)["status"], store.runs.get(b)["status"]) == ("done", "cancelled")
    assert store.runs.get(b)["error"] == "cancelled by the user"
    view = job_view(ws, store, store.runs.get(a))
    assert view.summary == "echo job 1 COMPLETED on echo-node" and view.label == "echo job stdout/stderr"
    assert view.files["out"].read_text().split() == ["PENDING", "RUNNING", "COMPLETED"]
    lines = [e["payload"]["line"] for e in store.events.list(b, kinds=["log"])]
    assert "cancel delivered to echo job 2" in lines
    dispatcher.close()


def test_start_runners_starts_a_runner_per_executor_with_work(echo_installed, tmp_path):
    """What the TUI and ``greentui resume`` start: a runner for each executor whose runs wait, by name."""
    ws = tmp_path
    store = _store(ws)
    run = service.queue_run(ws, store, RunConfig(model="/models/tiny", no_prune=True, executor="echo"),
                            start=False).run_id
    assert store.jobs.executors_with_work(paused=False) == ["echo"]
    assert store.jobs.executors_with_work(paused=True) == []  # nothing submitted: paused = nothing to do
    store.jobs.claim_submissions("echo", str)
    assert store.jobs.executors_with_work(paused=True) == ["echo"]  # an open job is followed even paused
    assert executor("echo").runner_command(ws)[-2:] == ["--executor", "echo"]
    assert store.runs.get(run)["status"] == "queued"


# ------------------------------------------------------------------------------ scheduler life cycle

def _slurm_job(ws: Path, store: Store, state: str = "RUNNING") -> int:
    run_id = store.runs.create(store.models.get("/models/tiny")["id"], "experiment",
                               RunConfig(model="/models/tiny", executor="slurm").to_dict())
    store.jobs.claim_submissions("slurm", lambda rid: f"greentui-test-run{rid}")
    store.jobs.update(run_id, job_id="77", state=state, node="vm", submitted_at=time.time())
    if state == "RUNNING":
        store.runs.mark_started(run_id)
    return run_id


def test_a_requeued_slurm_job_is_shown_as_a_requeue(tmp_path):
    """RUNNING → (node down) PENDING/BeginTime → RUNNING → COMPLETED: the run goes queued with Slurm's
    reason and back, the history says what happened, and nobody is said to have cancelled it."""
    from backend.execution.executors.slurm import SlurmDispatcher, job_logs
    ws = tmp_path
    store = _store(ws)
    run_id = _slurm_job(ws, store)
    d = SlurmDispatcher(executor("slurm"), ws)
    d.store = store
    # what the stopped attempt left: slurmstepd's line in stderr, and its own status (interrupted)
    _, err = job_logs(ws, run_id, "77")
    err.parent.mkdir(parents=True)
    err.write_text("srun: error: Node failure on vm\nslurmstepd-vm: error: *** STEP 77.0 ON vm CANCELLED AT "
                   "2026-01-01T00:00:00 DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***\n"
                   "submitit WARNING (2026-01-01 00:00:00,000) - Bypassing signal SIGCONT\n")
    (err.parent.parent / "status.json").write_text(json.dumps({"status": "interrupted",
                                                               "error": "stopped by Slurm (SIGTERM)"}))
    d.follow(store.jobs.get(run_id), JobState("PENDING", "BeginTime", None, restarts=1))
    run, job = store.runs.get(run_id), store.jobs.get(run_id)
    assert (run["status"], run["stage"]) == ("queued", "requeued (BeginTime)")
    assert (job["state"], job["reason"], job["restarts"]) == ("PENDING", "BeginTime", 1)
    row = {r["id"]: r for r in store.queue.queued()}[run_id]
    assert {c.key: c.cell(row) for c in queue_columns()}["job_state"] == "PENDING ↻1"
    assert "requeued 1×" in job_view(ws, store, run).summary
    d.follow(store.jobs.get(run_id), JobState("PENDING", "BeginTime", None, restarts=1))  # nothing new
    d.follow(store.jobs.get(run_id), JobState("RUNNING", "None", "vm", restarts=1))
    assert store.runs.get(run_id)["status"] == "running"
    (err.parent.parent / "status.json").write_text(json.dumps({"status": "done", "error": None}))
    d.follow(store.jobs.get(run_id), JobState("COMPLETED", "None", "vm", restarts=1))
    run = store.runs.get(run_id)
    assert (run["status"], run["error"]) == ("done", None)
    lines = [e["payload"].get("line") or e["payload"].get("message") or "" for e in store.events.list(run_id)]
    requeue = [x for x in lines if "requeued" in x]
    assert len(requeue) == 1 and "Slurm job 77 on vm was requeued after a node failure" in requeue[0]
    assert "it waits (BeginTime)" in requeue[0]
    assert "Slurm job 77 running on vm (attempt 2)" in lines
    assert not any("cancelled by the user" in x for x in lines)
    assert [e["kind"] for e in store.events.list(run_id)].count("done") == 0  # the job's own "done" is ingested


def test_a_job_seen_again_after_its_runner_missed_the_requeue(tmp_path):
    """The runner was down while Slurm requeued and restarted the job: the restart count says so."""
    from backend.execution.executors.slurm import SlurmDispatcher
    store = _store(tmp_path)
    run_id = _slurm_job(tmp_path, store)
    d = SlurmDispatcher(executor("slurm"), tmp_path)
    d.store = store
    d.follow(store.jobs.get(run_id), JobState("RUNNING", "None", "vm", restarts=2))
    assert store.runs.get(run_id)["status"] == "running" and store.jobs.get(run_id)["restarts"] == 2
    assert any("was requeued" in e["payload"]["line"] for e in store.events.list(run_id, kinds=["log"]))


def test_slurm_args_in_greentui_toml_are_type_checked(tmp_path):
    from backend.execution.executors.slurm import workspace_defaults
    (tmp_path / "greentui.toml").write_text('[slurm.args]\naccount = ["a", "b"]\n')
    with pytest.raises(GreentuiError, match=r"slurm\.args\.account must be a string or a number .*not a list"):
        service.apply_workspace_defaults(RunConfig(model="m", executor="slurm"), tmp_path)
    (tmp_path / "greentui.toml").write_text("[slurm.args]\nqos = { name = 'x' }\n")
    with pytest.raises(GreentuiError, match="slurm.args.qos must be a string or a number"):
        workspace_defaults(tmp_path)
    (tmp_path / "greentui.toml").write_text("[slurm.args]\nnodes = 2\naccount = 'proj'\n")
    cfg = service.apply_workspace_defaults(RunConfig(model="m", executor="slurm"), tmp_path)
    assert cfg.slurm_arg == ["nodes=2", "account=proj"]


def test_missing_sbatch_is_found_at_queue_time(cli, workspace, tmp_path):
    """sinfo answering is not enough: without sbatch nothing could be submitted. Nothing is recorded."""
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if shutil.which("sinfo"):
        (bin_dir / "sinfo").symlink_to(shutil.which("sinfo"))
    proc = cli("queue", "/models/tiny", "--no-prune", "--executor", "slurm", env={"PATH": str(bin_dir)})
    assert proc.returncode != 0
    assert proc.stderr.strip() == "greentui: error: --executor: slurm: Slurm cannot take jobs from here " \
                                  "(no sbatch on PATH)"
    with Store(workspace / "greentui.db") as store:
        assert store.runs.count() == 0


def test_dead_local_runs_are_interrupted_but_a_jobs_runs_are_left_to_it(tmp_path):
    from backend.service.execution import recover_stale_runs
    store = _store(tmp_path)
    run_id = _slurm_job(tmp_path, store)
    base = store.runs.create(store.models.get("/models/tiny")["id"], "baseline",
                             RunConfig(model="/models/tiny", executor="slurm", no_prune=True).to_dict(),
                             status="running")
    store.jobs.update(run_id, baseline_run_id=base)
    local = store.runs.create(store.models.get("/models/tiny")["id"], "experiment",
                              RunConfig(model="/models/tiny").to_dict(), status="running", pid=2**22 + 12345)
    assert recover_stale_runs(store) == [local]
    assert store.runs.get(run_id)["status"] == store.runs.get(base)["status"] == "running"


# ------------------------------------------------------------------------------ a restarted remote job

def _result(task: str) -> dict:
    return {"task": task, "acc": 0.5, "acc_stderr": 0.1, "n_samples": 2, "energy_kwh": 1e-6, "meter": "test"}


def test_a_restarted_jobs_recorder_knows_what_its_earlier_attempt_finished(tmp_path):
    """The second attempt in a run folder: the baseline it made is the same placeholder (no second row),
    finished tasks and metrics are known, a baseline evaluated whole is reused (and closed)."""
    snap = {"run": {"id": 5, "config": {}}, "model": {"id": 1, "ref": "/m"}, "baselines": {}}
    first = FileRecorder(tmp_path, snap)
    assert not first.earlier.any and first.finished_tasks(5, "pruned") == set()
    base = first.create_run(1, "baseline", {}, baseline_key="k")
    first.save_task_result(base, "vanilla", "boolq", _result("boolq"))
    first.save_task_result(base, "vanilla", "arc_easy", _result("arc_easy"))
    first.save_metric(base, "vanilla", "ppl_wikitext2", 70.0)
    first.save_task_result(5, "pruned", "boolq", _result("boolq"))
    with (tmp_path / "updates.jsonl").open("a") as fh:
        fh.write('{"op": "metric", "torn')  # the line the kill cut

    second = FileRecorder(tmp_path, snap)
    assert second.earlier.any
    assert second.finished_tasks(BASELINE_PLACEHOLDER, "vanilla") == {"boolq", "arc_easy"}
    assert second.finished_tasks(5, "pruned") == {"boolq"} and second.finished_tasks(5, "vanilla") == set()
    assert second.has_metric(BASELINE_PLACEHOLDER, "vanilla", "ppl_wikitext2")
    assert second.find_baseline("k", ["boolq", "arc_easy", "piqa"]) is None  # piqa is missing: resume it
    assert second.create_run(1, "baseline", {}, baseline_key="k") == BASELINE_PLACEHOLDER
    creates = [json.loads(x)["op"] for x in (tmp_path / "updates.jsonl").read_text().splitlines()[:-1]]
    assert creates.count("create_baseline") == 1

    third = FileRecorder(tmp_path, snap)
    found = third.find_baseline("k", ["boolq", "arc_easy"])
    assert found["id"] == BASELINE_PLACEHOLDER and "before the restart" in found["label"]
    last = json.loads((tmp_path / "updates.jsonl").read_text().splitlines()[-1])
    assert (last["op"], last["run"], last["status"]) == ("finish", BASELINE_PLACEHOLDER, "done")


def test_a_job_applies_the_baseline_reuse_rule_on_its_own_node(tmp_path):
    """#18.4 under Slurm: the login node cannot know the node's fingerprint, so the snapshot carries the
    finished baseline's recorded fingerprint and finish time (``job_snapshot``, from a real store) and the
    job applies the pipeline's rule to them: another node's, an old or an unfingerprinted baseline is
    passed over, by name; the same machine's is reused."""
    from backend.execution.executors.scheduler import job_snapshot
    from backend.schema.runconfig import RunConfig
    from backend.store.tables import now
    store = Store(tmp_path / "greentui.db")
    model_id = store.models.upsert("/m")
    cfg = RunConfig(model="/m", tasks=["boolq"])
    key = cfg.baseline_key("/m", "cpu")
    base = store.runs.create(model_id, "baseline", dict(cfg.to_dict(), no_prune=True))
    store.runs.update(base, baseline_key=key)
    store.results.save_task_result(base, "vanilla", "boolq", _result("boolq"))
    store.runs.finish(base, "done")
    here = {"node": "n1", "cpu": "EPYC", "torch": "2.13", "data": "d"}
    run_id = store.runs.create(model_id, "experiment", cfg.to_dict())

    def job(fp: dict | None) -> tuple[dict | None, list[str]]:
        if fp is not None:
            store.results.save_metric(base, "run", "fingerprint", None, fp)
        folder = tmp_path / f"job-{len(list(tmp_path.glob('job-*')))}"
        recorder = FileRecorder(folder, job_snapshot(store, store.runs.get(run_id)))
        why: list[str] = []
        return recorder.find_baseline(key, ["boolq"], fingerprint=here, max_age_s=7 * 86400, why_not=why), why

    found, why = job(None)
    assert found is None and why == [f"run {base}: no fingerprint recorded"]
    found, why = job(dict(here, node="n2"))
    assert found is None and why == [f"run {base}: node differ"]
    found, why = job(here)
    assert found["id"] == base and why == []
    store.runs.update(base, finished_at=now() - 8 * 86400)
    found, why = job(None)
    assert found is None and why == [f"run {base}: older than 7 days"]
    store.close()


@pytest.mark.slow
def test_a_job_stopped_by_its_scheduler_resumes_in_its_run_folder(tmp_path, demo_model_dir):
    """A job stopped (SIGTERM from the scheduler) right after its first pruned task, then started again in
    the same folder: the baseline, the pruned model and the finished task are kept; only the rest runs;
    nothing says "cancelled by the user"; the store gets every record once."""
    from backend.execution.control import RunCancelled
    from backend.execution.executors.scheduler import job_snapshot
    from backend.execution.ingest import Ingester, read_status
    from backend.execution.pipeline import execute_run
    from backend.schema.tasks import bundled_data_dir
    from backend.stages.models import register_model

    ws = tmp_path
    store = Store(ws / "greentui.db")
    model_id = register_model(store, str(demo_model_dir("llama")))
    cfg = RunConfig(model=store.models.get(model_id)["ref"], executor="slurm", tasks=["boolq", "piqa"], limit=2,
                    data_dir=str(bundled_data_dir()), ppl_limit=0, lora_steps=2, lora_batch_size=2,
                    calib_samples=2, ignore_first=1, ignore_last=1, device="cpu")
    run_id = store.runs.create(model_id, "experiment", cfg.to_dict())
    store.jobs.claim_submissions("slurm", str)
    store.jobs.update(run_id, job_id="1", state="RUNNING")
    store.runs.mark_started(run_id)
    snap = job_snapshot(store, store.runs.get(run_id))
    folder = ws / f"run-{run_id:05d}"

    class StoppedAfterOnePrunedTask(FileRecorder):
        def save_task_result(self, run: int, variant: str, task: str, result: dict) -> None:
            super().save_task_result(run, variant, task, result)
            if variant == "pruned":  # what the node going down does to the job at this point
                raise RunCancelled("stopped by Slurm (SIGTERM: scancel, time limit or preemption)",
                                   status="interrupted")

    assert execute_run(StoppedAfterOnePrunedTask(folder, snap), ws, run_id) == "interrupted"
    assert read_status(folder)["status"] == "interrupted"
    first = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    assert not [e for e in first if e["kind"] in ("done", "error")]  # the end is the executor's to record
    [kept] = list((folder / "results").glob("own-pruned-*.json"))
    kept_doc = kept.read_text()

    assert execute_run(FileRecorder(folder, snap), ws, run_id) == "done"
    assert kept.read_text() == kept_doc  # not evaluated again
    assert sorted(p.name for p in (folder / "results").glob("own-pruned-*.json")) == \
        ["own-pruned-boolq.json", "own-pruned-piqa.json"]
    events = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    lines = [e.get("line", "") for e in events[len(first):] if e["kind"] == "log"]
    assert any("reusing the vanilla baseline of this job's attempt before the restart" in x for x in lines)
    assert any("loading it from model/ instead of pruning again" in x for x in lines)
    assert any("merging its adapter (lora/adapter)" in x for x in lines)  # not trained again
    assert any(x.startswith("pruned: ") and "finished before the restart: kept" in x for x in lines)
    assert [e["kind"] for e in events].count("done") == 1

    Ingester(store, run_id, folder).ingest()
    base = store.jobs.get(run_id)["baseline_run_id"]
    assert store.runs.count() == 2 and store.runs.get(base)["status"] == "done"
    assert sorted(r["task"] for r in store.results.task_results(run_id, "pruned")) == ["boolq", "piqa"]
    assert sorted(r["task"] for r in store.results.task_results(base, "vanilla")) == ["boolq", "piqa"]
    assert not [e for e in store.events.list(run_id) if "cancelled by the user" in json.dumps(e["payload"])]
    store.close()


@pytest.mark.slow
def test_the_plugin_executor_end_to_end(echo_installed, cli_subprocess, workspace, demo_model_dir):
    """`greentui queue --executor echo` starts the echo executor's own detached runner (`worker --executor
    echo`), which follows the run to its end; `worker --executor` refuses an unknown name in one line."""
    from .conftest import wait_for
    model = str(demo_model_dir("llama"))
    proc = cli_subprocess("queue", model, "--no-prune", "--executor", "echo")
    assert proc.returncode == 0, proc.stderr
    run_id = int(proc.stdout.strip().splitlines()[-1])
    assert f"queued run {run_id} for echo; runner pid " in proc.stdout

    def status() -> str:
        with Store(workspace / "greentui.db") as s:
            return s.runs.get(run_id)["status"]
    wait_for(lambda: status() == "done", 120, "the echo runner to follow the run to its end")
    assert (workspace / "runner-echo.log").exists()
    with Store(workspace / "greentui.db") as s:
        assert s.jobs.get(run_id)["executor"] == "echo" and s.jobs.get(run_id)["finished"] == 1
    bad = cli_subprocess("worker", "--executor", "k8s")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == \
        ["greentui: error: unknown executor 'k8s'; one of local, slurm, echo"]
