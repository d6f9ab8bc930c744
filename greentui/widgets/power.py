"""Live power panel: instant watts against the device limit, a sparkline, and running Wh.

The backend's sampler emits ``power`` events about once a second with the meter that produced
them: ``nvml`` (GPU board power, measured), ``rapl`` (CPU package counters, measured), ``cpu-time``
(a model charged by the run's own CPU time, *not* a measurement) or a plugin meter's name. What a
name means is the meter registry's answer (``backend.service.meters.describe_source``), so a new
meter needs nothing here. The design rule is that an estimate is never shown as a measurement, so
the panel labels the source on every redraw, and any unknown source is treated as an estimate too.

The integration lives in :class:`PowerTrace`, a plain class, so the maths is testable without
Textual.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Sparkline

from backend.results.fmt import plain
from backend.service.meters import describe_source

WINDOW = 120  # samples in the sparkline: ~2 minutes at the sampler's 1 Hz


@dataclass
class PowerTrace:
    """Running energy from timestamped power samples (trapezoid rule).

    ``wh`` accumulates ``(w[i-1] + w[i]) / 2 * (t[i] - t[i-1]) / 3600`` over consecutive
    samples.  The trapezoid rule is exact for power that varies linearly between samples and,
    unlike a left Riemann sum, does not bias the total by the first or last sample.  A sample
    whose time does not advance (a clock step back, a duplicate) is recorded but not
    integrated, so a glitch can't produce negative energy.  Non-finite watts are ignored.
    """

    window: int = WINDOW
    wh: float = 0.0
    last_t: float | None = None
    last_w: float | None = None
    sources: set[str] = field(default_factory=set)
    recent: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.recent = deque(self.recent, maxlen=self.window)

    def add(self, t: float, watts: float, source: str = "") -> bool:
        """Record one sample; returns False when it was rejected (NaN/inf watts or time)."""
        t, watts = float(t), float(watts)
        if not (math.isfinite(t) and math.isfinite(watts)):
            return False
        if self.last_t is not None and self.last_w is not None and t > self.last_t:
            self.wh += (self.last_w + watts) / 2 * (t - self.last_t) / 3600.0
        self.last_t, self.last_w = t, watts
        self.recent.append(watts)
        if source:
            self.sources.add(source)
        return True

    @property
    def is_estimate(self) -> bool:
        """True when any sample so far came from an estimating (or unknown) meter."""
        return any(describe_source(s)[1] for s in self.sources)

    def reset(self) -> None:
        self.wh, self.last_t, self.last_w = 0.0, None, None
        self.sources.clear()
        self.recent.clear()


class PowerPanel(Widget):
    """Instant W vs limit (progress bar), last ~120 samples (sparkline), running Wh, meter name.

    ``add_sample`` may be called before the panel is mounted: the state is kept in a
    :class:`PowerTrace` and pushed to the child widgets when they exist.  Call it on the main
    thread (from a thread worker, use ``app.call_from_thread(panel.add_sample, ...)``).
    """

    DEFAULT_CSS = """
    PowerPanel {
        height: auto;
        width: 1fr;
    }
    PowerPanel > Vertical {
        height: auto;
    }
    PowerPanel #power-source.estimate {
        color: $warning;
        text-style: bold;
    }
    PowerPanel #power-bar {
        width: 1fr;
    }
    PowerPanel #power-bar Bar {
        width: 1fr;
    }
    PowerPanel #power-spark {
        height: 3;
        width: 1fr;
    }
    """

    def __init__(
        self,
        *,
        window: int = WINDOW,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.trace = PowerTrace(window=window)
        self.source: str | None = None
        self.limit_w: float | None = None
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once the run ended: the texts speak of a recording, not of live power."""
        return self._finished

    @finished.setter
    def finished(self, value: bool) -> None:
        if value != self._finished:
            self._finished = value
            self._sync()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("meter: waiting for samples…", id="power-source")
            yield Label("", id="power-watts")
            yield ProgressBar(total=100, show_eta=False, show_percentage=True, id="power-bar")
            yield Sparkline([], id="power-spark")
            yield Label("", id="power-wh")

    def on_mount(self) -> None:
        self._sync()

    # ------------------------------------------------------------------ API
    @property
    def wh(self) -> float:
        return self.trace.wh

    def add_sample(self, t: float, watts: float, source: str, limit_w: float | None = None) -> None:
        """Add one power sample (``t`` in seconds, any epoch) and redraw."""
        if not self.trace.add(t, watts, source):
            return
        self.source = source
        if limit_w is not None and math.isfinite(limit_w) and limit_w > 0:
            self.limit_w = float(limit_w)
        elif limit_w is None:
            self.limit_w = None
        self._sync()

    def reset(self) -> None:
        """Forget all samples (new run)."""
        self.trace.reset()
        self.source, self.limit_w = None, None
        self._sync()

    # ------------------------------------------------------------------ text
    def source_text(self) -> str:
        if self.source is None:
            return "meter: no power samples were recorded" if self._finished else "meter: waiting for samples…"
        label, _ = describe_source(self.source)
        return f"meter: {label}"

    def watts_text(self) -> str:
        w = self.trace.last_w
        if w is None:
            return "— W"
        if self._finished:
            return f"last {w:.1f} W, peak {max(self.trace.recent or [w]):.1f} W"
        limit = f" / {self.limit_w:.0f} W limit" if self.limit_w else " (power limit unknown)"
        return f"{w:.1f} W{limit}"

    def wh_text(self) -> str:
        suffix = " (estimate)" if self.trace.is_estimate else ""
        if self._finished:
            return f"energy (sampled): {self.trace.wh:.3f} Wh{suffix}"
        return f"energy so far: {self.trace.wh:.3f} Wh{suffix}"

    def _sync(self) -> None:
        """Push the trace into the child widgets (no-op until they are composed)."""
        if not self.is_mounted:
            return
        try:
            src = self.query_one("#power-source", Label)
            watts = self.query_one("#power-watts", Label)
            bar = self.query_one("#power-bar", ProgressBar)
            spark = self.query_one("#power-spark", Sparkline)
            wh = self.query_one("#power-wh", Label)
        except Exception:  # children not composed yet; on_mount will sync again
            return
        src.update(plain(self.source_text(), 120))  # the meter's name is recorded text: never markup
        estimate = self.source is not None and describe_source(self.source)[1]
        src.set_class(estimate, "estimate")
        watts.update(self.watts_text())
        if self.limit_w and self.trace.last_w is not None and not self._finished:
            bar.display = True
            bar.update(total=self.limit_w, progress=min(max(self.trace.last_w, 0.0), self.limit_w))
        else:
            bar.display = False
        spark.data = list(self.trace.recent)
        wh.update(self.wh_text())


__all__ = ["PowerPanel", "PowerTrace", "describe_source"]
