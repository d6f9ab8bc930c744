"""The Slurm executor against a real one-node Slurm cluster (``scripts/slurm-local up``).

CI (``.ci/run``) installs slurm-wlm and munge and starts the cluster before the tests, and sets
GREENTUI_REQUIRE_SLURM=1 so that these tests fail rather than skip when Slurm does not answer.
Elsewhere they skip, saying why. Each uses a tiny model, one task and ``--limit 2``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from backend.execution.executors.slurm import job_name, slurm_available
from backend.schema.tasks import bundled_data_dir
from backend.store import Store

from .conftest import ROOT, wait_for

pytestmark = pytest.mark.slow

DATA = str(bundled_data_dir())
QUICK = ["--executor", "slurm", "--tasks", "boolq", "--limit", "2", "--data-dir", DATA, "--ppl-limit", "0",
         "--lora-batch-size", "2", "--calib-samples", "2", "--ignore-first", "1", "--ignore-last", "1"]
FINAL = ("done", "failed", "cancelled", "interrupted")


@pytest.fixture(scope="module")
def slurm():
    """Slurm answering here: started with scripts/slurm-local when we may (root, installed)."""
    why = slurm_available()
    if why and os.geteuid() == 0 and shutil.which("slurmctld"):
        subprocess.run([str(ROOT / "scripts" / "slurm-local"), "up"], capture_output=True, timeout=120)
        why = slurm_available()
    if why:
        if os.environ.get("GREENTUI_REQUIRE_SLURM") == "1":
            pytest.fail(f"Slurm is required here (GREENTUI_REQUIRE_SLURM=1) but {why}")
        pytest.skip(f"no Slurm cluster: {why} (scripts/slurm-local install && scripts/slurm-local up, as root)")


@pytest.fixture
def slurm_ws(slurm, workspace):
    """The workspace; afterwards its jobs are cancelled and its Slurm runner stopped."""
    yield workspace
    tag = job_name(workspace, 0).rsplit("-run", 1)[0] + "-run"
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in out.splitlines() if len(line.split()) == 2 and line.split()[1].startswith(tag)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)
    lock = workspace / ".runner-slurm.lock"
    pid = lock.read_text().strip() if lock.exists() else ""
    if pid.isdigit():
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _queue(cli, model: str, *extra: str) -> tuple[int, int | None]:
    proc = cli("queue", model, *QUICK, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    pid = next((int(line.rsplit(" ", 1)[1]) for line in lines if "runner pid" in line
                and line.rsplit(" ", 1)[1].isdigit()), None)
    return int(lines[-1]), pid


def _store(ws: Path) -> Store:
    return Store(ws / "greentui.db")


def _status(ws: Path, run_id: int) -> str:
    with _store(ws) as s:
        return s.runs.get(run_id)["status"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _assert_ingested_once(ws: Path, run_id: int) -> None:
    """Every line the job wrote is in the store exactly once (the runner adds only its own logs)."""
    folder = ws / f"run-{run_id:05d}"
    with _store(ws) as s:
        stored = s.events.list(run_id, limit=100_000)
        for kind in ("stage_start", "stage_end", "result", "progress", "loss"):
            in_file = [e for e in _lines(folder / "events.jsonl") if e["kind"] == kind]
            assert len([e for e in stored if e["kind"] == kind]) == len(in_file), kind
        assert len(s.events.power_samples(run_id)) == len(_lines(folder / "power.jsonl"))
        files = sorted((folder / "results").glob("*.json"))
        windows = [f for f in files if f.name.startswith("own-windows-")]  # the paired energy windows (#18)
        assert len(files) - len(windows) == \
            len(s.results.task_results(run_id)) + len(s.results.task_results(s.runs.get(run_id)["parent_run_id"]))
        stored = s.results.energy_repeats(run_id)
        for f in windows:
            doc = json.loads(f.read_text())
            assert len([w for w in stored if w["task"] == doc["task"]]) == len(doc["windows"]), f.name


def test_two_slurm_runs_finish_with_all_results_in_the_store(cli_subprocess, slurm_ws, demo_model_dir):
    cli = cli_subprocess  # end to end: runners and jobs are other processes
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    a, _ = _queue(cli, model, "--lora-steps", "2")
    b, _ = _queue(cli, model, "--lora-steps", "2", "--prune-ratio", "0.5")
    wait_for(lambda: _status(ws, a) in FINAL and _status(ws, b) in FINAL, 300, "both Slurm runs to end")
    with _store(ws) as s:
        for run_id in (a, b):
            run = s.runs.get(run_id)
            assert run["status"] == "done", run["error"]
            job = s.jobs.get(run_id)
            assert job["job_id"] and job["finished"] == 1 and job["node"]
            assert [r["task"] for r in s.results.task_results(run_id, "pruned")] == ["boolq"]
            base = s.runs.get(run["parent_run_id"])
            assert base["status"] == "done"
            assert [r["task"] for r in s.results.task_results(base["id"], "vanilla")] == ["boolq"]
            assert run["params_after"] < run["params_before"]
            stages = [e["payload"]["stage"] for e in s.events.list(run_id, kinds=["stage_start"])]
            assert stages == ["load", "baseline", "prune", "lora", "evaluate"]
            assert s.events.power_samples(run_id), "live power of the job reached the store"
            assert {m["name"] for m in s.results.metrics(run_id)} >= {"idle_power_w", "lora_eval_loss"}
            out, err = (ws / f"run-{run_id:05d}" / "slurm").glob(f"{job['job_id']}_0_log.*")
            assert out.exists() and err.exists()
        assert s.runs.get(a)["params_after"] > s.runs.get(b)["params_after"]
    for run_id in (a, b):
        _assert_ingested_once(ws, run_id)
    shown = cli("show", str(a), check=True).stdout
    assert "boolq" in shown


def test_cancel_through_greentui_and_behind_its_back(cli_subprocess, slurm_ws, demo_model_dir):
    """`greentui cancel` → cancelled by the user within 30 s; `scancel` → cancelled outside greentui."""
    cli = cli_subprocess  # end to end: runners and jobs are other processes
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    ours, _ = _queue(cli, model, "--lora-steps", "100000")
    theirs, _ = _queue(cli, model, "--lora-steps", "100000")

    def in_lora(run_id: int) -> bool:
        with _store(ws) as s:
            return s.runs.get(run_id)["stage"] == "lora"
    wait_for(lambda: in_lora(ours) and in_lora(theirs), 240, "both jobs to reach LoRA")
    t0 = time.time()
    assert "cancelling" in cli("cancel", str(ours), check=True).stdout
    with _store(ws) as s:
        job_id = s.jobs.get(theirs)["job_id"]
    subprocess.run(["scancel", job_id], check=True)
    wait_for(lambda: _status(ws, ours) in FINAL, 30, "the cancelled run to end")
    assert time.time() - t0 < 30
    wait_for(lambda: _status(ws, theirs) in FINAL, 30, "the scancelled run to end")
    with _store(ws) as s:
        mine, other = s.runs.get(ours), s.runs.get(theirs)
        assert (mine["status"], mine["error"]) == ("cancelled", "cancelled by the user")
        assert other["status"] == "cancelled" and "cancelled outside greentui" in other["error"]
        assert s.jobs.get(theirs)["state"] == "CANCELLED"
        for run in (mine, other):  # the baseline task finished before the cancel is kept
            assert [r["task"] for r in s.results.task_results(run["parent_run_id"], "vanilla")] == ["boolq"]
            assert s.runs.get(run["parent_run_id"])["status"] in ("done", "cancelled")
    active = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-j", job_id], capture_output=True, text=True)
    assert job_id not in active.stdout


def test_runner_killed_then_restarted_reattaches_and_ingests_once(cli_subprocess, slurm_ws, demo_model_dir):
    cli = cli_subprocess  # end to end: runners and jobs are other processes
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    run_id, pid = _queue(cli, model, "--lora-steps", "20")
    assert pid
    wait_for(lambda: _status(ws, run_id) == "running", 120, "the job to start")
    with _store(ws) as s:
        wait_for(lambda: s.events.list(run_id, kinds=["stage_start"]), 120, "the first events to be ingested")
        job_id = s.jobs.get(run_id)["job_id"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    assert subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip(), \
        "the job goes on without its runner"
    worker = cli("worker", "--executor", "slurm", timeout=600)  # a LoRA step takes seconds on a loaded machine
    assert worker.returncode == 0, worker.stderr[-3000:]
    with _store(ws) as s:
        run = s.runs.get(run_id)
        assert run["status"] == "done", run["error"]
        assert s.jobs.get(run_id)["job_id"] == job_id  # re-attached, not submitted again
        assert s.runs.count() == 2  # the run and its baseline, each once
    named = subprocess.run(["squeue", "-h", "-t", "all", "-n", job_name(ws, run_id), "-o", "%i"],
                           capture_output=True, text=True).stdout.split()
    assert named == [job_id]
    _assert_ingested_once(ws, run_id)


def test_bad_slurm_settings_are_refused_or_fail_with_slurms_reason(cli_subprocess, slurm_ws, demo_model_dir):
    cli = cli_subprocess  # end to end: runners and jobs are other processes
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    bad = cli("queue", model, *QUICK, "--partition", "nosuchpartition")
    assert bad.returncode != 0 and "--partition: no Slurm partition 'nosuchpartition'" in bad.stderr
    assert "debug" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    with _store(ws) as s:
        assert s.runs.count() == 0  # nothing recorded
    run_id, _ = _queue(cli, model, "--gpus", "1")  # the one-node cluster has no GPUs (no GRES)
    wait_for(lambda: _status(ws, run_id) in FINAL, 60, "the refused submission to be recorded")
    with _store(ws) as s:
        run = s.runs.get(run_id)
        assert run["status"] == "failed" and run["error"].startswith("sbatch refused the job: ")
        assert "\n" not in run["error"] and s.jobs.get(run_id)["state"] == "NOT_SUBMITTED"


def test_time_limit_reached_is_interrupted_with_slurms_reason(cli_subprocess, slurm_ws, demo_model_dir):
    """A job still running at its --time-limit: Slurm's TIMEOUT → interrupted, finished tasks kept."""
    cli = cli_subprocess  # end to end: runners and jobs are other processes
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    run_id, _ = _queue(cli, model, "--lora-steps", "100000", "--time-limit", "00:02:00")  # USR2 comes ≥ 30 s in
    wait_for(lambda: _status(ws, run_id) in FINAL, 300, "Slurm to end the job at its time limit")
    with _store(ws) as s:
        run = s.runs.get(run_id)
        assert run["status"] == "interrupted", run["error"]
        assert "time limit was reached" in run["error"] and s.jobs.get(run_id)["state"] == "TIMEOUT"
        assert [r["task"] for r in s.results.task_results(run["parent_run_id"], "vanilla")] == ["boolq"]


