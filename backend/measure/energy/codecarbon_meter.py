"""The per-task meter: a CodeCarbon OfflineEmissionsTracker plus NVML counter deltas.

CodeCarbon's tracking mode defaults to **process**: CPU power is attributed from this process tree's
CPU time (no idle floor) and RAM from its resident memory. A benchmark box is often shared (other
users, the TUI, a notebook), and "machine" mode would charge their load — and a 10 %-of-TDP idle
floor — to whichever task happens to be running. GPU energy is per device either way (NVML cannot
attribute it to processes), which is why one run per GPU is the rule. "machine" stays selectable for
a dedicated box where wall-socket-like totals are wanted.

A meter that fails is recorded as missing (None) with the reason in ``provenance``; it never kills
the evaluation it measures.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from backend.measure.energy.common import TRACKING_MODES, check_country, cuda_synchronize, null_dir, quiet_codecarbon
from backend.measure.energy.nvml import Nvml, shared_nvml

if TYPE_CHECKING:
    from backend.measure.energy.session import EnergySession

#: NVML's energy counter updates about every 100 ms (Zeus, ML.ENERGY): a window much shorter than
#: 1 s is dominated by the counter's granularity and is flagged.
MIN_COUNTER_WINDOW_S = 1.0

# CodeCarbon CPU modes that read a hardware energy counter (everything else is a model).
_MEASURED_CPU_MODES = {"intel_rapl": "rapl", "rapl": "rapl", "intel_power_gadget": "power_gadget",
                       "apple_powermetrics": "powermetrics"}


class TaskEnergyMeter:
    """Measure one task: a CodeCarbon OfflineEmissionsTracker plus NVML counter deltas.

    Use as a context manager; read ``result`` afterwards (also available if the body raised)::

        with TaskEnergyMeter(country="FRA") as meter:
            run_task()
        meter.result["energy_kwh"], meter.result["meter"]
    """

    def __init__(self, *, country: str = "USA", measure_power_secs: float = 1.0,
                 tracking_mode: str = "process", use_codecarbon: bool = True, use_nvml: bool = True,
                 label: str = "greentui", session: "EnergySession | None" = None) -> None:
        if tracking_mode not in TRACKING_MODES:
            raise ValueError(f"tracking_mode must be one of {TRACKING_MODES}")
        self.country = check_country(country)
        self.measure_power_secs = measure_power_secs
        self.tracking_mode = tracking_mode
        self.use_codecarbon = use_codecarbon
        self.use_nvml = use_nvml
        self.label = label
        self.session = session
        self.result: dict[str, Any] | None = None
        self._tracker = None
        self._nvml: Nvml | None = None
        self._nvml_start: list[int | None] = []
        self._errors: dict[str, str] = {}
        self._t0 = 0.0
        self._synced = False
        self._gpu_start: list[dict[str, Any]] | None = None

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> "TaskEnergyMeter":
        if self.use_nvml:
            self._nvml = shared_nvml()
            if self._nvml.available:
                self._gpu_start = self._nvml.snapshot()
            else:
                self._errors["nvml"] = self._nvml.reason or "unavailable"
        self._synced = cuda_synchronize()  # the window opens on an idle queue
        if self._nvml is not None and self._nvml.available:
            self._nvml_start = self._nvml.energy_mj()
        if self.use_codecarbon:
            try:
                if self.session is not None:
                    self._tracker = self.session.tracker()
                    self._tracker.start_task(self.label)
                else:
                    self._tracker = self._make_tracker()
                    self._tracker.start()
            except Exception as exc:  # noqa: BLE001
                self._tracker = None
                self._errors["codecarbon"] = f"start failed: {type(exc).__name__}: {exc}"
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._synced = cuda_synchronize() or self._synced  # the window closes on finished kernels
        seconds = time.perf_counter() - self._t0
        nvml_j = None
        per_gpu_j: list[float | None] = []
        if self._nvml is not None and self._nvml.available:
            end = self._nvml.energy_mj()
            per_gpu_j = [(e - s) / 1000.0 if s is not None and e is not None else None
                         for s, e in zip(self._nvml_start, end)]
            if per_gpu_j and all(j is not None for j in per_gpu_j):
                nvml_j = float(sum(per_gpu_j))  # type: ignore[arg-type]
            else:
                self._errors["nvml"] = ("nvmlDeviceGetTotalEnergyConsumption not supported on "
                                        "every visible GPU (pre-Volta or MIG)")
        gpu_end = self._nvml.snapshot() if self._gpu_start is not None and self._nvml is not None else None
        data = None
        if self._tracker is not None:
            try:
                if self.session is not None:
                    data = self._tracker.stop_task()
                else:
                    self._tracker.stop()
                    data = self._tracker.final_emissions_data
                if data is None:
                    self._errors["codecarbon"] = "stop() returned no data"
            except Exception as exc:  # noqa: BLE001
                self._errors["codecarbon"] = f"stop failed: {type(exc).__name__}: {exc}"
        self.result = self._build_result(data, nvml_j, per_gpu_j, seconds)
        self.result["provenance"].update(window_flags(seconds, nvml_j is not None, self._synced))
        if self._gpu_start is not None:
            self.result["provenance"]["gpu_state"] = {"start": self._gpu_start, "end": gpu_end}

    # ---------------------------------------------------------------- internals
    def _make_tracker(self):
        quiet_codecarbon()
        from codecarbon import OfflineEmissionsTracker

        kwargs: dict[str, Any] = dict(
            country_iso_code=self.country,
            measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode,
            output_methods=[],          # = save_to_file/api/logger/... False (those flags are deprecated)
            log_level="error",
            allow_multiple_runs=True,   # no /tmp lock file, no signal handlers installed
            project_name=self.label,
            output_dir=null_dir(),     # never write into the user's cwd even if a config says so
        )
        if self._nvml is not None and self._nvml.available:
            kwargs["gpu_ids"] = self._nvml.indices
        return OfflineEmissionsTracker(**kwargs)

    def _cpu_mode(self) -> str | None:
        for hw in getattr(self._tracker, "_hardware", []) or []:
            if type(hw).__name__ == "CPU":
                return getattr(hw, "_mode", None)
        return None

    def _build_result(self, data, nvml_j, per_gpu_j, seconds) -> dict[str, Any]:
        prov: dict[str, Any] = {"tracking_mode": self.tracking_mode, "country": self.country,
                                "measure_power_secs": self.measure_power_secs,
                                "tracker": "one per run (task API)" if self.session else "one per task"}
        version = _codecarbon_version()
        if version:
            prov["codecarbon_version"] = version
        cpu_kwh = gpu_kwh = ram_kwh = total_kwh = None
        cpu_mode = None
        parts: list[str] = []
        estimated: list[str] = []
        gpu_count = 0
        if data is not None:
            cpu_kwh, gpu_kwh, ram_kwh = float(data.cpu_energy), float(data.gpu_energy), float(data.ram_energy)
            total_kwh = float(data.energy_consumed)
            cpu_mode = self._cpu_mode()
            gpu_count = int(getattr(data, "gpu_count", 0) or 0)
            prov.update(cpu_model=data.cpu_model, cpu_count=data.cpu_count, gpu_model=data.gpu_model,
                        gpu_count=gpu_count, cpu_power_w=data.cpu_power, ram_power_w=data.ram_power,
                        gpu_power_w=data.gpu_power, codecarbon_duration_s=data.duration,
                        codecarbon_cpu_mode=cpu_mode, emissions_kg=data.emissions)
            if cpu_mode in _MEASURED_CPU_MODES:
                parts.append(_MEASURED_CPU_MODES[cpu_mode])
            else:
                parts.append(f"{cpu_mode or 'cpu'}-estimate")
                estimated.append("cpu")
            parts.append("ram-estimate")
            estimated.append("ram")
            if gpu_count:
                parts.insert(0, "gpu-nvml")
        meter_bits = []
        if nvml_j is not None:
            meter_bits.append("nvml")
            prov["nvml_gpus"] = self._nvml.names if self._nvml else []
            prov["nvml_joules_per_gpu"] = per_gpu_j
        if data is not None:
            meter_bits.append("codecarbon:" + "+".join(parts))
        meter = "+".join(meter_bits) if meter_bits else None
        if self._errors:
            prov["missing"] = dict(self._errors)
        prov["estimated_parts"] = estimated
        return {
            "energy_cpu_kwh": cpu_kwh,
            "energy_gpu_kwh": gpu_kwh,
            "energy_ram_kwh": ram_kwh,
            "energy_kwh": total_kwh,
            "nvml_joules": nvml_j,
            "meter": meter,
            "cpu_mode": cpu_mode,
            "is_estimate": bool(estimated) or data is None,
            "seconds": seconds,
            "provenance": prov,
        }


_WARM = False


def warm_up(country: str = "USA") -> None:
    """Start and stop one throwaway tracker: CodeCarbon's first start detects the hardware (~1.7 s
    here, py-cpuinfo), which would otherwise land inside the first task's seconds and RAM energy."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    try:
        with TaskEnergyMeter(country=country, measure_power_secs=60, use_nvml=False, label="greentui-warmup"):
            pass
    except Exception:  # noqa: BLE001 - a real measurement will record the failure
        pass


def window_flags(seconds: float, on_counter: bool, synced: bool) -> dict[str, Any]:
    """How a window was taken: its length, whether CUDA was synchronised at its edges, and a flag
    when it is shorter than ``MIN_COUNTER_WINDOW_S`` on the NVML counter (too short to trust)."""
    flags: dict[str, Any] = {"window_s": seconds, "cuda_synchronized": synced}
    if on_counter and seconds < MIN_COUNTER_WINDOW_S:
        flags["short_window"] = (f"{seconds:.2f} s window on the NVML counter (updates ~every 0.1 s); "
                                 f"below {MIN_COUNTER_WINDOW_S:g} s the figure is mostly granularity")
    return flags


@lru_cache(maxsize=1)
def _codecarbon_version() -> str | None:
    """Read once: importlib.metadata scans site-packages (tens of ms) on every call."""
    import importlib.metadata as md

    try:
        return md.version("codecarbon")
    except md.PackageNotFoundError:
        return None
