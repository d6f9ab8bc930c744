"""The local executor: every device of this machine is a parallel slot, one run per slot.

Each run executes in its own process (``python -m backend.execution.executors.local_job``) with its own
``CUDA_VISIBLE_DEVICES`` (a GPU run sees only its GPUs, so NVML counts only their energy), holding
the locks of its devices (inherited from the runner, see ``backend.execution.devices``). The child dies with
the runner (``PR_SET_PDEATHSIG``): a killed runner leaves no orphan writing into the store, and its
runs become ``interrupted`` as before.

Which slot a run may take: ``device: cpu`` → a CPU slot; ``cuda`` / ``cuda:N`` → ``gpus`` GPUs
(default 1; ``cuda:N`` pins GPU N); ``auto`` → ``gpus`` GPUs when the runner has GPUs, else a CPU
slot. A run no slot of this machine can ever take (a CUDA run on a CPU-only machine, ``--gpus 4`` on
a two-GPU box) is failed at once with a one-line reason by a runner of the whole machine, rather
than wait forever.

Cancel: the run's process polls its flag (``backend.execution.control.CancelWatch``). Only if it is still
running ``CANCEL_GRACE_S`` after the request does the executor send SIGTERM, and SIGKILL
``KILL_GRACE_S`` later — to its own child, whose identity it knows (it still holds the ``Popen``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.execution.control import process_start_time
from backend.execution.devices import Device, Held, acquire, cpu_devices, resolve_devices
from backend.execution.executors.base import Dispatcher, Executor, RunnerContext
from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import CODE_ROOT

CANCEL_GRACE_S = float(os.environ.get("GREENTUI_CANCEL_GRACE_S", "20"))
KILL_GRACE_S = float(os.environ.get("GREENTUI_KILL_GRACE_S", "10"))


@dataclass
class _Child:
    run_id: int
    proc: subprocess.Popen
    held: Held
    devices: list[Device]
    started: float = field(default_factory=time.time)
    termed_at: float | None = None
    killed: bool = False


class LocalExecutor(Executor):
    """Runs on this machine's devices, one process per run, started by the local runner."""

    name = "local"
    help = "this machine's runner: every GPU a slot, else the CPU"
    states = {"claimed": "running (its own process)", "exited": "the status the run recorded",
              "exited without recording one": "failed", "killed by a signal": "interrupted (the queue pauses)"}

    def check(self, cfg: RunConfig, workspace: Path) -> None:
        """A run asking for a GPU needs one on this machine (``auto`` always finds a device): refused
        when queued, not left waiting for a device that never comes."""
        if cfg.device in ("auto", "cpu"):
            return
        from backend.schema.settings import SettingError
        try:
            resolve_devices(cfg.device)
        except GreentuiError as exc:
            raise SettingError("device", str(exc)) from None

    def has_work(self, store: Store) -> bool:
        return not store.queue.paused() and store.jobs.has_unsubmitted(self.name)

    def start_runner(self, workspace: Path, store: Store, *, device: str = "auto") -> int | None:
        """The detached local runner (``greentui worker --device D``) unless a live one serves ``device``."""
        from backend.execution.supervisor import start_runner
        if not self.has_work(store):
            return None
        return start_runner(workspace, device)

    def dispatcher(self, ctx: RunnerContext) -> LocalDispatcher:
        return LocalDispatcher.create(ctx)

    def cancel(self, store: Store, run: dict[str, Any]) -> str:
        """A queued run is cancelled at once; a running one gets its flag raised (its process stops at
        its next safe point); one whose process is already gone is marked interrupted instead."""
        from backend.execution.supervisor import recover_stale_runs, run_alive
        run_id = int(run["id"])
        if run["status"] == "running":
            runners = {r["id"]: r for r in store.runners.active()}
            if not run_alive(run, runners):
                recover_stale_runs(store)
                return store.runs.require(run_id)["status"]
        outcome = store.queue.request_cancel(run_id)
        if outcome is None:
            now_status = store.runs.require(run_id)["status"]
            raise GreentuiError(f"run {run_id} is {now_status}; only queued or running runs can be cancelled")
        if outcome == "cancelling":
            store.events.add(run_id, "log", {"line": "cancel requested: the run stops at its next safe point"})
        return outcome