def _other_jobs(ws: Path) -> list[str]:
    """Jobs on this cluster that are not this workspace's (another engineer's, another test run's)."""
    tag = job_name(ws, 0).rsplit("-run", 1)[0] + "-run"
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if not line.split()[1:2] or not line.split()[1].startswith(tag)]


def _node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]


def _node_up(node: str, timeout: float = 300) -> None:
    """Resume ``node`` and wait until Slurm schedules on it again (a node set down comes back when its
    slurmd registers: up to a few minutes)."""
    end = time.time() + timeout
    while time.time() < end:
        state = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state.rstrip("*") in ("idle", "mixed", "allocated", "completing"):
            return
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
        time.sleep(2)
    raise AssertionError(f"node {node} did not come back ({state})")


@pytest.mark.timeout(1800)  # a node set down comes back in minutes; the job runs twice
def test_a_node_failure_is_a_requeue_and_the_job_resumes(cli_subprocess, slurm_ws, demo_model_dir):
    """The job's node is set down once its baseline is done: Slurm requeues the job; greentui shows the
    run queued with Slurm's reason, says what happened, never "cancelled by the user"; when the node is back the job
    resumes in its run folder (the baseline evaluated before the failure is kept) and ends done."""
    cli = cli_subprocess
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    run_id, _ = _queue(cli, model, "--tasks", "boolq,piqa", "--lora-steps", "40")

    def stage() -> tuple[str, str]:
        with _store(ws) as s:
            run = s.runs.get(run_id)
            return run["status"], run["stage"] or ""

    def baseline_done() -> bool:
        with _store(ws) as s:
            base = s.runs.get(run_id)["parent_run_id"]
            return bool(base) and len(s.results.task_results(base, "vanilla")) == 2
    wait_for(lambda: baseline_done() and stage() in (("running", "prune"), ("running", "lora")), 600,
             "the job to finish its baseline and prune")
    with _store(ws) as s:
        job_id = s.jobs.get(run_id)["job_id"]
    node = _node()
    if _other_jobs(ws):  # the one node is shared: never take it down under someone else's jobs
        pytest.skip(f"other jobs run on this cluster ({', '.join(_other_jobs(ws))}); not setting its node down")
    try:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=greentui-test"], check=True)
        wait_for(lambda: stage()[0] == "queued", 60, "the requeued run to show as queued")
        status, where = stage()
        assert where.startswith("requeued"), where
        with _store(ws) as s:
            job = s.jobs.get(run_id)
            assert job["restarts"] >= 1 and job["state"] == "PENDING" and job["finished"] == 0
    finally:
        _node_up(node)
    # Slurm holds a requeued job back for ~2 minutes (BeginTime) while the killed attempt's processes end
    # on the node; releasing it earlier launches a second copy ("Duplicate jobid") and drains the node
    wait_for(lambda: _status(ws, run_id) in FINAL, 900, "the resumed job to end")
    with _store(ws) as s:
        run = s.runs.get(run_id)
        assert (run["status"], run["error"]) == ("done", None)
        assert s.jobs.get(run_id)["job_id"] == job_id  # the same job, restarted by Slurm
        base = s.runs.get(run["parent_run_id"])
        assert base["status"] == "done" and s.runs.count() == 2
        assert sorted(r["task"] for r in s.results.task_results(base["id"], "vanilla")) == ["boolq", "piqa"]
        assert sorted(r["task"] for r in s.results.task_results(run_id, "pruned")) == ["boolq", "piqa"]
        events = s.events.list(run_id, limit=100_000)
        text = [json.dumps(e["payload"]) for e in events]
        assert not [t for t in text if "cancelled by the user" in t]
        assert [e["kind"] for e in events].count("done") == 1 and not [e for e in events if e["kind"] == "error"]
        lines = [e["payload"].get("line", "") for e in events if e["kind"] == "log"]
        assert any(f"Slurm job {job_id} on {node} was requeued after a node failure" in x for x in lines)
        assert any("reusing the vanilla baseline of this job's attempt before the restart" in x for x in lines)
    _assert_ingested_once(ws, run_id)


