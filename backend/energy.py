"""Energy meters: CodeCarbon per task, NVML's energy counter on NVIDIA GPUs, a live power sampler.

Honesty rules (design.md): every figure names the meter that produced it, and an estimate is never
presented as a measurement. On a machine without RAPL and without an NVIDIA GPU, CodeCarbon's CPU
figure is a TDP x CPU-load model ("cpu_load" mode) and its RAM figure is a model of the DIMMs; both
are estimates and the meter string says so (``codecarbon:cpu_load-estimate+ram-estimate``).

CodeCarbon's tracking mode defaults to **process**: CPU power is attributed from this process tree's
CPU time (no idle floor) and RAM from its resident memory. A benchmark box is often shared (other
users, the TUI, a notebook), and "machine" mode would charge their load — and a 10 %-of-TDP idle
floor — to whichever task happens to be running. GPU energy is per device either way (NVML cannot
attribute it to processes), which is why one run per GPU is the rule. "machine" stays selectable for
a dedicated box where wall-socket-like totals are wanted.

Nothing here may kill an evaluation: a meter that fails is recorded as missing (None) with the reason
in ``provenance``. codecarbon, pynvml and torch are imported lazily.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

J_PER_KWH = 3.6e6
TRACKING_MODES = ("process", "machine")
RAPL_ROOT = Path("/sys/class/powercap")
DEFAULT_W_PER_THREAD = 4.0  # CodeCarbon's DEFAULT_POWER_PER_CORE for CPUs missing from its database

# CodeCarbon CPU modes that read a hardware energy counter (everything else is a model).
_MEASURED_CPU_MODES = {"intel_rapl": "rapl", "rapl": "rapl", "intel_power_gadget": "power_gadget",
                       "apple_powermetrics": "powermetrics"}


# ----------------------------------------------------------------------------------------- helpers

def quiet_codecarbon() -> None:
    """Silence CodeCarbon's logger (it logs INFO/WARNING before ``log_level`` takes effect).

    Importing codecarbon resets its logger to INFO (or $CODECARBON_LOG_LEVEL), so import first.
    """
    try:
        import codecarbon.external.logger  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    lg = logging.getLogger("codecarbon")
    lg.setLevel(logging.ERROR)
    lg.propagate = False


def _torch_cuda():
    """torch.cuda if torch is already imported and CUDA is usable; never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break metering
        return None


def cuda_synchronize() -> None:
    cuda = _torch_cuda()
    if cuda is None:
        return
    try:
        if cuda.is_initialized():
            for i in range(cuda.device_count()):
                cuda.synchronize(i)
    except Exception:  # noqa: BLE001
        pass


class Nvml:
    """NVML handles of the GPUs this process can see (CUDA_VISIBLE_DEVICES respected).

    ``available`` is False (with ``reason``) when there is no NVIDIA driver or no GPU.
    """

    def __init__(self) -> None:
        self.available = False
        self.reason: str | None = None
        self.handles: list[Any] = []
        self.names: list[str] = []
        self.indices: list[int] = []
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"nvidia-ml-py not importable: {exc}"
            return
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = f"NVML unavailable: {exc}"
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            all_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [_decode(pynvml.nvmlDeviceGetUUID(h)) for h in all_handles]
            picked = _visible_nvml_indices(uuids)
            self.indices = picked
            self.handles = [all_handles[i] for i in picked]
            self.names = [_decode(pynvml.nvmlDeviceGetName(h)) for h in self.handles]
        except Exception as exc:  # noqa: BLE001
            self.reason = f"NVML device query failed: {exc}"
            return
        if not self.handles:
            self.reason = "no NVIDIA GPU visible"
            return
        self.available = True

    def energy_mj(self) -> list[int | None]:
        """Cumulative energy counters (mJ) per visible GPU; None where unsupported (pre-Volta, MIG)."""
        out: list[int | None] = []
        for h in self.handles:
            try:
                out.append(int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)))
            except Exception:  # noqa: BLE001
                out.append(None)
        return out

    def power(self) -> tuple[float | None, float | None]:
        """(sum of instant power draw W, sum of enforced power limits W) over the visible GPUs."""
        watts = 0.0
        limit = 0.0
        got_w = got_l = False
        for h in self.handles:
            try:
                watts += self._nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
                got_w = True
            except Exception:  # noqa: BLE001
                pass
            try:
                limit += self._nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
                got_l = True
            except Exception:  # noqa: BLE001
                pass
        return (watts if got_w else None), (limit if got_l else None)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible_nvml_indices(nvml_uuids: list[str]) -> list[int]:
    """Map the CUDA devices this process sees to NVML indices (NVML ignores CUDA_VISIBLE_DEVICES)."""
    cuda = _torch_cuda()
    if cuda is not None:
        try:
            picked = []
            for i in range(cuda.device_count()):
                uuid = "GPU-" + str(cuda.get_device_properties(i).uuid)
                if uuid in nvml_uuids:
                    picked.append(nvml_uuids.index(uuid))
            if picked:
                return picked
        except Exception:  # noqa: BLE001 - fall back to the environment variable
            pass
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(len(nvml_uuids)))
    picked = []
    for item in (p.strip() for p in env.split(",")):
        if not item:
            continue
        if item.isdigit():
            if int(item) < len(nvml_uuids):
                picked.append(int(item))
            else:
                break  # CUDA stops at the first invalid ordinal
        else:
            match = [i for i, u in enumerate(nvml_uuids) if u.startswith(item if item.startswith("GPU-") else "GPU-" + item)]
            if not match:
                break
            picked.append(match[0])
    return picked


