"""Live power: one reading of instant power from the best source, and a ~1 Hz sampler thread.

Source order: NVML (GPU board power), else RAPL (CPU package counters), else the CPU estimate. The
sampler feeds the TUI's power chart; its failures are counted, never raised into a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from backend.measure.energy.estimate import CpuEstimate
from backend.measure.energy.nvml import shared_nvml
from backend.measure.energy.rapl import Rapl


class PowerSource:
    """One reading of instant power: NVML, else RAPL, else CodeCarbon-style estimate."""

    def __init__(self, prefer: str | None = None) -> None:
        self.kind = "codecarbon-estimate"
        self.limit_w: float | None = None
        self._nvml = None
        self._rapl = None
        self._est = None
        self._last_rapl: tuple[float, list[int]] | None = None
        self.reasons: dict[str, str] = {}
        if prefer in (None, "nvml"):
            nv = shared_nvml()
            if nv.available:
                self._nvml, self.kind = nv, "nvml"
                return
            self.reasons["nvml"] = nv.reason or "unavailable"
        if prefer in (None, "rapl"):
            rapl = Rapl()
            if rapl.available:
                self._rapl, self.kind = rapl, "rapl"
                return
            self.reasons["rapl"] = rapl.reason or "unavailable"
        self._est = CpuEstimate()

    def read(self) -> tuple[float | None, float | None]:
        """(watts, limit_w); the first RAPL/estimate read primes the counters."""
        if self._nvml is not None:
            return self._nvml.power()
        if self._rapl is not None:
            now = time.monotonic()
            vals = self._rapl.read_uj()
            prev, self._last_rapl = self._last_rapl, (now, vals)
            if prev is None:
                return None, None
            return self._rapl.delta_j(prev[1], vals) / max(now - prev[0], 1e-6), None
        return self._est.watts(), None


class PowerSampler:
    """A daemon thread calling ``on_sample(t, watts, source, limit_w)`` about every ``interval`` s.

    ``t`` is wall-clock time (time.time()). Source is "nvml", "rapl" or "codecarbon-estimate"; the
    callback's exceptions are swallowed (and counted) so the UI feed can never break a run.
    """

    def __init__(self, on_sample: Callable[[float, float, str, float | None], None],
                 interval: float = 1.0, prefer: str | None = None) -> None:
        self.on_sample = on_sample
        self.interval = interval
        self.prefer = prefer
        self.source: str | None = None
        self.samples = 0
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "PowerSampler":
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="greentui-power", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "PowerSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            src = PowerSource(self.prefer)
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"no power source: {exc}"
            return
        self.source = src.kind
        src.read()
        while not self._stop.wait(self.interval):
            try:
                watts, limit = src.read()
                if watts is None:
                    continue
                self.on_sample(time.time(), float(watts), src.kind, limit)
                self.samples += 1
            except Exception as exc:  # noqa: BLE001
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
