"""Which energy meters exist: the built-in four and those installed packages add.

Built in: ``nvml`` (NVIDIA energy counter), ``rapl`` (CPU package counters), ``cpu-time`` (the CPU
estimate charged from this process's own CPU time) and ``codecarbon`` (CodeCarbon's tracker, the
study's meter). A package adds one with an entry point of the ``greentui.meters`` group naming a
:class:`~backend.measure.energy.meter.Meter` subclass (or an instance, or a factory)::

    [project.entry-points."greentui.meters"]
    wattmeter = "greentui_wattmeter:SocketMeter"

Plugins load the first time the registry is asked for every meter (``meters()``; ~0.1 s of
importlib.metadata, paid once per process and before any window: ``EnergySession.prepare``). A
plugin that fails to load does not break the others: asking for it by name says why.

Every consumer asks here — the window meter (which meters to open, which figure is the run's total),
the live power feed (``live_source``), the quality badge and the TUI's power panel (``describe``,
through ``backend.service.meters``), ``doctor`` (``status``) — so a new meter is one module and one
registration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from backend.errors import GreentuiError
from backend.measure.energy.meter import COUNTER, KINDS, Meter, MeterInfo, Reading
from backend.plugins import load_entry_points

ENTRY_POINT_GROUP = "greentui.meters"

_REGISTRY: dict[str, Meter] = {}
_ALIASES: dict[str, str] = {}
_BROKEN: dict[str, str] = {}
_loaded = False
_builtins_loaded = False
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def register(meter: Meter | type[Meter] | Callable[[], Meter]) -> Meter:
    """Add a meter (an instance, its class or a factory). Returns it; a bad one is refused by name."""
    made: Any = meter() if callable(meter) and not isinstance(meter, Meter) else meter
    if not isinstance(made, Meter):
        raise TypeError(f"{meter!r} is not a greentui energy Meter")
    if not _NAME.match(made.name or ""):
        raise ValueError(f"meter name {made.name!r}: lower-case letters, digits, - and _ only")
    if made.kind not in KINDS:
        raise ValueError(f"meter {made.name!r}: kind must be one of {KINDS}, not {made.kind!r}")
    _REGISTRY[made.name] = made
    _BROKEN.pop(made.name, None)
    for alias in made.aliases:
        _ALIASES.setdefault(alias, made.name)
    return made


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from backend.measure.energy.codecarbon_meter import CodeCarbonMeter
    from backend.measure.energy.estimate import CpuTimeMeter
    from backend.measure.energy.nvml import NvmlMeter
    from backend.measure.energy.rapl import RaplMeter
    for made in (NvmlMeter, RaplMeter, CpuTimeMeter, CodeCarbonMeter):
        register(made)


def _load() -> None:
    """The built-in meters, then every installed plugin's (once per process)."""
    global _loaded
    _load_builtins()
    if _loaded:
        return
    _loaded = True
    _BROKEN.update(load_entry_points(ENTRY_POINT_GROUP, _REGISTRY, register))


def meters() -> list[Meter]:
    """Every meter that loaded, by rank (built-in ones first at equal rank)."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda m: m.rank)


def meter(name: str) -> Meter:
    """The meter called ``name`` (or an older name of it); a one-line error naming the known ones."""
    _load_builtins()
    name = _ALIASES.get(name, name)
    found = _REGISTRY.get(name)
    if found is None:
        _load()
        found = _REGISTRY.get(_ALIASES.get(name, name))
    if found is not None:
        return found
    if name in _BROKEN:
        raise GreentuiError(f"meter {name!r} could not be loaded ({_BROKEN[name]})")
    raise GreentuiError(f"unknown meter {name!r}; one of {', '.join(m.name for m in meters())}")


def broken() -> dict[str, str]:
    """Plugins that failed to load: entry-point name → why."""
    _load()
    return dict(_BROKEN)


def status() -> list[tuple[Meter, str | None]]:
    """Every meter with None (it can meter here) or the reason it cannot: what ``doctor`` prints."""
    out = []
    for m in meters():
        try:
            why = m.unavailable()
        except Exception as exc:  # noqa: BLE001 - a meter's probe must not break doctor
            why = f"{type(exc).__name__}: {exc}"
        out.append((m, why))
    return out


def window_meters(disabled: Iterable[str] = ()) -> list[Meter]:
    """The meters a measurement window opens: every available one except those turned off."""
    off = set(disabled)
    return [m for m, why in status() if why is None and m.name not in off]


def live_meters(prefer: str | None = None) -> list[Meter]:
    """Live power sources to try, best first (``prefer``: only that one)."""
    if prefer is not None:
        return [meter(prefer)]
    return sorted((m for m in meters() if m.live_rank is not None), key=lambda m: m.live_rank or 0)


_token = re.compile(r"^([A-Za-z0-9_-]+)")


def describe(recorded: str | None) -> MeterInfo:
    """What a recorded meter string (``nvml+codecarbon:…``, a live source ``rapl``) means: its first
    meter answers. Unknown names are estimates — never shown as a measurement."""
    text = (recorded or "").strip()
    match = _token.match(text)
    name = match.group(1) if match else ""
    try:
        found = meter(name) if name else None
    except GreentuiError:
        found = None
    if found is None:
        return MeterInfo(name or "unknown", text or "unknown meter", "estimate")
    return found.describe(text)


def total(readings: list[Reading]) -> Reading | None:
    """The window's total: the most complete counter figure (covers most), else the best estimate."""
    got = [r for r in readings if r.joules is not None]
    if not got:
        return None
    return max(got, key=lambda r: (r.kind == COUNTER, len(r.covers), -_rank(r.meter)))


def best(readings: list[Reading]) -> Reading | None:
    """The best single figure (a counter before an estimate, then by rank): efficiency's J/token."""
    got = [r for r in readings if r.joules is not None]
    if not got:
        return None
    return min(got, key=lambda r: (r.kind != COUNTER, _rank(r.meter)))


def _rank(name: str) -> int:
    m = _REGISTRY.get(name)
    return m.rank if m is not None else 1000


__all__ = ["ENTRY_POINT_GROUP", "register", "meters", "meter", "broken", "status", "window_meters",
           "live_meters", "describe", "total", "best"]
