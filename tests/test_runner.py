"""The runner and its control plane: device slots, registry/heartbeat, the cancel flag.

Real processes, real SQLite and tiny models built locally; heavy cases are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from backend.errors import GreentuiError
from backend.execution.control import process_start_time, same_process
from backend.execution.devices import acquire, cuda_devices, resolve_devices
from backend.execution.supervisor import (
    cancel_run,
    live_runners,
    recover_stale_runs,
    runner_alive,
    runner_pid,
    wait_for_runner_exit,
)
from backend.schema.tasks import bundled_data_dir
from backend.store import Store
from backend.workspace import PACKAGE_DATA

from .conftest import ROOT, wait_for

DATA = str(bundled_data_dir())

TINY = ["--no-prune", "--tasks", "boolq", "--limit", "2", "--data-dir", DATA, "--ppl-limit", "0",
        "--no-energy", "--device", "cpu"]


def _queue(cli, model: str, *args: str) -> int:
    return int(cli("queue", model, *args, "--no-start", check=True).stdout.strip().splitlines()[-1])


def _span(store: Store, run_id: int) -> tuple[float, float]:
    """When the run's own process worked on it: its first event to its ``done`` event."""
    events = store.events.list(run_id)
    done = [e["t"] for e in events if e["kind"] == "done"]
    assert done, f"run {run_id} has no done event"
    return events[0]["t"], done[-1]


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "backend", "worker", *args], cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ------------------------------------------------------------------------------------ fast, no model

@pytest.mark.skipif(bool(cuda_devices()), reason="this machine has a GPU: auto resolves to it")
def test_auto_and_cpu_name_the_same_lock_and_a_held_device_is_refused(workspace):
    auto, cpu = resolve_devices("auto"), resolve_devices("cpu")
    assert [d.key for d in auto] == [d.key for d in cpu] == ["cpu-0"]  # one lock per physical device
    assert [d.key for d in resolve_devices("cpu", cpu_slots=3)] == ["cpu-0", "cpu-1", "cpu-2"]
    held = acquire(workspace, auto)
    assert held is not None and acquire(workspace, cpu) is None
    held.release()
    assert acquire(workspace, cpu) is not None
    with pytest.raises(GreentuiError, match="no CUDA device"):
        resolve_devices("cuda")
    with pytest.raises(GreentuiError, match="unknown device 'tpu'"):
        resolve_devices("tpu")


def test_a_foreground_run_refuses_a_busy_device_and_records_nothing(cli, workspace):
    held = acquire(workspace, resolve_devices("cpu"))
    held.note(run=99, pid=os.getpid())
    try:
        # the inputs are checked first (a wait for the device must not end in a refusal they could give)
        proc = cli("run", str(PACKAGE_DATA / "demo-model"), *TINY)
    finally:
        held.release()
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "device is busy" in proc.stderr and "run 99" in proc.stderr and "--wait" in proc.stderr
    assert Store(workspace / "greentui.db").runs.count() == 0


def test_a_runner_or_run_whose_pid_was_reused_is_dead(workspace):
    store = Store(workspace / "greentui.db")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = process_start_time(sleeper.pid)
        host = socket.gethostname()
        honest = store.runners.register(host, sleeper.pid, real, requested="cpu", devices=["cpu"],
                                       executors=["local"])
        # the same pid, but the recorded process started 100 s earlier: the pid was reused
        reused = store.runners.register(host, sleeper.pid, real - 100, requested="auto", devices=["cpu"],
                                       executors=["local"])
        assert runner_alive(store.runners.get(honest)) and not runner_alive(store.runners.get(reused))
        assert [r["id"] for r in live_runners(store)] == [honest]
        assert store.runners.get(reused)["stopped_at"] is not None  # closed on the way
        assert runner_pid(workspace, "auto", store) is None
        assert runner_pid(workspace, "cpu", store) == runner_pid(workspace, None, store) == sleeper.pid
        # a silent heartbeat is death too, even with the right identity
        store.conn.execute("UPDATE runners SET heartbeat_at = heartbeat_at - 3600 WHERE id = ?", (honest,))
        assert not runner_alive(store.runners.get(honest))

        ok = store.runs.create(None, "baseline", {}, status="running", pid=sleeper.pid)
        store.runs.update(ok, pid_start=real)
        bad = store.runs.create(None, "baseline", {}, status="running", pid=sleeper.pid)
        store.runs.update(bad, pid_start=real - 100)
        assert same_process(sleeper.pid, real) and not same_process(sleeper.pid, real - 100)
        assert recover_stale_runs(store) == [bad]
        assert store.runs.get(bad)["status"] == "interrupted" and store.queue.paused()
        assert store.runs.get(ok)["status"] == "running"
        # a cancel of a run whose process is gone marks it interrupted instead of signalling anyone
        store.runs.update(ok, pid_start=real + 100)
        assert cancel_run(store, ok) == "interrupted"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cancel_is_a_flag_on_the_run_and_a_late_cancel_is_refused(workspace):
    store = Store(workspace / "greentui.db")
    first = store.runs.create(None, "baseline", {})
    second = store.runs.create(None, "baseline", {})
    assert store.queue.claim(first, runner_id=None, executor="local", device="cpu")
    store.runs.update(first, pid=os.getpid(), pid_start=process_start_time())
    assert cancel_run(store, first) == "cancelling"
    assert store.queue.cancel_flag([first]) is not None and store.queue.cancel_flag([second]) is None
    store.runs.finish(first, "done")  # the run ended before it saw the flag
    assert store.queue.claim(second, runner_id=None, executor="local", device="cpu")
    with pytest.raises(GreentuiError, match=f"run {first} is done"):
        cancel_run(store, first)
    assert store.queue.cancel_flag([second]) is None  # the next run on the slot is untouched


