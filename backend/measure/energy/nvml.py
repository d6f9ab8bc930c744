"""NVML: the GPUs' cumulative energy counters and instant power (NVIDIA only).

The energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and later) is the meter to
trust on a GPU: sampled power sees only a fraction of the runtime. NVML ignores CUDA_VISIBLE_DEVICES,
so the handles are mapped to the devices this process actually sees. pynvml is imported lazily.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from backend.measure.energy.common import torch_cuda
from backend.measure.energy.meter import COUNTER, LivePower, Meter, MeterInfo, Reading, Window, missing

#: NVML's energy counter updates about every 100 ms (Zeus, ML.ENERGY): a window much shorter than
#: 1 s is dominated by the counter's granularity and is flagged.
MIN_COUNTER_WINDOW_S = 1.0


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


    def snapshot(self) -> list[dict[str, Any]]:
        """The state that moves energy figures, per visible GPU: name, driver, enforced power limit,
        SM and memory clocks, temperature and power now. A field NVML refuses is None."""
        out: list[dict[str, Any]] = []
        nv = self._nvml
        try:
            driver = _decode(nv.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            driver = None
        for name, h in zip(self.names, self.handles):
            out.append({
                "name": name, "driver": driver,
                "power_limit_w": _try(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                "sm_clock_mhz": _try(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                "mem_clock_mhz": _try(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
                "temperature_c": _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                "power_w": _try(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
            })
        return out

    def temperature_c(self) -> float | None:
        """The hottest visible GPU's temperature (°C), or None."""
        temps = [s["temperature_c"] for s in self.snapshot() if s["temperature_c"] is not None]
        return float(max(temps)) if temps else None


def _try(read: Any) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - NVML_ERROR_NOT_SUPPORTED on some boards
        return None


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible_nvml_indices(nvml_uuids: list[str]) -> list[int]:
    """Map the CUDA devices this process sees to NVML indices (NVML ignores CUDA_VISIBLE_DEVICES)."""
    cuda = torch_cuda()
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




_NVML: Nvml | None = None
_NVML_LOCK = threading.Lock()


def shared_nvml() -> Nvml:
    """One NVML session per process (nvmlInit once; handles reused by every meter)."""
    global _NVML
    with _NVML_LOCK:
        if _NVML is None:
            _NVML = Nvml()
        return _NVML


class NvmlMeter(Meter):
    """The visible GPUs' energy counters as a registered meter (the GPUs alone, measured)."""

    name = "nvml"
    label = "NVML"
    kind = COUNTER
    rank = 0
    live_rank = 10
    min_window_s = MIN_COUNTER_WINDOW_S
    covers = ("gpu",)

    def unavailable(self) -> str | None:
        nv = shared_nvml()
        return None if nv.available else (nv.reason or "unavailable")

    def start(self, window: Window) -> Any:
        nv = shared_nvml()
        return {"gpu_start": nv.snapshot(), "mj": nv.energy_mj()}

    def stop(self, token: Any, window: Window) -> Reading:
        nv = shared_nvml()
        end = nv.energy_mj()
        per_gpu = [(e - s) / 1000.0 if s is not None and e is not None else None
                   for s, e in zip(token["mj"], end)]
        detail: dict[str, Any] = {"gpu_state": {"start": token["gpu_start"], "end": nv.snapshot()}}
        if not per_gpu or any(j is None for j in per_gpu):
            reading = missing(self, "nvmlDeviceGetTotalEnergyConsumption not supported on every visible "
                                    "GPU (pre-Volta or MIG)")
            reading.detail.update(detail)
            return reading
        joules = float(sum(j for j in per_gpu if j is not None))
        detail.update(nvml_gpus=nv.names, nvml_joules_per_gpu=per_gpu)
        return Reading(meter=self.name, joules=joules, kind=COUNTER, tag="nvml", covers=self.covers,
                       parts={"gpu": joules}, detail=detail)

    def live(self) -> LivePower:
        return _NvmlLive(shared_nvml())

    def describe(self, recorded: str) -> MeterInfo:
        return MeterInfo(self.name, self.label, COUNTER)


class _NvmlLive(LivePower):
    def __init__(self, nv: Nvml) -> None:
        self.nv = nv

    def read(self) -> tuple[float | None, float | None]:
        return self.nv.power()
