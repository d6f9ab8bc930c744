"""The CPU estimate (meter ``cpu-time``): this process's own CPU time x the CPU's power model.

Where no energy counter exists (no NVML, no readable RAPL) a figure can only come from a model. The
model here is CodeCarbon's hardware model — the CPU's TDP from CodeCarbon's database (else its 4 W per
thread) and its RAM power model — but it is *charged by this process's own CPU time*, not by
machine-wide load or wall time: a window costs ``own CPU-seconds / threads x (TDP + RAM W)``, i.e. the
machine's modelled power times the share of the machine the run itself used. A neighbour burning
CPU during the window does not raise it (``tests/test_meters.py`` holds that with a real busy
process); the neighbour's load is recorded beside every window (:mod:`.load`) and shown in the
quality badge. Figures from it are estimates and are always labelled so.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

from backend.measure.energy.common import quiet_codecarbon
from backend.measure.energy.load import own_cpu_seconds
from backend.measure.energy.meter import ESTIMATE, LivePower, Meter, Reading, Window

DEFAULT_W_PER_THREAD = 4.0  # CodeCarbon's DEFAULT_POWER_PER_CORE for CPUs missing from its database


class CpuModel:
    """The machine's modelled power: CPU TDP and RAM watts, detected once per process."""

    def __init__(self) -> None:
        self.threads = os.cpu_count() or 1
        self.tdp_w, self.tdp_source = _cpu_tdp(self.threads)
        self.ram_w = _ram_power_w()

    @property
    def w_per_cpu_second(self) -> float:
        """Joules charged per CPU-second of this process: the machine's (TDP + RAM) / threads."""
        return (self.tdp_w + self.ram_w) / self.threads

    def describe(self) -> dict[str, Any]:
        return {"tdp_w": self.tdp_w, "tdp_source": self.tdp_source, "ram_w": self.ram_w,
                "threads": self.threads, "w_per_cpu_second": self.w_per_cpu_second,
                "charged_by": "own process CPU time (getrusage), not machine load or wall time"}


@lru_cache(maxsize=1)
def cpu_model() -> CpuModel:
    return CpuModel()


class CpuTimeMeter(Meter):
    """The CPU estimate charged from this process's own CPU time (always available)."""

    name = "cpu-time"
    label = "CPU time"
    kind = ESTIMATE
    rank = 20
    live_rank = 90
    covers = ("cpu", "ram")

    def __init__(self, children: bool = False) -> None:
        self.children = children  # True when the work runs in child processes this one waits for

    def prepare(self) -> None:
        cpu_model()  # py-cpuinfo (~1.7 s the first time): never inside a window

    def start(self, window: Window) -> Any:
        cpu_model()
        return own_cpu_seconds(self.children)

    def stop(self, token: Any, window: Window) -> Reading:
        own = max(own_cpu_seconds(self.children) - float(token), 0.0)
        model = cpu_model()
        cpu_j = own / model.threads * model.tdp_w
        ram_j = own / model.threads * model.ram_w
        return Reading(meter=self.name, joules=cpu_j + ram_j, kind=ESTIMATE, tag="cpu-time-estimate",
                       covers=self.covers, parts={"cpu": cpu_j, "ram": ram_j},
                       detail=dict(model.describe(), own_cpu_s=own))

    def live(self) -> LivePower:
        return _CpuTimeLive(self.children)


class _CpuTimeLive(LivePower):
    """Instant estimate: own CPU seconds per wall second x the machine's W per CPU-second."""

    def __init__(self, children: bool) -> None:
        self.children = children
        self.model = cpu_model()
        self._last: tuple[float, float] | None = None

    def read(self) -> tuple[float | None, float | None]:
        now, cpu = time.monotonic(), own_cpu_seconds(self.children)
        prev, self._last = self._last, (now, cpu)
        if prev is None:
            return None, None
        return max(cpu - prev[1], 0.0) / max(now - prev[0], 1e-6) * self.model.w_per_cpu_second, None


@lru_cache(maxsize=4)
def _cpu_tdp(threads: int) -> tuple[float, str]:
    """CodeCarbon's TDP for this CPU (its database), else its default of 4 W per thread.

    The first call takes ~1.7 s (py-cpuinfo); cached afterwards.
    """
    try:
        quiet_codecarbon()
        from codecarbon.core.cpu import TDP

        model, tdp = TDP()._main()
        if tdp:
            return float(tdp), f"codecarbon TDP for {model}"
    except Exception:  # noqa: BLE001
        pass
    return DEFAULT_W_PER_THREAD * threads, f"default {DEFAULT_W_PER_THREAD} W/thread x {threads}"


def _ram_power_w() -> float:
    try:
        quiet_codecarbon()
        from codecarbon.external.ram import RAM

        return float(RAM(tracking_mode="process").total_power().W)
    except Exception:  # noqa: BLE001
        return 10.0