# ------------------------------------------------------------------------------ real runs (tiny model)

@pytest.mark.slow
def test_cancel_stops_a_running_run_within_seconds_and_the_queue_goes_on(cli_subprocess, workspace, demo_model_dir):
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    # enough work that the run cannot finish while `greentui cancel` starts (~2 s) on a quiet machine:
    # seven tasks of 50 items (limit 6 on five tasks ended `done` before the cancel landed)
    args = ["--no-prune", "--tasks", "all", "--limit", "50",
            "--data-dir", DATA, "--ppl-limit", "0", "--device", "cpu"]
    first = int(cli("queue", model, *args, check=True).stdout.strip().splitlines()[-1])
    second = _queue(cli, model, *TINY)
    store = Store(workspace / "greentui.db")
    wait_for(lambda: store.results.task_results(first), 300, "a first task of the first run")
    asked = time.time()
    proc = cli("cancel", str(first), check=True)
    assert "cancelling" in proc.stdout
    wait_for(lambda: store.runs.get(first)["status"] != "running", 60, "the cancellation")
    run = store.runs.get(first)
    assert run["status"] == "cancelled" and "cancelled by the user" in run["error"]
    assert run["finished_at"] - asked < 10  # the flag, not a signal after the 20 s grace period
    wait_for(lambda: store.runs.get(second)["status"] in ("done", "failed"), 600, "the second run")
    assert store.runs.get(second)["status"] == "done", store.runs.get(second)["error"]
    rows = store.results.task_results(first)
    assert 1 <= len(rows) < 7 and all(r["acc"] is not None and r["energy_kwh"] for r in rows)
    assert not store.queue.paused()  # a cancel is not a crash
    assert wait_for_runner_exit(workspace, timeout=60)


@pytest.mark.slow
def test_two_cpu_slots_run_two_runs_at_once_with_a_note(cli_subprocess, workspace, demo_model_dir):
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    a, b = _queue(cli, model, *TINY), _queue(cli, model, *TINY)
    out = cli("worker", "--cpu-slots", "2", check=True, timeout=600).stdout
    assert "executed 2 run(s)" in out
    store = Store(workspace / "greentui.db")
    runs = [store.runs.get(i) for i in (a, b)]
    assert [r["status"] for r in runs] == ["done", "done"], [r["error"] for r in runs]
    assert sorted(r["slot"] for r in runs) == ["cpu", "cpu#1"]
    (a0, a1), (b0, b1) = _span(store, a), _span(store, b)
    assert max(a0, b0) < min(a1, b1), "the two runs did not overlap in time"
    for r in runs:
        note = [m for m in store.results.metrics(r["id"]) if m["name"] == "cpu_slots"]
        assert note and note[0]["value"] == 2 and "shared" in json.loads(note[0]["detail"])["energy_note"]
        assert "energy_note" in store.results.task_results(r["id"])[0]["provenance"]


