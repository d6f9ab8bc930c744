"""RAPL (meter ``rapl``): the CPU packages' energy counters under /sys/class/powercap, when readable.

Most VMs (and unprivileged users on recent kernels) cannot read them; ``unavailable`` says why, so
the window falls back to the CPU estimate and labels it as one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.measure.energy.meter import COUNTER, LivePower, Meter, MeterInfo, Reading, Window, missing

RAPL_ROOT = Path("/sys/class/powercap")


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


class RaplMeter(Meter):
    """The CPU packages' counters as a registered meter (a measurement of the CPU alone)."""

    name = "rapl"
    label = "RAPL"
    kind = COUNTER
    rank = 10
    live_rank = 20
    covers = ("cpu",)

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.root = root
        self._rapl: Rapl | None = None

    def rapl(self) -> Rapl:
        if self._rapl is None:
            self._rapl = Rapl(self.root)
        return self._rapl

    def unavailable(self) -> str | None:
        r = self.rapl()
        return None if r.available else (r.reason or "unavailable")

    def start(self, window: Window) -> Any:
        return self.rapl().read_uj()

    def stop(self, token: Any, window: Window) -> Reading:
        try:
            joules = self.rapl().delta_j(token, self.rapl().read_uj())
        except (OSError, ValueError) as exc:
            return missing(self, f"RAPL read failed: {exc}")
        return Reading(meter=self.name, joules=joules, kind=COUNTER, tag="rapl", covers=self.covers,
                       parts={"cpu": joules})

    def live(self) -> LivePower:
        return _RaplLive(self.rapl())

    def describe(self, recorded: str) -> MeterInfo:
        return MeterInfo(self.name, self.label, COUNTER)


class _RaplLive(LivePower):
    def __init__(self, rapl: Rapl) -> None:
        self.rapl = rapl
        self._last: tuple[float, list[int]] | None = None

    def read(self) -> tuple[float | None, float | None]:
        now, vals = time.monotonic(), self.rapl.read_uj()
        prev, self._last = self._last, (now, vals)
        if prev is None:
            return None, None
        return self.rapl.delta_j(prev[1], vals) / max(now - prev[0], 1e-6), None
