"""The energy-meter contract: what every meter (built in or from a plugin) answers.

Why one contract: the per-window meter, the live power feed, idle power, the efficiency stage, the
quality badge, the TUI's power panel and ``doctor`` each used to know the meters by name (string
comparisons and if-chains in seven places). Now each asks the registry
(:mod:`backend.measure.energy.registry`) and each meter answers for itself:

- ``name`` (what the records say), ``label`` (what a person reads), ``kind`` (``counter``: a hardware
  energy counter, a measurement; ``estimate``: a model, never shown as a measurement);
- ``unavailable()``: None when it can meter here, else the reason (a sentence);
- ``start(window)`` / ``stop(token, window)`` → :class:`Reading` (joules and what it covered);
- ``live()``: instant watts (and the power limit) for the live power feed, when ``live_rank`` is set;
- ``describe(recorded)``: how a meter string stored by an older or newer greentui reads.

A meter must never raise into the work it measures: ``stop`` returns a reading with ``joules=None``
and the reason in ``detail["missing"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNTER = "counter"
ESTIMATE = "estimate"
KINDS = (COUNTER, ESTIMATE)


@dataclass
class Reading:
    """One meter's figure for one window.

    ``covers`` names what the joules include (``cpu``, ``gpu``, ``ram``): the run's total is the most
    complete counter reading, so a meter that covers more wins over one that covers less.
    ``parts`` splits the joules by what they cover where the meter knows (J per part).
    ``kind`` may differ from the meter's (CodeCarbon is a counter only where it read RAPL or NVML).
    ``tag`` is this reading's part of the recorded meter string (``nvml``, ``codecarbon:rapl+…``).
    """

    meter: str
    joules: float | None
    kind: str
    tag: str
    covers: tuple[str, ...] = ()
    parts: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MeterInfo:
    """What a recorded meter name means: its meter, the label a person reads and its kind."""

    meter: str
    label: str
    kind: str

    @property
    def is_estimate(self) -> bool:
        return self.kind != COUNTER


@dataclass
class Window:
    """What a window asks of its meters: its label and the run's session (shared trackers), if any.

    ``options`` carries the settings a meter may read (``country``, ``tracking_mode``,
    ``measure_power_secs``); a meter ignores those it does not know.
    """

    label: str
    session: Any = None
    options: dict[str, Any] = field(default_factory=dict)


class Meter:
    """Base class of an energy meter; subclass it, set the class attributes, register it.

    ``rank`` orders meters (lower first) in the recorded meter string and when choosing the best
    single figure; ``live_rank`` orders live power sources (None: the meter gives no live watts).
    ``min_window_s``: below it a window's figure is mostly the counter's granularity (flagged).
    ``aliases``: older names of this meter found in stored records.
    """

    name: str = ""
    label: str = ""
    kind: str = ESTIMATE
    rank: int = 100
    live_rank: int | None = None
    min_window_s: float | None = None
    aliases: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """None when the meter can measure on this machine, else why not."""
        return None

    def prepare(self) -> None:
        """Pay one-off costs (hardware detection) before any window opens."""

    def start(self, window: Window) -> Any:
        """Open a window; returns a token that ``stop`` gets back."""
        raise NotImplementedError

    def stop(self, token: Any, window: Window) -> Reading:
        """Close the window opened by ``start``; never raises."""
        raise NotImplementedError

    def live(self) -> "LivePower":
        """A fresh live-power reader (instant watts); only meters with a ``live_rank`` have one."""
        raise NotImplementedError(f"meter {self.name!r} gives no live power")

    def describe(self, recorded: str) -> MeterInfo:
        """What a recorded meter string that starts with this meter's name means."""
        return MeterInfo(self.name, self.label or self.name, self.kind)


class LivePower:
    """Instant power for the live feed: ``read()`` → (watts, limit W); None while priming."""

    def read(self) -> tuple[float | None, float | None]:
        raise NotImplementedError


def missing(meter: Meter, why: str, kind: str | None = None) -> Reading:
    """A reading that says why there is no figure (a meter never raises into the work)."""
    return Reading(meter=meter.name, joules=None, kind=kind or meter.kind, tag=meter.name,
                   covers=meter.covers, detail={"missing": why})
