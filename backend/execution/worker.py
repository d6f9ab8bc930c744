"""The runner: drains the queue over every free slot of its executors at once (pueue's parallel slots).

Started detached (own session) by the TUI or ``greentui queue``, or in the foreground by
``greentui worker``. It registers itself in the store and beats a heartbeat (``supervisor``), then
loops every ``TICK_S``: follow launched runs, escalate ignored cancels, and claim queued runs in
queue order for every dispatcher that has room (``backend.execution.executors``: one run per device
locally, a scheduler's jobs for the others). It exits when nothing it launched is running and nothing queued is for it
(or the queue is paused). The runner never executes a run in its own process: each local run has a
process of its own (its devices, its ``CUDA_VISIBLE_DEVICES``), so one run's failure or cancel can
never stop the runner or touch another run.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

from backend.errors import GreentuiError
from backend.execution.control import process_start_time
from backend.execution.executors import Dispatcher, RunnerContext, executor
from backend.execution.supervisor import HEARTBEAT_S, recover_stale_runs
from backend.store import Store, open_store

TICK_S = 0.5
CPU_SLOTS_SETTING = "cpu_slots"


def workspace_cpu_slots(store: Store) -> int:
    """The workspace's CPU slot count, read by every runner the TUI or ``queue`` starts.

    ``[runner] cpu_slots = N`` in the workspace's ``greentui.toml`` wins; else the store setting
    written by ``greentui worker --cpu-slots N --save``; else 1 (two CPU runs at once would each
    be charged for the other's energy).
    """
    from backend.schema.wsconfig import runner_defaults
    value = runner_defaults(store.path.parent).get("cpu_slots")  # checked with the file's schema
    if value is not None:
        return value
    raw = store.settings.get(CPU_SLOTS_SETTING, "1") or "1"
    return max(1, int(raw)) if raw.isdigit() else 1


class Runner:
    """One runner process: its registration, its executors' dispatchers and its loop."""

    def __init__(self, workspace: Path, store: Store, executors: list[Dispatcher], runner_id: int):
        self.workspace, self.store, self.executors, self.runner_id = workspace, store, executors, runner_id
        self.launched = 0
        self.stopping = False
        self._beat = 0.0

    def heartbeat(self) -> None:
        t = time.monotonic()
        if t - self._beat >= HEARTBEAT_S:
            self.store.runners.heartbeat(self.runner_id)
            self._beat = t

    def follow(self) -> None:
        for ex in self.executors:
            ex.poll(self.store)
        for run in self.store.queue.cancel_requests():
            for ex in self.executors:
                if ex.owns(run):
                    ex.on_cancel(self.store, run)

    def fill(self, limit: int | None = None) -> tuple[int, bool]:
        """Claim and launch queued runs while executors have room; (launched, some run is wanted)."""
        started, wanted = 0, False
        if self.store.queue.paused():
            return 0, False
        for run in self.store.queue.candidates():
            ex = next((e for e in self.executors if e.wants(run)), None)
            if ex is None:
                continue
            wanted = True
            if limit is not None and started >= limit:
                break
            why = ex.refusal(run)
            if why is not None:
                if self.store.queue.claim(run["id"], runner_id=self.runner_id, executor=ex.name, device=None):
                    self.store.events.add(run["id"], "error", {"message": why})
                    self.store.runs.finish(run["id"], "failed", why)
                continue
            offer = ex.reserve(run)
            if offer is None:
                continue  # no room for this one now; a later, smaller run may still fit
            if not self.store.queue.claim(run["id"], runner_id=self.runner_id, executor=ex.name,
                                        device=_device_label(offer), slot=_slot_label(offer)):
                ex.release(offer)  # another runner took it, it was cancelled, or the queue paused
                continue
            ex.launch(self.store, self.store.runs.require(run["id"]), offer)
            started += 1
        return started, wanted

    def loop(self, once: bool = False) -> int:
        for ex in self.executors:
            ex.attach(self.store)
        waits = 0
        while True:
            try:
                if self.tick(once):
                    return self.launched
                waits = 0
            except sqlite3.OperationalError as exc:
                if not store_busy(exc):
                    raise
                waits += 1
                self.wait_out_busy_store(exc, waits)
                continue
            time.sleep(TICK_S)

    def tick(self, once: bool) -> bool:
        """One round: heartbeat, follow, fill. True when the runner is done."""
        self.heartbeat()
        self.follow()
        busy = any(ex.busy() for ex in self.executors)
        wanted = False
        if not self.stopping and not (once and self.launched):
            n, wanted = self.fill(limit=1 if once else None)
            self.launched += n
            busy = busy or n > 0
        return not busy and (not wanted or self.stopping or (once and self.launched > 0))

    def stop(self) -> None:
        """SIGTERM: launch nothing more, ask the local runs to cancel, wait for them to end."""
        if not self.stopping:
            self.stopping = True
            for ex in self.executors:
                ex.shutdown(self.store)

    def wait_out_busy_store(self, exc: sqlite3.OperationalError, waits: int) -> None:
        """Another process held the store's write lock past the busy timeout (a long import, a
        stuck writer). The runner waits and retries — its launched runs go on in their own
        processes — instead of dying and taking every in-flight run with it. Backs off to 5 s."""
        if waits == 1:
            print(f"greentui runner: the store is busy ({exc}); retrying", file=sys.stderr, flush=True)
        time.sleep(min(TICK_S * 2 ** min(waits, 4), 5.0))


def store_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite's "database is locked/busy": another connection holds the lock; worth a retry."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _device_label(offer) -> str | None:
    devices = getattr(offer, "devices", None)
    if devices:
        return "cuda" if devices[0].kind == "cuda" else "cpu"
    return getattr(offer, "device", None)


def _slot_label(offer) -> str | None:
    return getattr(offer, "label", None)


def build_executors(ctx: RunnerContext, names: list[str]) -> list[Dispatcher]:
    """The dispatchers of the executors named; one that cannot work here (None: another runner follows
    its jobs) is left out. An unknown or unavailable name is a one-line error."""
    out: list[Dispatcher] = []
    for name in names:
        dispatcher = executor(name).dispatcher(ctx)
        if dispatcher is not None:
            out.append(dispatcher)
    return out


def fail_waiting_runs(store: Store, executors: list[str], reason: str) -> list[int]:
    """Fail the queued runs these executors would take, with ``reason``: a runner that cannot start
    must not leave them ``queued`` forever with nobody to tell why."""
    failed = []
    for run in store.queue.candidates():
        if (run.get("config") or {}).get("executor", "local") in executors:
            store.runs.finish(run["id"], "failed", reason)
            failed.append(run["id"])
    return failed


def run_worker(workspace: Path, device: str = "auto", once: bool = False, cpu_slots: int | None = None,
               executors: list[str] | None = None) -> int:
    """Drain the queue over every free slot; return the number of runs launched.

    After saying goodbye (registration closed) the runner looks once more for runs it wants:
    ``greentui queue`` records its run *before* it looks for a live runner, so a run queued while
    this one was exiting is either seen here or finds no runner and starts one.
    """
    store = open_store(workspace)
    try:
        slots = cpu_slots or workspace_cpu_slots(store)
    except GreentuiError as exc:  # a greentui.toml made bad after the runs were queued: say so, end them
        fail_waiting_runs(store, executors or ["local"], f"the runner could not start: {exc}")
        store.close()
        raise
    launched = 0
    try:
        recover_stale_runs(store)
        while True:
            names = executors or ["local"]
            runner_id = store.runners.register(socket.gethostname(), os.getpid(), process_start_time(),
                                              requested=device, devices=[], executors=names)
            exs: list[Dispatcher] = []
            try:
                ctx = RunnerContext(workspace=workspace, runner_id=runner_id, requested_device=device,
                                    cpu_slots=slots)
                exs = build_executors(ctx, names)
                if not exs:
                    return launched  # e.g. another runner follows this workspace's Slurm jobs
                store.runners.describe(runner_id, devices=[d for e in exs for d in e.devices()],
                                      executors=[e.name for e in exs])
                runner = Runner(workspace, store, exs, runner_id)
                previous = signal.signal(signal.SIGTERM, lambda *_: runner.stop())
                try:
                    launched += runner.loop(once=once)
                finally:
                    signal.signal(signal.SIGTERM, previous)
            finally:
                store.runners.stop(runner_id)
                for ex in exs:
                    ex.close()
            if once or runner.stopping or store.queue.paused():
                return launched
            if not any(e.wants(r) for r in store.queue.candidates() for e in exs):
                return launched
    finally:
        store.close()