@pytest.mark.slow
def test_auto_and_cpu_runners_never_run_two_runs_at_once(cli_subprocess, workspace, demo_model_dir):
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    ids = [_queue(cli, model, *TINY) for _ in range(2)]
    workers = [_worker("--device", "auto"), _worker("--device", "cpu")]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    store = Store(workspace / "greentui.db")
    assert [store.runs.get(i)["status"] for i in ids] == ["done", "done"]
    (a0, a1), (b0, b1) = sorted(_span(store, i) for i in ids)
    assert a1 <= b0, f"runs overlapped: {a0:.2f}-{a1:.2f} and {b0:.2f}-{b1:.2f}"
    assert {store.runs.get(i)["slot"] for i in ids} == {"cpu"}


@pytest.mark.slow
def test_a_cancel_racing_the_end_of_a_run_never_touches_the_next(cli_subprocess, workspace, demo_model_dir):
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    first, second = _queue(cli, model, *TINY), _queue(cli, model, *TINY)
    worker = _worker("--device", "cpu")
    store = Store(workspace / "greentui.db")

    def baseline_over():
        return any(e["payload"].get("stage") == "baseline" for e in store.events.list(first, kinds=["stage_end"]))
    wait_for(baseline_over, 300, "the end of the first run's last stage")
    try:  # the run is closing its row right now: the cancel lands on it, or is refused
        outcome = cancel_run(store, first)
    except GreentuiError as exc:
        outcome = str(exc)
    worker.communicate(timeout=600)
    one, two = store.runs.get(first), store.runs.get(second)
    assert one["status"] == "done", (outcome, one["error"])  # past its last safe point: it finished
    assert two["status"] == "done" and two["cancel_requested"] is None, two["error"]
    assert len(store.results.task_results(second)) == 1


@pytest.mark.slow
def test_a_killed_runner_takes_its_run_down_and_the_run_is_interrupted(cli_subprocess, workspace, demo_model_dir):
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    args = ["--no-prune", "--tasks", "boolq,piqa,arc_easy,hellaswag", "--limit", "6", "--data-dir", DATA,
            "--ppl-limit", "0", "--device", "cpu"]
    run_id = _queue(cli, model, *args)
    worker = _worker("--device", "cpu")
    store = Store(workspace / "greentui.db")
    wait_for(lambda: store.results.task_results(run_id), 300, "a first task result")
    child = store.runs.get(run_id)["pid"]
    assert child != worker.pid and same_process(child, store.runs.get(run_id)["pid_start"])
    worker.kill()  # SIGKILL: no goodbye, no heartbeat any more
    worker.wait()
    wait_for(lambda: not same_process(child, None), 30, "the run's process to die with its runner")
    # the device lock dies with the run's process (the kernel closes its files as it exits)
    wait_for(lambda: acquire(workspace, resolve_devices("cpu")), 30, "the device lock to be released")
    assert recover_stale_runs(store) == [run_id]
    run = store.runs.get(run_id)
    assert run["status"] == "interrupted" and store.queue.paused()
    assert 1 <= len(store.results.task_results(run_id)) < 4


def test_cpu_slots_come_from_greentui_toml_then_the_saved_setting(workspace):
    from backend.execution.worker import CPU_SLOTS_SETTING, workspace_cpu_slots
    store = Store(workspace / "greentui.db")
    assert workspace_cpu_slots(store) == 1  # one CPU slot by default
    store.settings.set(CPU_SLOTS_SETTING, "3")  # greentui worker --cpu-slots 3 --save
    assert workspace_cpu_slots(store) == 3
    (workspace / "greentui.toml").write_text("[runner]\ncpu_slots = 2\n")
    assert workspace_cpu_slots(store) == 2
    (workspace / "greentui.toml").write_text("[runner]\ncpu_slots = 0\n")
    with pytest.raises(GreentuiError, match="runner.cpu_slots"):
        workspace_cpu_slots(store)


@pytest.mark.skipif(bool(cuda_devices()), reason="this machine has a GPU")
def test_a_run_no_device_can_take_fails_at_once_with_its_reason(workspace):
    from backend.execution.worker import run_worker
    store = Store(workspace / "greentui.db")
    never = store.runs.create(None, "baseline", {"model": "m", "device": "cuda"})
    assert run_worker(workspace, "cpu") == 0  # a CPU-only runner leaves it to a runner of the machine
    assert store.runs.get(never)["status"] == "queued"
    assert run_worker(workspace, "auto") == 0
    run = store.runs.get(never)
    assert run["status"] == "failed" and run["error"] == (
        "device cuda: this machine offers cpu (no slot can ever take this run)")
    assert live_runners(store) == []  # both runners said goodbye


