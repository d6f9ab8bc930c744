"""Issue #20's acceptance, end to end (slow tier): a 2×2 study on a tiny model runs locally and on
the real one-node Slurm cluster — on Slurm as ONE job array (squeue/scontrol say so) —, every cell
ends done with the shared baseline reused, and running the study again queues nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backend.schema.tasks import bundled_data_dir
from backend.store import Store

from .conftest import wait_for
from .test_slurm import slurm, slurm_ws  # noqa: F401  (fixtures: the one-node cluster, a workspace it cleans)

pytestmark = pytest.mark.slow

FINAL = ("done", "failed", "cancelled", "interrupted")


def study_file(tmp_path, model: str, name: str, extra: str = "") -> str:
    f = tmp_path / f"{name}.toml"
    f.write_text(f'[study]\nname = "{name}"\nmodels = ["{model}"]\n[grid]\nimportance = ["taylor", "l1"]\n'
                 f'prune_ratio = ["1/7", "2/7"]\n[run]\ntasks = ["boolq"]\nlimit = 2\n'
                 f'data_dir = "{bundled_data_dir()}"\nppl_limit = 0\nlora_steps = 2\nlora_batch_size = 2\n'
                 f'calib_samples = 2\nignore_first = 1\nignore_last = 1\n{extra}')
    return str(f)


def _cells(ws, name):
    with Store(ws / "greentui.db") as s:
        study = s.studies.require(name)
        return s.studies.cells(study["id"])


def _check_answer(ws, name):
    with Store(ws / "greentui.db") as s:
        cells = s.studies.cells(s.studies.require(name)["id"])
        base = next(c for c in cells if c["baseline"])
        for c in cells:
            assert c["status"] == "done", c
            if not c["baseline"]:
                run = s.runs.get(c["run_id"])
                assert run["parent_run_id"] == base["run_id"], "the cell reused the shared baseline"
                metrics = {m["name"] for m in s.results.metrics(c["run_id"])}
                assert {"prune_energy_kwh", "lora_energy_kwh"} <= metrics
        baselines = s.conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'baseline'").fetchone()[0]
        assert baselines == 1, "one vanilla baseline for the model's four cells"


def test_a_2x2_study_runs_locally_and_a_second_run_queues_nothing(cli_subprocess, workspace, demo_model_dir,
                                                                 tmp_path):
    cli = cli_subprocess
    path = study_file(tmp_path, str(demo_model_dir("llama")), "local2x2")
    proc = cli("study", "run", path)
    assert proc.returncode == 0, proc.stderr
    assert "queued 5 run(s)" in proc.stdout
    wait_for(lambda: all(c["status"] in FINAL for c in _cells(workspace, "local2x2")), 900, "every cell to end")
    _check_answer(workspace, "local2x2")
    again = cli("study", "run", path)
    assert again.returncode == 0 and "nothing to queue (5 done)" in again.stdout
    shown = json.loads(cli("study", "show", "local2x2", "--json").stdout)
    assert shown["cells_done"] == 5 and shown["models"][0]["cells"][0]["cost"]["cost_wh"] is not None


def test_a_2x2_study_on_slurm_is_one_job_array(cli_subprocess, slurm_ws, demo_model_dir, tmp_path):  # noqa: F811
    cli, ws = cli_subprocess, slurm_ws
    path = study_file(tmp_path, str(demo_model_dir("llama")), "slurm2x2",
                      extra='executor = "slurm"\ntime_limit = "00:30:00"\n')
    proc = cli("study", "run", path, "--array-parallelism", "2")
    assert proc.returncode == 0, proc.stderr
    assert "queued 5 run(s)" in proc.stdout and "one job array" in proc.stdout

    def submitted():
        with Store(ws / "greentui.db") as s:
            jobs = [s.jobs.get(c["run_id"]) for c in _cells(ws, "slurm2x2")]
        return jobs if all(j and j["job_id"] for j in jobs) else None
    jobs = wait_for(submitted, 120, "the study's array to be submitted")
    arrays = {j["submission"] for j in jobs}
    assert len(arrays) == 1, f"one job array, got {arrays}"
    array = arrays.pop()
    assert sorted(j["job_id"] for j in jobs) == [f"{array}_{i}" for i in range(5)]
    info = subprocess.run(["scontrol", "show", "job", array], capture_output=True, text=True).stdout
    assert f"ArrayJobId={array}" in info and "ArrayTaskId=" in info
    assert "ArrayTaskThrottle=2" in info
    wait_for(lambda: all(c["status"] in FINAL for c in _cells(ws, "slurm2x2")), 1200, "every array task to end")
    _check_answer(ws, "slurm2x2")
    again = cli("study", "run", path)
    assert again.returncode == 0 and "nothing to queue (5 done)" in again.stdout


def test_an_array_task_signalled_before_its_limit_is_requeued_and_resumes(  # noqa: F811
        cli_subprocess, slurm_ws, demo_model_dir, tmp_path):  # noqa: F811
    """Slurm signals a task (SIGUSR2) before its time limit: submitit requeues it (``scontrol requeue``)
    and the run resumes in its folder, keeping what it finished; here the signal is sent by hand at the
    evaluation, as Slurm would send it ``signal_delay_s`` before the limit."""
    cli, ws = cli_subprocess, slurm_ws
    f = Path(study_file(tmp_path, str(demo_model_dir("llama")), "one",
                        extra='executor = "slurm"\ntime_limit = "00:30:00"\n'))
    f.write_text(f.read_text().replace('importance = ["taylor", "l1"]\nprune_ratio = ["1/7", "2/7"]\n',
                                       'importance = ["taylor"]\n')
                 .replace('tasks = ["boolq"]', 'tasks = ["boolq", "piqa", "arc_easy"]'))
    assert cli("study", "run", str(f)).returncode == 0

    def evaluating():
        with Store(ws / "greentui.db") as s:
            cell = next(c for c in _cells(ws, "one") if not c["baseline"])
            job = s.jobs.get(cell["run_id"]) if cell["run_id"] else None
            started = [e for e in s.events.list(cell["run_id"], kinds=["stage_start"])] if cell["run_id"] else []
            if job and job["job_id"] and any(e["payload"]["stage"] == "evaluate" for e in started):
                return cell["run_id"], job["job_id"]
        return None
    run_id, task = wait_for(evaluating, 900, "the cell's task to evaluate")
    subprocess.run(["scancel", "--signal=USR2", task], check=True, capture_output=True)
    wait_for(lambda: all(c["status"] in FINAL for c in _cells(ws, "one")), 1200, "the requeued task to end")
    with Store(ws / "greentui.db") as s:
        assert s.runs.get(run_id)["status"] == "done", s.runs.get(run_id)["error"]
        lines = [e["payload"].get("line", "") for e in s.events.list(run_id, kinds=["log"])]
        assert any("requeued to resume in this run folder" in line for line in lines), lines
        assert s.jobs.get(run_id)["restarts"] >= 1
        assert any("loading it from model/ instead of pruning again" in line for line in lines)
        assert sorted(r["task"] for r in s.results.task_results(run_id, "pruned")) == ["arc_easy", "boolq", "piqa"]