class Rapl:
    """Package-level RAPL energy counters from /sys/class/powercap, when readable."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.files: list[tuple[Path, int]] = []
        self.reason: str | None = None
        try:
            zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        except OSError as exc:
            zones = []
            self.reason = f"{root} unreadable: {exc}"
        for zone in zones:
            energy = zone / "energy_uj"
            try:
                int(energy.read_text())
                max_range = int((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            self.files.append((energy, max_range))
        if not self.files and self.reason is None:
            self.reason = f"no readable RAPL package domain under {root}"

    @property
    def available(self) -> bool:
        return bool(self.files)

    def read_uj(self) -> list[int]:
        return [int(f.read_text()) for f, _ in self.files]

    def delta_j(self, before: list[int], after: list[int]) -> float:
        total = 0
        for (_, max_range), a, b in zip(self.files, before, after):
            total += (b - a) if b >= a else (max_range - a + b)  # counter wrapped
        return total / 1e6


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


# --------------------------------------------------------------------------------- per-task meter

def _country(code: str) -> str:
    code = (code or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        from .errors import GreentuiError

        raise GreentuiError(f"country must be a 3-letter ISO code such as USA, FRA or DEU, got {code!r}")
    return code


class TaskEnergyMeter:
    """Measure one task: a CodeCarbon OfflineEmissionsTracker plus NVML counter deltas.

    Use as a context manager; read ``result`` afterwards (also available if the body raised)::

        with TaskEnergyMeter(country="FRA") as meter:
            run_task()
        meter.result["energy_kwh"], meter.result["meter"]
    """

    def __init__(self, *, country: str = "USA", measure_power_secs: float = 1.0,
                 tracking_mode: str = "process", use_codecarbon: bool = True, use_nvml: bool = True,
                 label: str = "greentui") -> None:
        if tracking_mode not in TRACKING_MODES:
            raise ValueError(f"tracking_mode must be one of {TRACKING_MODES}")
        self.country = _country(country)
        self.measure_power_secs = measure_power_secs
        self.tracking_mode = tracking_mode
        self.use_codecarbon = use_codecarbon
        self.use_nvml = use_nvml
        self.label = label
        self.result: dict[str, Any] | None = None
        self._tracker = None
        self._nvml: Nvml | None = None
        self._nvml_start: list[int | None] = []
        self._errors: dict[str, str] = {}
        self._t0 = 0.0

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> "TaskEnergyMeter":
        if self.use_nvml:
            self._nvml = _shared_nvml()
            if self._nvml.available:
                cuda_synchronize()
                self._nvml_start = self._nvml.energy_mj()
            else:
                self._errors["nvml"] = self._nvml.reason or "unavailable"
        if self.use_codecarbon:
            try:
                self._tracker = self._make_tracker()
                self._tracker.start()
            except Exception as exc:  # noqa: BLE001
                self._tracker = None
                self._errors["codecarbon"] = f"start failed: {type(exc).__name__}: {exc}"
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        cuda_synchronize()
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
        data = None
        if self._tracker is not None:
            try:
                self._tracker.stop()
                data = self._tracker.final_emissions_data
                if data is None:
                    self._errors["codecarbon"] = "stop() returned no data"
            except Exception as exc:  # noqa: BLE001
                self._errors["codecarbon"] = f"stop failed: {type(exc).__name__}: {exc}"
        self.result = self._build_result(data, nvml_j, per_gpu_j, seconds)

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
            output_dir=_null_dir(),     # never write into the user's cwd even if a config says so
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
        import importlib.metadata as md

        prov: dict[str, Any] = {"tracking_mode": self.tracking_mode, "country": self.country,
                                "measure_power_secs": self.measure_power_secs}
        try:
            prov["codecarbon_version"] = md.version("codecarbon")
        except md.PackageNotFoundError:
            pass
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


_NVML: Nvml | None = None
_NVML_LOCK = threading.Lock()
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


def _shared_nvml() -> Nvml:
    global _NVML
    with _NVML_LOCK:
        if _NVML is None:
            _NVML = Nvml()
        return _NVML


def _null_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


# ---------------------------------------------------------------------------------- live power

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
            nv = _shared_nvml()
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


def idle_power(seconds: float = 2.0, interval: float = 0.2) -> dict[str, Any]:
    """Average power over ``seconds`` before a run: {watts, source, samples, seconds, is_estimate}."""
    src = PowerSource()
    src.read()  # prime RAPL / CPU-time counters
    readings: list[float] = []
    limit = None
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        time.sleep(interval)
        w, lim = src.read()
        if w is not None:
            readings.append(w)
            limit = lim if lim is not None else limit
    watts = sum(readings) / len(readings) if readings else None
    return {"watts": watts, "source": src.kind, "samples": len(readings), "seconds": seconds,
            "limit_w": limit, "is_estimate": src.kind == "codecarbon-estimate",
            "missing": src.reasons or None}


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
