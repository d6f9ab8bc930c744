"""``wallfile``: a whole-machine energy counter read from a file (a smart plug's exporter).

One module and one entry point: everything greentui needs from a meter is the contract in
``backend.measure.energy.meter``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from backend.measure.energy.meter import COUNTER, LivePower, Meter, Reading, Window, missing

ENV = "GREENTUI_WALLFILE"


def _path() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def _read(path: Path) -> float:
    return float(path.read_text().strip())


class WallFileMeter(Meter):
    name = "wallfile"
    label = "wall socket (file)"
    kind = COUNTER
    rank = 5
    live_rank = 5
    covers = ("cpu", "gpu", "ram")

    def unavailable(self) -> str | None:
        path = _path()
        if path is None:
            return f"${ENV} is not set"
        try:
            _read(path)
        except (OSError, ValueError) as exc:
            return f"{path}: no counter ({type(exc).__name__})"
        return None

    def start(self, window: Window) -> Any:
        path = _path()
        assert path is not None
        return (path, _read(path))

    def stop(self, token: Any, window: Window) -> Reading:
        path, before = token
        try:
            joules = _read(path) - before
        except (OSError, ValueError) as exc:
            return missing(self, f"{path}: {exc}")
        return Reading(meter=self.name, joules=joules, kind=COUNTER, tag="wallfile", covers=self.covers,
                       detail={"wallfile": str(path)})

    def live(self) -> LivePower:
        return _Live()


class _Live(LivePower):
    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def read(self) -> tuple[float | None, float | None]:
        path = _path()
        if path is None:
            return None, None
        now, value = time.monotonic(), _read(path)
        prev, self._last = self._last, (now, value)
        if prev is None:
            return None, None
        return (value - prev[1]) / max(now - prev[0], 1e-6), None
