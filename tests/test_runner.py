"""The detached runner: one per device (flock), cancel = SIGTERM to the current run only."""

from __future__ import annotations

import fcntl
import os

import pytest

from backend.store import Store
from backend.supervisor import lock_path, runner_pid, wait_for_runner_exit
from backend.tasks.registry import bundled_data_dir
from backend.worker import run_worker

from .conftest import wait_for

DATA = str(bundled_data_dir())


def test_a_second_runner_for_the_same_device_does_nothing(workspace):
    store = Store(workspace / "greentui.db")
    run = store.create_run(None, "baseline", {"model": "x"})
    with lock_path(workspace, "cpu").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(str(os.getpid()))
        held.flush()
        assert runner_pid(workspace, "cpu") == os.getpid()
        assert run_worker(workspace, "cpu") == 0  # refused: the device already has a runner
        assert store.get_run(run)["status"] == "queued"
    assert runner_pid(workspace, "cpu") is None  # the lock died with its holder


@pytest.mark.slow
def test_cancel_stops_only_the_current_run_and_the_queue_goes_on(cli_subprocess, workspace, demo_model_dir):
    """A real detached runner, two five-task runs (slow: ~1 min on 2 cores)."""
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    args = ["--no-prune", "--tasks", "boolq,piqa,arc_easy,hellaswag,winogrande", "--limit", "6",
            "--data-dir", DATA, "--ppl-limit", "0", "--device", "cpu"]
    first = int(cli("queue", model, *args, check=True).stdout.strip().splitlines()[-1])
    second = int(cli("queue", model, *args, "--no-start", check=True).stdout.strip().splitlines()[-1])
    store = Store(workspace / "greentui.db")
    wait_for(lambda: store.task_results(first), 300, "a first task of the first run")
    proc = cli("cancel", str(first), check=True)
    assert "cancelling" in proc.stdout
    wait_for(lambda: store.get_run(first)["status"] == "cancelled", 120, "the cancellation")
    wait_for(lambda: store.get_run(second)["status"] in ("done", "failed"), 600, "the second run")
    assert store.get_run(second)["status"] == "done", store.get_run(second)["error"]
    rows = store.task_results(first)
    assert 1 <= len(rows) < 5 and all(r["acc"] is not None and r["energy_kwh"] for r in rows)
    assert len(store.task_results(second)) == 5
    assert not store.queue_paused()  # a cancel is not a crash
    assert wait_for_runner_exit(workspace, "auto", timeout=60)  # `queue` starts the auto runner
    assert "cancelled by the user" in (store.get_run(first)["error"] or "")
