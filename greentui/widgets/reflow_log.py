"""A log pane that re-wraps its lines when its width changes.

Textual's ``RichLog`` wraps a line once, when it is written, at the pane's width then but never
narrower than its ``min_width`` (78 by default): in a 43-column pane (Run detail's log at 120
columns) every line was cut at the right edge, and a pane laid out again narrower (a terminal
resized) kept lines cut too. This one wraps at the pane's own width, keeps the text of its last
``max_lines`` lines and writes them again when the width changes. Lines are plain text (no markup,
control characters escaped by the caller).
"""

from __future__ import annotations

from collections import deque

from textual import events
from textual.widgets import RichLog


class ReflowLog(RichLog):
    def __init__(self, *, max_lines: int = 1000, **kwargs) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False, min_width=1, **kwargs)
        self.texts: deque[str] = deque(maxlen=max_lines)
        self._wrapped_at = 0

    def add_line(self, text: str) -> None:
        """Write one line of plain text (kept, to wrap it again at another width)."""
        self.texts.append(text)
        self.write(text)

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        if width and self._wrapped_at and width != self._wrapped_at:
            self.clear()
            for text in self.texts:
                self.write(text)
        if width:
            self._wrapped_at = width
