"""This process's own CPU time, and the machine's other load, over a measurement window.

Why: on a shared machine (2 cores, several people's jobs) an estimate that follows machine-wide load
charges the run for its neighbours' work — the same task measured twice differed by 34–49 % (issue
#18). The CPU estimate is therefore charged from the run's *own* CPU time (``resource.getrusage``:
this process and all its threads; optionally the children it waited for), and what the others did
during the window is recorded beside it — busy CPU-seconds of the whole machine (``/proc/stat``)
minus our own, per second of wall time — so the quality badge can say how loaded the machine was.
Standard library only; where ``/proc`` is missing the load is recorded as unknown.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest is inside user)


def own_cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (every thread); with ``children``, plus those of
    the children it has waited for (a child still running is not counted: it is not our work yet)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    total = ru.ru_utime + ru.ru_stime
    if children:
        rc = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += rc.ru_utime + rc.ru_stime
    return total


def machine_busy_seconds(proc: Path = PROC) -> float | None:
    """Busy CPU-seconds of the whole machine since boot (all cores), or None without /proc/stat."""
    try:
        with open(proc / "stat", encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    try:
        ticks = sum(int(first[1 + i]) for i in _BUSY_FIELDS if 1 + i < len(first))
    except ValueError:
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def load_average(proc: Path = PROC) -> float | None:
    """The 1-minute load average (runnable threads, whole machine), or None."""
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class LoadMark:
    """The clocks at one edge of a window."""

    wall: float
    own_cpu: float
    machine_busy: float | None


class LoadWindow:
    """Own CPU time and the machine's other load between ``start()`` and ``stop()``."""

    def __init__(self, children: bool = False, proc: Path = PROC) -> None:
        self.children = children
        self.proc = proc
        self._start: LoadMark | None = None

    def mark(self) -> LoadMark:
        return LoadMark(time.perf_counter(), own_cpu_seconds(self.children), machine_busy_seconds(self.proc))

    def start(self) -> "LoadWindow":
        self._start = self.mark()
        return self

    def stop(self) -> dict[str, Any]:
        """{wall_s, own_cpu_s, own_cores, other_cores, machine_cores, cores, loadavg_1m, source}.

        ``other_cores``: the machine's busy CPU-seconds minus ours, per wall second — how many cores'
        worth of other work ran beside the window (0 on an idle machine; up to ``cores``)."""
        if self._start is None:
            raise RuntimeError("LoadWindow.stop() before start()")
        end = self.mark()
        wall = max(end.wall - self._start.wall, 1e-9)
        own = max(end.own_cpu - self._start.own_cpu, 0.0)
        out: dict[str, Any] = {"wall_s": wall, "own_cpu_s": own, "own_cores": own / wall,
                               "cores": os.cpu_count() or 1, "loadavg_1m": load_average(self.proc),
                               "other_cores": None, "machine_cores": None,
                               "source": "getrusage(RUSAGE_SELF" + ("+CHILDREN" if self.children else "")
                                         + ") and /proc/stat"}
        if self._start.machine_busy is not None and end.machine_busy is not None:
            machine = max(end.machine_busy - self._start.machine_busy, 0.0)
            out["machine_cores"] = machine / wall
            # the two clocks tick differently (jiffies vs rusage): never below zero
            out["other_cores"] = max(machine - own, 0.0) / wall
        return out
