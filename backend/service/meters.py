"""The energy meters, as the UI may see them: a recorded meter name's label and kind.

Why here: the UI never imports ``backend.measure`` (import-linter holds it), yet the power panel must
say whether a sample came from a counter (measured) or a model (estimate) — for plugin meters too.
The answer is the meter registry's (``backend.measure.energy.registry.describe``); this module only
hands it over, and it imports no heavy library.
"""

from __future__ import annotations

from backend.measure.energy import registry


def describe_source(source: str | None) -> tuple[str, bool]:
    """``(label, is_estimate)`` for a live power source or a recorded meter; unknown meters are
    estimates: ``("NVML (measured)", False)``, ``("CPU-time estimate (estimate)", True)``."""
    info = registry.describe(source)
    return (f"{info.label} (estimate)" if info.is_estimate else f"{info.label} (measured)"), info.is_estimate


def meter_status() -> list[tuple[str, str, str, str | None]]:
    """(name, label, kind, None or why it cannot meter here) for every registered meter."""
    return [(m.name, m.label, m.kind, why) for m, why in registry.status()]


def broken_meters() -> dict[str, str]:
    """Meter plugins (``greentui.meters`` entry points) that failed to load, and why."""
    return registry.broken()
