"""Shared plumbing for plotext-backed widgets.

plotext keeps *one global figure* in module state, so two widgets (or a widget and a thread)
building at the same time would draw into each other.  Every build therefore goes through
:func:`build_figure`, which holds a lock, starts from ``plt.clf()`` (which also resets the
theme and size), and returns the figure as a rich ``Text``.  Widgets call it from Textual
event handlers, i.e. on the main thread; the lock is insurance, not an invitation to build from
worker threads (use ``App.call_from_thread`` to get back to the main thread).
"""

from __future__ import annotations

import threading
from typing import Callable

import plotext as plt
from rich.text import Text

from backend.compat import stable_plotext_ticks

# tick labels that do not move between starts of the app (a private plotext function, replaced in
# backend.compat with a version check); every figure the app draws goes through this module
stable_plotext_ticks()

PLOTEXT_LOCK = threading.RLock()

#: plotext colour names per series position; the radar uses the same names so "vanilla" has
#: the same colour in every figure.
PLOTEXT_COLORS: tuple[str, ...] = ("cyan", "magenta", "yellow", "green", "red", "blue")

#: Below this size plotext draws nothing useful (or an empty frame), so we show a note instead.
MIN_WIDTH, MIN_HEIGHT = 20, 6


def message(text: str, width: int, height: int, style: str = "dim italic") -> Text:
    """A centred one-line message (``no data``, ``too small``) padded to the widget size."""
    width, height = max(1, width), max(1, height)
    line = text[:width].center(width)
    rows = [" " * width] * height
    rows[height // 2] = line
    return Text("\n".join(rows), style=style, no_wrap=True, overflow="crop", end="")


def build_figure(width: int, height: int, draw: Callable[[], None]) -> Text:
    """Run ``draw()`` on a freshly cleared plotext figure of ``width`` x ``height`` cells.

    ``draw`` issues the plotext calls (bars, labels, limits).  The result is converted with
    ``Text.from_ansi`` and stripped of the trailing newline plotext adds, so its height is
    exactly ``height`` rows.
    """
    with PLOTEXT_LOCK:
        plt.clf()  # resets data, size *and* theme: always set them again afterwards
        # By default plotext clips the figure to the *real* terminal's size, which is wrong
        # inside a Textual widget (and under pytest); turn that off before sizing.
        plt.limit_size(False, False)
        plt.plotsize(width, height)
        plt.theme("clear")  # transparent background: let the Textual theme show through
        draw()
        ansi = plt.build()
        plt.clf()
    text = Text.from_ansi(ansi.rstrip("\n"), no_wrap=True, overflow="crop", end="")
    return text
