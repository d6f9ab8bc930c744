"""Live power: one reading of instant power from the best source, and a ~1 Hz sampler thread.

Source order is the registry's (``live_rank``): NVML (GPU board power), else RAPL (CPU package
counters), else the CPU-time estimate — or a plugin meter's. The sampler feeds the TUI's power chart;
its failures are counted, never raised into a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from backend.measure.energy import registry
from backend.measure.energy.meter import LivePower


class PowerSource:
    """One reading of instant power from the first available live meter (or ``prefer``).

    ``kind`` is the meter's name (``nvml``, ``rapl``, ``cpu-time``); ``reasons`` says why the better
    ones were passed over; ``is_estimate`` follows the meter's kind.
    """

    def __init__(self, prefer: str | None = None) -> None:
        self.reasons: dict[str, str] = {}
        self.kind = ""
        self.is_estimate = True
        self._live: LivePower | None = None
        for meter in registry.live_meters(prefer):
            why = meter.unavailable()
            if why is not None:
                self.reasons[meter.name] = why
                continue
            self._live, self.kind, self.is_estimate = meter.live(), meter.name, meter.kind != "counter"
            return
        raise RuntimeError("no live power source: " + "; ".join(f"{k}: {v}" for k, v in self.reasons.items()))

    def read(self) -> tuple[float | None, float | None]:
        """(watts, limit_w); the first read of a counter or CPU-time source primes it (None)."""
        assert self._live is not None
        return self._live.read()


class PowerSampler:
    """A daemon thread calling ``on_sample(t, watts, source, limit_w)`` about every ``interval`` s.

    ``t`` is wall-clock time (time.time()). Source is the meter's name ("nvml", "rapl", "cpu-time", a plugin's); the
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
