"""The Slurm executor's parts that need no cluster: state mapping, settings, file sink and ingester.

The ingester is tested against a real SQLite store and real files written by ``FileRecorder`` (the
class the compute-node job uses), including a line still being written and a pass repeated after a
crash, which must neither lose nor double a record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.errors import GreentuiError
from backend.execution.executors.slurm import map_state
from backend.execution.ingest import Ingester, read_status
from backend.execution.sinks import BASELINE_PLACEHOLDER, FileRecorder
from backend.schema.runconfig import RunConfig
from backend.store import Store


# ------------------------------------------------------------------------------ state mapping
@pytest.mark.parametrize("state, reason, job_status, cancel, expect, final, words", [
    ("PENDING", "Resources", None, False, "queued", False, None),
    ("CONFIGURING", None, None, False, "queued", False, None),
    ("REQUEUED", None, None, False, "queued", False, None),
    ("RUNNING", "None", None, False, "running", False, None),
    ("COMPLETING", "None", None, False, "running", False, None),
    ("SUSPENDED", None, None, False, "running", False, None),
    ("COMPLETED", "None", {"status": "done", "error": None}, False, "done", True, None),
    ("COMPLETED", "None", {"status": "failed", "error": "OSError: disk full"}, False, "failed", True, "disk full"),
    ("COMPLETED", "None", {"status": "interrupted", "error": "stopped by Slurm (SIGUSR2)"}, False,
     "interrupted", True, "SIGUSR2"),
    ("COMPLETED", "None", None, False, "failed", True, "without writing its final status"),
    ("FAILED", "NonZeroExitCode", None, False, "failed", True, "FAILED (NonZeroExitCode)"),
    ("OUT_OF_MEMORY", "OutOfMemory", None, False, "failed", True, "OUT_OF_MEMORY"),
    ("BOOT_FAIL", None, None, False, "failed", True, "BOOT_FAIL"),
    ("DEADLINE", None, None, False, "failed", True, "DEADLINE"),
    ("CANCELLED", "None", None, True, "cancelled", True, "cancelled by the user"),
    ("CANCELLED by 0", None, None, False, "cancelled", True, "outside greentui"),
    ("CANCELLED", "None", {"status": "cancelled", "error": "x"}, False, "cancelled", True, "outside greentui"),
    ("TIMEOUT", "TimeLimit", None, False, "interrupted", True, "time limit"),
    ("NODE_FAIL", None, None, False, "interrupted", True, "node failed"),
    ("PREEMPTED", None, None, False, "interrupted", True, "preempted"),
    (None, None, {"status": "done"}, False, "done", True, None),      # purged from Slurm, status file says
    (None, None, None, False, "interrupted", True, "no longer knows"),
])
def test_every_slurm_state_maps_to_a_run_status(state, reason, job_status, cancel, expect, final, words):
    out = map_state(state, reason, job_status=job_status, cancel_requested=cancel, job_id="42")
    assert (out.status, out.final) == (expect, final)
    if words:
        assert words in out.error
    elif final and expect == "done":
        assert out.error is None


# ------------------------------------------------------------------------------ settings
def test_executor_settings_are_validated_with_the_flag_named():
    ok = RunConfig(model="m", executor="slurm", partition="gpu", gpus=2, time_limit="01:30:00",
                   slurm_arg=["account=proj", "qos=normal"])
    assert ok.problems() == {}
    assert RunConfig(model="m", executor="slurm", time_limit="2-00:00:00").problems() == {}
    cases = {
        "executor": RunConfig(model="m", executor="k8s"),
        "time_limit": RunConfig(model="m", executor="slurm", time_limit="90 minutes"),
        "slurm_arg": RunConfig(model="m", executor="slurm", slurm_arg=["account"]),
        "gpus": RunConfig(model="m", executor="slurm", gpus=-1),
    }
    for field, cfg in cases.items():
        assert field in cfg.problems(), field
    with pytest.raises(GreentuiError, match="--slurm-arg: Slurm option output is set by greentui"):
        RunConfig(model="m", executor="slurm", slurm_arg=["output=/tmp/x"]).validate()
    with pytest.raises(GreentuiError, match="--partition needs --executor slurm"):
        RunConfig(model="m", partition="gpu").validate()
    with pytest.raises(GreentuiError, match="--partition, --time-limit need --executor slurm"):
        RunConfig(model="m", partition="gpu", time_limit="01:00:00").validate()


def test_workspace_defaults_from_greentui_toml(tmp_path):
    from backend.cli.commands.run_options import apply_workspace_defaults
    (tmp_path / "greentui.toml").write_text(
        '[slurm]\npartition = "gpu"\ngpus = 1\ntime_limit = "04:00:00"\n[slurm.args]\naccount = "proj"\nqos = "low"\n')
    cfg = apply_workspace_defaults(RunConfig(model="m", executor="slurm", slurm_arg=["qos=high"]), tmp_path)
    assert (cfg.partition, cfg.gpus, cfg.time_limit) == ("gpu", 1, "04:00:00")
    assert sorted(cfg.slurm_arg) == ["account=proj", "qos=high"]  # the command line wins
    local = apply_workspace_defaults(RunConfig(model="m"), tmp_path)
    assert local.partition is None  # a local run takes nothing from [slurm]
    (tmp_path / "greentui.toml").write_text("[slurm]\npartitoin = 'x'\n")
    with pytest.raises(GreentuiError, match="unknown key slurm.partitoin"):
        apply_workspace_defaults(RunConfig(model="m", executor="slurm"), tmp_path)
    (tmp_path / "greentui.toml").write_text("[slurm\n")
    with pytest.raises(GreentuiError, match="greentui.toml"):
        apply_workspace_defaults(RunConfig(model="m", executor="slurm"), tmp_path)


# ------------------------------------------------------------------------------ sink + ingester
def _slurm_run(tmp_path: Path) -> tuple[Store, int, Path, FileRecorder]:
    store = Store(tmp_path / "greentui.db")
    model = store.models.upsert("/models/tiny", name="tiny")
    cfg = RunConfig(model="/models/tiny", executor="slurm", tasks=["boolq", "piqa"])
    run_id = store.runs.create(model, "experiment", cfg.to_dict())
    store.jobs.claim_submissions("slurm", lambda rid: f"greentui-test-run{rid}")
    store.jobs.update(run_id, job_id="99", state="RUNNING")
    folder = tmp_path / f"run-{run_id:05d}"
    rec = FileRecorder(folder, {"run": store.runs.get(run_id), "model": store.models.get(model), "baselines": {}})
    return store, run_id, folder, rec


def _result(task: str, acc: float) -> dict:
    return {"task": task, "acc": acc, "acc_stderr": 0.1, "n_samples": 2, "seconds": 0.5, "tokens": 10,
            "energy_kwh": 1e-6, "meter": "codecarbon:test", "provenance": {"device": "cpu"}}


def test_ingest_copies_every_record_once_and_maps_the_baseline(tmp_path):
    from backend.execution.events import EventSink
    store, run_id, folder, rec = _slurm_run(tmp_path)
    sink = EventSink(rec, run_id, folder)
    sink.emit("stage_start", stage="load", index=0, total=5)
    rec.update_run(run_id, stage="load", params_before=1000)
    rec.save_metric(run_id, "run", "idle_power_w", 10.0, {"source": "test"})
    base = rec.create_run(1, "baseline", {"model": "/models/tiny", "no_prune": True, "executor": "slurm"},
                          status="running", device="cpu", baseline_key="k", label=f"baseline for run {run_id}")
    assert base == BASELINE_PLACEHOLDER
    rec.update_run(run_id, parent_run_id=base)
    rec.save_task_result(base, "vanilla", "boolq", _result("boolq", 0.5))
    rec.add_power_sample_now(1.0, 12.5, "test", None)
    rec.save_efficiency(run_id, "pruned", [{"batch_size": 1, "seq_len": 8}])
    ing = Ingester(store, run_id, folder)
    first = ing.ingest()
    assert (first.events, first.results, first.power) == (1, 1, 1)
    base_id = store.jobs.get(run_id)["baseline_run_id"]
    assert base_id and store.runs.get(base_id)["kind"] == "baseline"
    assert store.runs.get(run_id)["parent_run_id"] == base_id
    assert store.runs.get(run_id)["params_before"] == 1000
    assert [r["task"] for r in store.results.task_results(base_id, "vanilla")] == ["boolq"]
    assert store.results.metrics(run_id)[0]["name"] == "idle_power_w"
    assert [r["batch_size"] for r in store.results.efficiency(run_id)] == [1]

    # a line being written when the ingester reads is left for the next pass
    with (folder / "events.jsonl").open("a") as fh:
        fh.write('{"t": 2.0, "kind": "log", "line": "half')
    assert ing.ingest().total == 0
    with (folder / "events.jsonl").open("a") as fh:
        fh.write(' a line"}\n')
    rec.save_task_result(run_id, "pruned", "boolq", _result("boolq", 0.25))
    rec.finish_run(base, "done")
    rec.finish_run(run_id, "done")
    second = ing.ingest()
    assert (second.events, second.results) == (1, 1)
    assert store.runs.get(base_id)["status"] == "done"
    assert store.runs.get(run_id)["status"] == "queued"  # the job's own end is the executor's to decide
    assert read_status(folder)["status"] == "done"

    # again, and from a fresh ingester (a restarted runner): nothing is copied twice
    assert ing.ingest().total == 0
    assert Ingester(store, run_id, folder).ingest().total == 0
    assert [e["payload"].get("line") for e in store.events.list(run_id, kinds=["log"])] == ["half a line"]
    assert len(store.events.power_samples(run_id)) == 1
    assert len(store.results.task_results(run_id)) == 1 and len(store.results.task_results(base_id)) == 1
    assert store.runs.count() == 2


def test_apply_ingest_refuses_a_stale_offset(tmp_path):
    store, run_id, folder, rec = _slurm_run(tmp_path)
    assert store.ingest.apply(run_id, "events.jsonl", 0, 10, events=[
        {"run_id": run_id, "t": 1.0, "kind": "log", "payload": {"line": "a"}}])
    # a second ingester that read from offset 0 too must not add its copy
    assert not store.ingest.apply(run_id, "events.jsonl", 0, 10, events=[
        {"run_id": run_id, "t": 1.0, "kind": "log", "payload": {"line": "a"}}])
    assert len(store.events.list(run_id)) == 1 and store.ingest.offset(run_id, "events.jsonl") == 10


def test_local_runners_never_claim_slurm_runs(tmp_path):
    store = Store(tmp_path / "greentui.db")
    model = store.models.upsert("/models/tiny")
    slurm = store.runs.create(model, "experiment", RunConfig(model="m", executor="slurm").to_dict())
    local = store.runs.create(model, "experiment", RunConfig(model="m").to_dict())
    from backend.execution.devices import cpu_devices
    from backend.execution.executors import executor
    from backend.execution.executors.local import LocalDispatcher
    from backend.execution.executors.slurm import SlurmDispatcher
    here = LocalDispatcher(tmp_path, cpu_devices(1), runner_id=1)
    queued = store.queue.candidates()
    assert [r["id"] for r in queued if here.wants(r)] == [local]
    assert [r["id"] for r in queued if SlurmDispatcher(executor("slurm"), tmp_path).wants(r)] == [slurm]
    assert store.queue.claim(local, runner_id=1, executor="local", device="cpu")
    store.runs.finish(local, "done")
    [job] = store.jobs.claim_submissions("slurm", lambda rid: f"n{rid}")
    assert job["run_id"] == slurm and store.jobs.claim_submissions("slurm", lambda rid: "x") == []  # reserved once
    with pytest.raises(GreentuiError, match="has an open slurm job; cancel it before deleting"):
        store.runs.delete([slurm])  # queued, but its job exists: deleting would orphan it
    store.runs.mark_started(slurm)
    assert store.runs.running() == []  # a Slurm run is never judged by a local pid
    json.dumps(store.jobs.open())


# ------------------------------------------------------------------------------ Run detail
@pytest.mark.slow
async def test_run_detail_tails_the_slurm_jobs_stdout_and_stderr(tmp_path):
    """A Slurm run's detail shows the job id, state and node, and follows the job's log files; a local
    run's detail has no such pane."""
    from greentui.app import GreentuiApp
    from greentui.screens.run_detail import RunDetailScreen
    from greentui.widgets.job_log import JobLog

    store, run_id, folder, _ = _slurm_run(tmp_path)
    local = store.runs.create(store.models.upsert("/m"), "experiment", RunConfig(model="/m").to_dict())
    store.jobs.update(run_id, job_id="4242", state="RUNNING", node="gpu-node-7")
    store.runs.mark_started(run_id)
    logs = folder / "slurm"
    logs.mkdir(parents=True)
    (logs / "4242_0_log.out").write_text("submitit INFO starting\n")
    (logs / "4242_0_log.err").write_text("warning from the node\npartial")
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_run(run_id)
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        pane = screen.query_one("#job-log", JobLog)
        text = lambda: "\n".join(str(line.text) for line in pane.lines)  # noqa: E731
        assert pane.display
        assert "out│ submitit INFO starting" in text() and "err│ warning from the node" in text()
        assert "partial" not in text()  # a line still being written waits
        title = str(screen.query_one("#run-title").render())
        assert "Slurm job 4242 RUNNING on gpu-node-7" in title
        with (logs / "4242_0_log.err").open("a") as fh:
            fh.write(" line done\n")
        await pilot.pause(1.2)
        assert "err│ partial line done" in text()
        await pilot.press("escape")
        app.open_run(local)
        await pilot.pause(0.3)
        assert not app.screen.query_one("#job-log").display
    store.close()