class LocalDispatcher(Dispatcher):
    """The local runner's slots: claims queued local runs onto free devices and follows their processes."""

    name = "local"

    def __init__(self, workspace: Path, devices: list[Device], runner_id: int, cpu_slots: int = 1,
                 runner_device: str = "auto"):
        self.workspace = workspace
        self.slots = devices
        self.runner_id = runner_id
        self.cpu_slots = cpu_slots
        self.runner_device = runner_device
        self.children: dict[int, _Child] = {}

    @classmethod
    def create(cls, ctx: RunnerContext) -> LocalDispatcher:
        devices = resolve_devices(ctx.requested_device, ctx.cpu_slots)
        if ctx.requested_device == "auto" and devices and devices[0].kind == "cuda":
            # a runner of the whole machine also serves runs that ask for the CPU by name
            # (``auto`` runs still go to the GPUs)
            devices = devices + cpu_devices(ctx.cpu_slots)
        return cls(ctx.workspace, devices, ctx.runner_id, ctx.cpu_slots, ctx.requested_device)

    def devices(self) -> list[str]:
        return [d.label for d in self.slots]

    # ------------------------------------------------------------------ placement
    def _candidates(self, run: dict[str, Any]) -> tuple[list[Device], int]:
        cfg = run.get("config") or {}
        want = str(cfg.get("device") or "auto").lower()
        gpus = max(1, int(cfg.get("gpus") or 1))
        mine = [d for d in self.slots if d.kind == "cuda"]
        cpus = [d for d in self.slots if d.kind == "cpu"]
        if want == "cpu":
            return cpus, 1
        if want.startswith("cuda:") and want[5:].isdigit():
            pinned = [d for d in mine if d.index == int(want[5:])]
            return pinned, 1
        if want == "cuda" or (want == "auto" and mine):
            return mine, gpus
        return cpus, 1

    def fits(self, run: dict[str, Any]) -> bool:
        cands, need = self._candidates(run)
        return len(cands) >= need

    def wants(self, run: dict[str, Any]) -> bool:
        if not super().wants(run):
            return False
        # a run no slot of this runner can ever take: a runner of the whole machine refuses it
        # (see refusal); a narrower runner (--device cpu) leaves it to others
        return self.fits(run) or self.runner_device == "auto"

    def refusal(self, run: dict[str, Any]) -> str | None:
        if self.fits(run):
            return None
        cfg = run.get("config") or {}
        want = str(cfg.get("device") or "auto")
        gpus = int(cfg.get("gpus") or 1)
        have = ", ".join(d.label for d in self.slots)
        what = f"device {want}" + (f" with --gpus {gpus}" if gpus > 1 else "")
        return f"{what}: this machine offers {have} (no slot can ever take this run)"

    def reserve(self, run: dict[str, Any]) -> Held | None:
        busy = {d.key for c in self.children.values() for d in c.devices}
        cands, need = self._candidates(run)
        return acquire(self.workspace, [d for d in cands if d.key not in busy], need)

    def release(self, offer: Held) -> None:
        offer.release()

    # ------------------------------------------------------------------ launch and follow
    def launch(self, store: Store, run: dict[str, Any], offer: Held) -> None:
        run_id = int(run["id"])
        gpu = offer.devices[0].kind == "cuda"
        device = "cuda" if gpu else "cpu"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if gpu:
            env["CUDA_VISIBLE_DEVICES"] = offer.cuda_visible or ""
            env.pop("GREENTUI_CPU_SLOTS", None)
        else:
            env["GREENTUI_CPU_SLOTS"] = str(self.cpu_slots)
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU slot's run must not touch (or measure) a GPU
        offer.note(run=run_id, runner=self.runner_id, runner_pid=os.getpid())
        cmd = [sys.executable, "-m", "backend.execution.executors.local_job", str(self.workspace), str(run_id),
               "--device", device, "--parent", str(os.getpid()),
               "--lock-fds", ",".join(str(fd) for fd in offer.fds)]
        log = (self.workspace / "runner.log").open("ab")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=offer.fds, close_fds=True, env=env, cwd=str(CODE_ROOT))
        except OSError as exc:
            offer.release()
            store.runs.finish(run_id, "failed", f"cannot start the run's process: {exc}")
            return
        finally:
            log.close()
        store.queue.record_process(run_id, proc.pid, process_start_time(proc.pid))
        devices = list(offer.devices)
        offer.close()  # the child holds the locks now, for exactly as long as it lives
        self.children[run_id] = _Child(run_id, proc, offer, devices)

    def poll(self, store: Store) -> None:
        for run_id, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[run_id]
            row = store.runs.get(run_id)
            if row is None or row["status"] != "running":
                continue  # the run closed its own row (done, failed or cancelled)
            if row.get("cancel_requested"):
                how = "killed" if child.killed else "stopped with SIGTERM" if child.termed_at else "stopped"
                store.runs.finish(run_id, "cancelled", f"cancelled by the user ({how} after the grace period)")
            elif code < 0:  # killed from outside (OOM killer, kill -9): like a crash, pause the queue
                store.runs.mark_interrupted([run_id], f"the run's process was killed by signal {-code}")
            else:
                store.runs.finish(run_id, "failed", f"the run's process exited with code {code} "
                                                    "without finishing (see runner.log)")

    def on_cancel(self, store: Store, run: dict[str, Any]) -> None:
        child = self.children.get(int(run["id"]))
        if child is None or child.proc.poll() is not None:
            return
        waited = time.time() - float(run["cancel_requested"])
        if child.termed_at is None and waited >= CANCEL_GRACE_S:
            child.proc.send_signal(signal.SIGTERM)  # our own unreaped child: its pid cannot be reused
            child.termed_at = time.time()
            store.events.add(child.run_id, "log", {"line": f"cancel not honoured after {CANCEL_GRACE_S:.0f} s: "
                                                          "SIGTERM sent to the run's process"})
        elif child.termed_at is not None and not child.killed and time.time() - child.termed_at >= KILL_GRACE_S:
            child.proc.kill()
            child.killed = True
            store.events.add(child.run_id, "log", {"line": "SIGTERM not honoured: SIGKILL sent"})

    def busy(self) -> bool:
        return bool(self.children)

    def shutdown(self, store: Store) -> None:
        for run_id in self.children:
            store.queue.request_cancel(run_id)
