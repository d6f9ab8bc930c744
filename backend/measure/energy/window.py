"""One measurement window (a task, a repeat, a stage): every available meter opened and closed
around the work, with CUDA synchronised at both edges and the machine's other load recorded.

Which meters open, which figure is the window's total and which is the best single figure are the
registry's answers (:mod:`backend.measure.energy.registry`); this module only drives them. The result
keeps the shape the evaluation records (``energy_kwh`` and its parts, ``nvml_joules``, the recorded
``meter`` string, ``is_estimate``, ``provenance``), and ``readings`` holds every meter's figure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from backend.measure.energy import registry
from backend.measure.energy.common import J_PER_KWH, TRACKING_MODES, check_country, cuda_synchronize
from backend.measure.energy.load import LoadWindow
from backend.measure.energy.meter import ESTIMATE, Reading, Window, missing
from backend.measure.energy.nvml import MIN_COUNTER_WINDOW_S

if TYPE_CHECKING:
    from backend.measure.energy.session import EnergySession


class TaskEnergyMeter:
    """Measure one window with every available meter; read ``result`` afterwards (also if the body
    raised)::

        with TaskEnergyMeter(country="FRA") as meter:
            run_task()
        meter.result["energy_kwh"], meter.result["meter"]

    ``use_codecarbon`` / ``use_nvml`` turn those two meters off (a plugin meter is opened whenever it
    is available).
    """

    def __init__(self, *, country: str = "USA", measure_power_secs: float = 1.0,
                 tracking_mode: str = "process", use_codecarbon: bool = True, use_nvml: bool = True,
                 label: str = "greentui", session: "EnergySession | None" = None) -> None:
        if tracking_mode not in TRACKING_MODES:
            raise ValueError(f"tracking_mode must be one of {TRACKING_MODES}")
        self.country = check_country(country)
        self.tracking_mode = tracking_mode
        self.measure_power_secs = measure_power_secs
        self.use_nvml = use_nvml
        self.disabled = {name for name, on in (("codecarbon", use_codecarbon), ("nvml", use_nvml)) if not on}
        self.window = Window(label=label, session=session, options={
            "country": self.country, "measure_power_secs": measure_power_secs,
            "tracking_mode": tracking_mode, "use_nvml": use_nvml})
        self.result: dict[str, Any] | None = None
        self.readings: list[Reading] = []
        self._open: list[tuple[Any, Any]] = []
        self._unavailable: dict[str, str] = {}
        self._load = LoadWindow()
        self._t0 = 0.0
        self._synced = False

    def __enter__(self) -> "TaskEnergyMeter":
        for m, why in registry.status():
            if m.name in self.disabled:
                continue
            if why is not None:
                self._unavailable[m.name] = why
        opened = [m for m in registry.meters() if m.name not in self.disabled and m.name not in self._unavailable]
        self._synced = cuda_synchronize()  # the window opens on an idle queue
        # nested windows: the best-ranked meters open last and close first, so that no meter's own
        # start/stop cost (CodeCarbon's task bookkeeping) lands in a better meter's window
        for m in reversed(opened):
            try:
                self._open.append((m, m.start(self.window)))
            except Exception as exc:  # noqa: BLE001 - a meter never raises into the work
                self.readings.append(missing(m, f"start failed: {type(exc).__name__}: {exc}"))
        self._load.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._synced = cuda_synchronize() or self._synced  # the window closes on finished kernels
        seconds = time.perf_counter() - self._t0
        load = self._load.stop()
        for m, token in reversed(self._open):
            try:
                self.readings.append(m.stop(token, self.window))
            except Exception as exc:  # noqa: BLE001
                self.readings.append(missing(m, f"stop failed: {type(exc).__name__}: {exc}"))
        self.result = self._build_result(seconds, load)

    def best(self) -> Reading | None:
        """The best single figure of this window (a counter before an estimate)."""
        return registry.best(self.readings)

    def _build_result(self, seconds: float, load: dict[str, Any]) -> dict[str, Any]:
        prov: dict[str, Any] = {}
        missing_: dict[str, str] = dict(self._unavailable)
        got = {r.meter: r for r in self.readings}
        for r in sorted(self.readings, key=lambda r: registry.meter(r.meter).rank):
            for key, value in r.detail.items():
                if key == "missing":
                    missing_[r.meter] = value
                else:
                    prov.setdefault(key, value)
        total = registry.total(self.readings)
        prov["meters"] = {r.meter: {"joules": r.joules, "kind": r.kind, "tag": r.tag}
                          for r in self.readings}
        prov["total_meter"] = total.meter if total is not None else None
        estimated: list[str] = []
        if total is not None:
            estimated = list(total.detail.get("estimated_parts") or
                             (list(total.covers) if total.kind == ESTIMATE else []))
        prov["estimated_parts"] = estimated
        prov["machine_load"] = load
        if missing_:
            prov["missing"] = missing_
        prov.update(window_flags(seconds, any(registry.meter(r.meter).min_window_s and r.joules is not None
                                              for r in self.readings), self._synced))
        nvml = got.get("nvml")

        def kwh(part: str | None) -> float | None:
            if total is None:
                return None
            value = total.joules if part is None else total.parts.get(part)
            return None if value is None else value / J_PER_KWH

        tags = [r.tag for r in sorted(self.readings, key=lambda r: registry.meter(r.meter).rank)
                if r.joules is not None]
        return {
            "energy_cpu_kwh": kwh("cpu"),
            "energy_gpu_kwh": kwh("gpu"),
            "energy_ram_kwh": kwh("ram"),
            "energy_kwh": kwh(None),
            "nvml_joules": nvml.joules if nvml is not None else None,
            "meter": "+".join(tags) if tags else None,
            "cpu_mode": prov.get("cpu_mode"),
            "is_estimate": total is None or total.kind == ESTIMATE or bool(prov["estimated_parts"]),
            "seconds": seconds,
            "provenance": prov,
        }


def window_flags(seconds: float, on_counter: bool, synced: bool) -> dict[str, Any]:
    """How a window was taken: its length, whether CUDA was synchronised at its edges, and a flag
    when it is shorter than ``MIN_COUNTER_WINDOW_S`` on a counter with coarse updates (NVML)."""
    flags: dict[str, Any] = {"window_s": seconds, "cuda_synchronized": synced}
    if on_counter and seconds < MIN_COUNTER_WINDOW_S:
        flags["short_window"] = (f"{seconds:.2f} s window on the NVML counter (updates ~every 0.1 s); "
                                 f"below {MIN_COUNTER_WINDOW_S:g} s the figure is mostly granularity")
    return flags
