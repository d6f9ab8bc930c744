"""Idle power: the machine's draw before a run, so energy above idle can be told from the total."""

from __future__ import annotations

import time
from typing import Any

from backend.measure.energy.sampler import PowerSource


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
            "limit_w": limit, "is_estimate": src.is_estimate,
            "missing": src.reasons or None}
