"""The CPU estimate: this process tree's CPU share x the CPU's TDP, plus a RAM power model.

The same model CodeCarbon uses where no counter exists ("cpu_load" mode). Figures from it are
estimates and are always labelled so; used for the live power feed and idle power when neither NVML
nor RAPL is there.
"""

from __future__ import annotations

import time
from functools import lru_cache

from backend.measure.energy.common import quiet_codecarbon

DEFAULT_W_PER_THREAD = 4.0  # CodeCarbon's DEFAULT_POWER_PER_CORE for CPUs missing from its database


class CpuEstimate:
    """CodeCarbon-style power estimate: this process tree's CPU share x CPU TDP, plus a RAM model."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.proc = psutil.Process()
        self.threads = psutil.cpu_count() or 1
        self.tdp_w, self.tdp_source = _cpu_tdp(self.threads)
        self.ram_w = _ram_power_w()
        self._last: tuple[float, float] | None = None

    def _cpu_seconds(self) -> float:
        total = 0.0
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except Exception:  # noqa: BLE001
            pass
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001 - child exited
                pass
        return total

    def watts(self) -> float:
        now = time.monotonic()
        cpu = self._cpu_seconds()
        if self._last is None:
            self._last = (now, cpu)
            return self.ram_w
        t0, c0 = self._last
        self._last = (now, cpu)
        dt = max(now - t0, 1e-6)
        share = min(max((cpu - c0) / dt / self.threads, 0.0), 1.0)
        return self.tdp_w * share + self.ram_w


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