@pytest.mark.slow
async def test_new_run_form_queues_a_slurm_run_with_workspace_defaults(tmp_path, demo_model_dir):
    """The form's Executor fields: Slurm's refusal lands under its field, greentui.toml fills the rest."""
    from textual.widgets import Input, Label, Select

    from backend.execution.executors.slurm import slurm_available
    from greentui.app import GreentuiApp
    from greentui.screens.new_run import NewRunScreen

    (tmp_path / "greentui.toml").write_text('[slurm]\ntime_limit = "00:30:00"\n[slurm.args]\nqos = "low"\n')
    model = str(demo_model_dir("llama"))
    no_slurm = slurm_available()
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        await screen.open_fold("executor")  # the executor group is folded until opened
        screen.query_one("#f-model", Input).value = model
        screen.query_one("#f-executor", Select).value = "slurm"
        screen.query_one("#f-partition", Input).value = "nosuchpartition"
        # the study's ignore 4/4 leaves no prunable layer of this 6-layer model (the form says so first)
        screen.query_one("#f-ignore_first", Input).value = "1"
        screen.query_one("#f-ignore_last", Input).value = "1"
        await pilot.pause()

        async def queue() -> None:
            screen.query_one("#f-model", Input).focus()
            await pilot.press("ctrl+s")  # Enter only moves to the next field; ctrl+s queues
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
            await pilot.pause()

        await queue()
        assert app.store.runs.count() == 0
        field = "executor" if no_slurm else "partition"
        label = screen.query_one(f"#err-{field}", Label)
        assert label.display and ("no Slurm partition 'nosuchpartition'" in str(label.render()) or no_slurm)
        if no_slurm:
            return
        screen.query_one("#f-partition", Input).value = "debug"
        await pilot.pause()
        await queue()
        run = app.store.runs.list(limit=1)[0]
        cfg = app.store.runs.get(run["id"])["config"]
        assert run["status"] == "queued" and cfg["executor"] == "slurm" and cfg["partition"] == "debug"
        assert cfg["time_limit"] == "00:30:00" and cfg["slurm_arg"] == ["qos=low"]
