"""One run's meters: one CodeCarbon tracker for the whole run, used through its task API.

Why: building, starting and stopping an ``OfflineEmissionsTracker`` per task costs a fixed ~0.3 s
on a loaded 2-core box (hardware detection, scheduler threads), which lands in every task's window
and multiplies with repeats. A session builds the tracker once, detects the hardware once (outside
any window), and meters each task — and each repeat — with ``start_task``/``stop_task``, which
costs milliseconds. It also holds the GPU's pre-run temperature for the ``--cooldown`` gate.

The meters of each window (the registry's: NVML, RAPL, the CPU-time estimate, CodeCarbon, plugins),
the CUDA synchronisation at window edges and the machine's load are driven by
:class:`~.window.TaskEnergyMeter`, the same with or without a session.
"""

from __future__ import annotations

import time
from typing import Any

from backend.measure.energy.common import TRACKING_MODES, check_country, null_dir, quiet_codecarbon
from backend.measure.energy.nvml import shared_nvml
from backend.measure.energy.window import TaskEnergyMeter

COOLDOWN_TOLERANCE_C = 2.0
COOLDOWN_MAX_S = 60.0


class EnergySession:
    """Meters for one run. ``task(label)`` gives a context manager per measured window.

    The tracker is built lazily on the first window (or by ``prepare()``, which callers run before
    any measurement so hardware detection never lands in a window). A tracker that cannot be built
    is recorded per task as missing, exactly like the per-task meter.
    """

    def __init__(self, *, country: str = "USA", measure_power_secs: float = 1.0,
                 tracking_mode: str = "process", use_codecarbon: bool = True, use_nvml: bool = True) -> None:
        if tracking_mode not in TRACKING_MODES:
            raise ValueError(f"tracking_mode must be one of {TRACKING_MODES}")
        self.country = check_country(country)
        self.measure_power_secs = measure_power_secs
        self.tracking_mode = tracking_mode
        self.use_codecarbon = use_codecarbon
        self.use_nvml = use_nvml
        self._tracker: Any = None
        self._error: Exception | None = None
        self.pre_run_temperature_c: float | None = None

    def prepare(self) -> "EnergySession":
        """Build the tracker, load the meters (plugins too) and detect the hardware now; note the GPU's
        resting temperature."""
        from backend.measure.energy import registry
        for meter in registry.window_meters():
            try:
                meter.prepare()
            except Exception:  # noqa: BLE001 - a meter that cannot prepare says so in its window
                pass
        try:
            tracker = self.tracker()
            # the first task also loads the emissions engine and country data (~0.2 s): pay it here
            tracker.start_task("greentui-warm-up")
            tracker.stop_task()
        except Exception:  # noqa: BLE001 - recorded per task when a window asks for it
            pass
        if self.use_nvml:
            nv = shared_nvml()
            if nv.available:
                self.pre_run_temperature_c = nv.temperature_c()
        return self

    def tracker(self) -> Any:
        """The run's one tracker (built on first use); raises what building it raised."""
        if self._error is not None:
            raise self._error
        if self._tracker is None:
            try:
                quiet_codecarbon()
                from codecarbon import OfflineEmissionsTracker

                kwargs: dict[str, Any] = dict(
                    country_iso_code=self.country, measure_power_secs=self.measure_power_secs,
                    tracking_mode=self.tracking_mode, output_methods=[], log_level="error",
                    allow_multiple_runs=True, project_name="greentui", output_dir=null_dir())
                nv = shared_nvml() if self.use_nvml else None
                if nv is not None and nv.available:
                    kwargs["gpu_ids"] = nv.indices
                tracker = OfflineEmissionsTracker(**kwargs)
                tracker._ensure_hardware_ready()  # detection (~2 s first time) outside any window
                self._tracker = tracker
            except Exception as exc:  # noqa: BLE001
                self._error = exc
                raise
        return self._tracker

    def task(self, label: str) -> TaskEnergyMeter:
        """A meter for one window (a task, or one repeat of it)."""
        return TaskEnergyMeter(country=self.country, measure_power_secs=self.measure_power_secs,
                               tracking_mode=self.tracking_mode, use_codecarbon=self.use_codecarbon,
                               use_nvml=self.use_nvml, label=label, session=self)

    def cooldown(self, tolerance_c: float = COOLDOWN_TOLERANCE_C, max_s: float = COOLDOWN_MAX_S,
                 poll_s: float = 1.0) -> dict[str, Any]:
        """Wait until the GPU is back within ``tolerance_c`` of its pre-run temperature (at most
        ``max_s``). Without NVML nothing is waited for and the record says why."""
        return cooldown_gate(self.pre_run_temperature_c, tolerance_c=tolerance_c, max_s=max_s,
                             poll_s=poll_s, use_nvml=self.use_nvml)


def cooldown_gate(target_c: float | None, *, tolerance_c: float = COOLDOWN_TOLERANCE_C,
                  max_s: float = COOLDOWN_MAX_S, poll_s: float = 1.0, use_nvml: bool = True) -> dict[str, Any]:
    """The ``--cooldown`` gate between tasks; returns what happened (never raises)."""
    nv = shared_nvml() if use_nvml else None
    if nv is None or not nv.available:
        return {"skipped": (nv.reason if nv is not None else None) or "NVML not in use",
                "waited_s": 0.0}
    if target_c is None:
        return {"skipped": "no pre-run GPU temperature recorded", "waited_s": 0.0}
    t0 = time.monotonic()
    start = now = nv.temperature_c()
    while now is not None and now > target_c + tolerance_c and time.monotonic() - t0 < max_s:
        time.sleep(poll_s)
        now = nv.temperature_c()
    waited = time.monotonic() - t0
    reached = now is not None and now <= target_c + tolerance_c
    return {"target_c": target_c, "tolerance_c": tolerance_c, "start_c": start, "end_c": now,
            "waited_s": round(waited, 2), "reached": reached}