def test_cancel_while_the_controller_does_not_answer(cli_subprocess, slurm_ws, demo_model_dir, tmp_path):
    """`greentui cancel` that cannot reach slurmctld: one line, non-zero exit, the cancel stays recorded;
    the Slurm runner delivers it once the controller answers, and the run ends cancelled by the user."""
    cli = cli_subprocess
    ws, model = slurm_ws, str(demo_model_dir("llama"))
    run_id, _ = _queue(cli, model, "--lora-steps", "100000")
    wait_for(lambda: _status(ws, run_id) == "running", 240, "the job to start")
    # this command's Slurm client talks to a port where no controller listens (the cluster stays up)
    conf = Path("/etc/slurm/slurm.conf").read_text()
    bad = tmp_path / "slurm.conf"
    bad.write_text(conf.replace("SlurmctldHost=", "SlurmctldPort=6999\nSlurmctldHost=", 1))
    down = cli("cancel", str(run_id), env={"SLURM_CONF": str(bad)}, timeout=120)
    assert down.returncode != 0
    assert len(down.stderr.strip().splitlines()) == 1 and "did not reach Slurm" in down.stderr
    assert "Unable to contact slurm controller" in down.stderr
    with _store(ws) as s:
        assert s.jobs.get(run_id)["cancel_requested"] == 1  # recorded, for the runner to deliver
    wait_for(lambda: _status(ws, run_id) in FINAL, 60, "the runner to deliver the cancel")
    with _store(ws) as s:
        run = s.runs.get(run_id)
        assert (run["status"], run["error"]) == ("cancelled", "cancelled by the user")
        assert s.jobs.get(run_id)["cancel_sent"] is not None
        lines = [e["payload"].get("line", "") for e in s.events.list(run_id, kinds=["log"])]
        assert any("cancel delivered to slurm job" in x for x in lines)
    again = cli("cancel", str(run_id))  # now it is known to have landed
    assert again.returncode == 0 and f"run {run_id}: cancelled" in again.stdout
