"""RAPL: the CPU packages' energy counters under /sys/class/powercap, when readable.

Most VMs (and unprivileged users on recent kernels) cannot read them; ``available`` says so and
``reason`` says why, so callers fall back to the CPU estimate and label it as one.
"""

from __future__ import annotations

from pathlib import Path

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
