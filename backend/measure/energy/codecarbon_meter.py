"""CodeCarbon (meter ``codecarbon``): the study's meter, an OfflineEmissionsTracker per window.

CodeCarbon's tracking mode defaults to **process**: CPU power is attributed from this process tree's
CPU time (no idle floor) and RAM from its resident memory. A benchmark box is often shared (other
users, the TUI, a notebook), and "machine" mode would charge their load — and a 10 %-of-TDP idle
floor — to whichever task happens to be running. GPU energy is per device either way (NVML cannot
attribute it to processes), which is why one run per GPU is the rule. "machine" stays selectable for
a dedicated box where wall-socket-like totals are wanted.

Its reading is a counter where CodeCarbon read one (the GPUs through NVML, the CPU through RAPL) and
an estimate otherwise; where it is an estimate, the ``cpu-time`` meter's figure is the run's total
(:func:`backend.measure.energy.registry.total`) and CodeCarbon's is kept beside it for comparison.
A tracker that fails is recorded as missing with the reason; it never kills the evaluation.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

from backend.measure.energy.common import J_PER_KWH, null_dir, quiet_codecarbon
from backend.measure.energy.meter import COUNTER, ESTIMATE, Meter, MeterInfo, Reading, Window, missing
from backend.measure.energy.nvml import shared_nvml

# CodeCarbon CPU modes that read a hardware energy counter (everything else is a model).
_MEASURED_CPU_MODES = {"intel_rapl": "rapl", "rapl": "rapl", "intel_power_gadget": "power_gadget",
                       "apple_powermetrics": "powermetrics"}


class CodeCarbonMeter(Meter):
    """One CodeCarbon window: the run's tracker (task API) when a session holds one, else its own."""

    name = "codecarbon"
    label = "CodeCarbon"
    kind = ESTIMATE          # a counter only where a reading says so (NVML or RAPL inside)
    rank = 30
    covers = ("cpu", "gpu", "ram")
    aliases = ("codecarbon-estimate",)  # the live CPU estimate's name before the registry

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("codecarbon") else "codecarbon is not installed"

    def make_tracker(self, window: Window) -> Any:
        """A tracker for one window (no session): quiet, offline, never writing into the cwd."""
        quiet_codecarbon()
        from codecarbon import OfflineEmissionsTracker

        opts = window.options
        kwargs: dict[str, Any] = dict(
            country_iso_code=opts.get("country", "USA"),
            measure_power_secs=opts.get("measure_power_secs", 1.0),
            tracking_mode=opts.get("tracking_mode", "process"),
            output_methods=[],          # = save_to_file/api/logger/... False (those flags are deprecated)
            log_level="error",
            allow_multiple_runs=True,   # no /tmp lock file, no signal handlers installed
            project_name=window.label,
            output_dir=null_dir(),      # never write into the user's cwd even if a config says so
        )
        nv = shared_nvml() if opts.get("use_nvml", True) else None
        if nv is not None and nv.available:
            kwargs["gpu_ids"] = nv.indices
        return OfflineEmissionsTracker(**kwargs)

    def start(self, window: Window) -> Any:
        try:
            if window.session is not None:
                tracker = window.session.tracker()
                tracker.start_task(window.label)
            else:
                tracker = self.make_tracker(window)
                tracker.start()
        except Exception as exc:  # noqa: BLE001
            return {"error": f"start failed: {type(exc).__name__}: {exc}"}
        return {"tracker": tracker}

    def stop(self, token: Any, window: Window) -> Reading:
        opts = window.options
        detail: dict[str, Any] = {"tracking_mode": opts.get("tracking_mode", "process"),
                                  "country": opts.get("country", "USA"),
                                  "measure_power_secs": opts.get("measure_power_secs", 1.0),
                                  "tracker": "one per run (task API)" if window.session else "one per task"}
        version = _codecarbon_version()
        if version:
            detail["codecarbon_version"] = version
        if "error" in token:
            reading = missing(self, token["error"])
            reading.detail.update(detail)
            return reading
        tracker = token["tracker"]
        try:
            if window.session is not None:
                data = tracker.stop_task()
            else:
                tracker.stop()
                data = tracker.final_emissions_data
        except Exception as exc:  # noqa: BLE001
            data, why = None, f"stop failed: {type(exc).__name__}: {exc}"
        else:
            why = "stop() returned no data"
        if data is None:
            reading = missing(self, why)
            reading.detail.update(detail)
            return reading
        cpu_mode = _cpu_mode(tracker)
        gpu_count = int(getattr(data, "gpu_count", 0) or 0)
        parts, estimated = [], []
        if cpu_mode in _MEASURED_CPU_MODES:
            parts.append(_MEASURED_CPU_MODES[cpu_mode])
        else:
            parts.append(f"{cpu_mode or 'cpu'}-estimate")
            estimated.append("cpu")
        parts.append("ram-estimate")
        estimated.append("ram")
        if gpu_count:
            parts.insert(0, "gpu-nvml")
        detail.update(cpu_model=data.cpu_model, cpu_count=data.cpu_count, gpu_model=data.gpu_model,
                      gpu_count=gpu_count, cpu_power_w=data.cpu_power, ram_power_w=data.ram_power,
                      gpu_power_w=data.gpu_power, codecarbon_duration_s=data.duration,
                      codecarbon_cpu_mode=cpu_mode, cpu_mode=cpu_mode, emissions_kg=data.emissions,
                      estimated_parts=estimated)
        counter = bool(gpu_count) or cpu_mode in _MEASURED_CPU_MODES
        return Reading(meter=self.name, joules=float(data.energy_consumed) * J_PER_KWH,
                       kind=COUNTER if counter else ESTIMATE, tag="codecarbon:" + "+".join(parts),
                       covers=("cpu", "gpu", "ram") if gpu_count else ("cpu", "ram"),
                       parts={"cpu": float(data.cpu_energy) * J_PER_KWH,
                              "gpu": float(data.gpu_energy) * J_PER_KWH,
                              "ram": float(data.ram_energy) * J_PER_KWH},
                       detail=detail)

    def describe(self, recorded: str) -> MeterInfo:
        """``codecarbon:gpu-nvml+…`` and ``codecarbon:rapl+…`` read a counter; the rest is a model."""
        if "gpu-nvml" in recorded:
            return MeterInfo(self.name, "NVML", COUNTER)
        if "rapl" in recorded.split(":", 1)[-1].split("+"):
            return MeterInfo(self.name, "RAPL", COUNTER)
        return MeterInfo(self.name, self.label, ESTIMATE)


def _cpu_mode(tracker: Any) -> str | None:
    for hw in getattr(tracker, "_hardware", []) or []:
        if type(hw).__name__ == "CPU":
            return getattr(hw, "_mode", None)
    return None


_WARM = False


def warm_up(country: str = "USA") -> None:
    """Start and stop one throwaway tracker: CodeCarbon's first start detects the hardware (~1.7 s
    here, py-cpuinfo), which would otherwise land inside the first task's seconds and RAM energy."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    from backend.measure.energy.window import TaskEnergyMeter
    try:
        with TaskEnergyMeter(country=country, measure_power_secs=60, use_nvml=False, label="greentui-warmup"):
            pass
    except Exception:  # noqa: BLE001 - a real measurement will record the failure
        pass


@lru_cache(maxsize=1)
def _codecarbon_version() -> str | None:
    """Read once: importlib.metadata scans site-packages (tens of ms) on every call."""
    import importlib.metadata as md

    try:
        return md.version("codecarbon")
    except md.PackageNotFoundError:
        return None
