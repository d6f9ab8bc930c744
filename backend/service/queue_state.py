"""What the queue is doing, in the words the Queue screen and Run detail show: how many runs really
hold a device, and why a queued run is still waiting.

Why a module: a run's vanilla baseline is recorded as a run of its own (``kind = baseline``) that is
``running`` while its experiment evaluates it *in the experiment's own process*; counting rows said
"2 running" on a one-slot CPU. And "the runner starts" was shown for every queued run, whatever held
it back (a paused queue, no runner, another run on the device). Both answers are read here from the
store and the runner registry, once, for both screens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.store import Store

ACTIVE = ("queued", "running")


@dataclass
class QueueState:
    """The queue at one moment: the runs that hold a slot, the baselines running inside them, the
    queued runs in order, whether the queue is paused and which runners are alive."""

    paused: bool
    runners: list[dict[str, Any]]
    running: list[dict[str, Any]] = field(default_factory=list)
    inside: dict[int, int] = field(default_factory=dict)  # baseline run id -> the run whose process runs it
    queued: list[dict[str, Any]] = field(default_factory=list)

    def wait_reason(self, run: dict[str, Any], short: bool = False) -> str:
        """Why queued run ``run`` has not started; ``short`` for a table cell. "" for other runs."""
        if run.get("status") != "queued":
            return ""
        if run.get("cancel_requested"):
            return "cancelling" if short else "cancelling: it leaves the queue"
        if run.get("job_state"):  # sent to Slurm: the scheduler decides
            return f"Slurm {run['job_state']}" if short else f"waiting for Slurm: the job is {run['job_state']}"
        if self.paused:
            return "queue paused" if short else "waiting: the queue is paused (P on the Queue screen resumes it)"
        if not self.runners:
            return "no runner yet" if short else ("waiting for a runner: greentui starts one when it opens "
                                                 "(or run greentui worker)")
        key = (run.get("position") or 0, run["id"])
        ahead = [r for r in self.queued if (r.get("position") or 0, r["id"]) < key]
        if self.running:
            holders = ", ".join(str(r["id"]) for r in self.running[:3])
            more = f" + {len(ahead)} queued" if ahead else ""
            return (f"after run {holders}{more}" if short else
                    f"waiting: run {holders} holds the device" + (f", and {len(ahead)} queued run(s) come "
                                                                  "first" if ahead else ""))
        if ahead:
            return f"after {len(ahead)} queued" if short else f"waiting: {len(ahead)} queued run(s) come first"
        return "starting" if short else "starting: the runner is launching it (importing PyTorch takes seconds)"

    def reason_for(self, run_id: int, short: bool = False) -> str:
        """:meth:`wait_reason` of queued run ``run_id`` ("" when it is not queued)."""
        row = next((r for r in self.queued if r["id"] == run_id), None)
        return self.wait_reason(row, short) if row is not None else ""

    def running_text(self) -> str:
        """``1 running`` (and the baselines evaluated inside those runs, which hold no slot of their own)."""
        text = f"{len(self.running)} running"
        if self.inside:
            text += " (" + ", ".join(f"baseline run {b} inside run {e}" for b, e in self.inside.items()) + ")"
        return text


def queue_state(store: Store) -> QueueState:
    """Read the queue and the live runners (dead runner registrations are closed on the way)."""
    from backend.service.execution import live_runners

    rows = store.queue.queued()
    running = [r for r in rows if r["status"] == "running"]
    state = QueueState(paused=store.queue.paused(), runners=live_runners(store))
    by_pid: dict[int, int] = {}
    for r in running:  # an experiment and the baseline it evaluates share a process
        if r.get("pid") and r["kind"] != "baseline":
            by_pid[r["pid"]] = r["id"]
    for r in running:
        pid = r.get("pid")
        host = by_pid.get(pid) if r["kind"] == "baseline" and pid else None
        if host is not None and host != r["id"]:
            state.inside[r["id"]] = host
        else:
            state.running.append(r)
    state.queued = sorted((r for r in rows if r["status"] == "queued"),
                          key=lambda r: (r.get("position") or 0, r["id"]))
    return state