def test_a_foreground_run_that_ignores_the_flag_gets_sigterm_then_sigkill(workspace):
    from backend.execution.supervisor import wait_for_cancel
    store = Store(workspace / "greentui.db")
    # a process that ignores both the flag and SIGTERM, recorded as a foreground run's process
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                 "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline().strip() == "ready"
        run = store.runs.create(None, "baseline", {}, status="running", pid=stubborn.pid)
        store.runs.update(run, pid_start=process_start_time(stubborn.pid))
        assert cancel_run(store, run) == "cancelling"
        t0 = time.time()
        assert wait_for_cancel(store, run, grace=0.3, kill_grace=0.3, timeout=20) == "cancelled"
        assert stubborn.wait(timeout=10) == -9  # SIGTERM was ignored; SIGKILL was not
        assert time.time() - t0 < 10
        lines = [e["payload"]["line"] for e in store.events.list(run, kinds=["log"])]
        assert any("SIGTERM sent" in x for x in lines) and any("SIGKILL sent" in x for x in lines)
        assert "killed" in store.runs.get(run)["error"]
    finally:
        stubborn.kill()
        stubborn.wait()


def test_placement_over_gpu_and_cpu_slots(workspace):
    """Which slots a run takes (GPUs named as NVML would; the locks are real flocks). No GPU runs."""
    from backend.execution.devices import Device, cpu_devices
    from backend.execution.executors.local import LocalDispatcher
    gpus = [Device("cuda", i, f"gpu-GPU-test{i}", f"GPU-test{i}") for i in range(2)]
    ex = LocalDispatcher(workspace, gpus + cpu_devices(1), runner_id=1, runner_device="auto")

    def run(**cfg):
        return {"id": 1, "config": {"model": "m", **cfg}}

    auto = ex.reserve(run())
    assert auto.label == "cuda:0" and auto.cuda_visible == "GPU-test0"  # auto goes to a GPU
    second = ex.reserve(run())
    assert second.label == "cuda:1"  # the next run takes the other GPU at the same time
    assert ex.reserve(run()) is None  # both GPUs busy: auto runs wait...
    cpu = ex.reserve(run(device="cpu"))
    assert cpu.label == "cpu" and cpu.cuda_visible is None  # ...while a CPU run takes the CPU slot
    for held in (auto, second, cpu):
        held.release()
    both = ex.reserve(run(gpus=2))
    assert both.label == "cuda:0,1" and both.cuda_visible == "GPU-test0,GPU-test1"  # --gpus 2
    both.release()
    pinned = ex.reserve(run(device="cuda:1"))
    assert pinned.label == "cuda:1"
    pinned.release()
    assert ex.refusal(run(gpus=3)) == ("device auto with --gpus 3: this machine offers cuda:0, cuda:1, cpu "
                                       "(no slot can ever take this run)")
    assert ex.refusal(run(device="cuda:5")) is not None and ex.refusal(run(gpus=2)) is None


def test_a_foreground_run_with_wait_gets_the_device_when_it_is_freed(workspace):
    import threading

    from backend.execution.devices import acquire_waiting
    held = acquire(workspace, resolve_devices("cpu"))
    held.note(run=7)
    told = []
    threading.Timer(0.5, held.release).start()
    t0 = time.time()
    mine = acquire_waiting(workspace, resolve_devices("cpu"), wait=True, poll=0.1, on_wait=told.append)
    assert mine.label == "cpu" and 0.4 < time.time() - t0 < 5
    assert told == ["cpu by run 7"]  # said once who held it
    mine.release()


@pytest.mark.slow
def test_sigterm_stops_the_runner_cleanly_and_cancels_its_run(cli_subprocess, workspace, demo_model_dir):
    """SIGTERM (systemd, a logout, ``kill``) asks the runner to stop: it launches nothing more, cancels its
    local run and exits 0. (Runner.stop had slipped out of the class; the handler raised AttributeError.)"""
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    args = ["--no-prune", "--tasks", "all", "--limit", "50", "--data-dir", DATA, "--ppl-limit", "0",
            "--device", "cpu"]
    run_id = _queue(cli, model, *args)
    queued = _queue(cli, model, *TINY)
    worker = _worker("--device", "cpu")
    store = Store(workspace / "greentui.db")
    wait_for(lambda: store.results.task_results(run_id), 300, "a first task result")
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0 and "Traceback" not in out, out
    run = store.runs.get(run_id)
    assert run["status"] == "cancelled", run
    assert store.runs.get(queued)["status"] == "queued"  # nothing more was launched
