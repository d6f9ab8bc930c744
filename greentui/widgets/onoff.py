"""A checkbox that says its state in words: ``prune: on`` / ``prune: off``.

Textual's ``Checkbox`` draws the same ``X`` in both states and tells them apart by colour alone, which a
monochrome terminal, a colour-blind user or a screen capture loses (#22 3.3). This one keeps Textual's
widget, keys and ``Changed`` message and only rewrites its label when the value moves (the public
``label`` setter; no private rendering is touched).
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widgets import Checkbox


class OnOffCheckbox(Checkbox):
    """``Checkbox`` whose label ends in ``: on`` or ``: off``; ``name`` is the bare label."""

    def __init__(self, label: str, value: bool = False, **kwargs: Any) -> None:
        self.bare_label = label
        super().__init__(self.label_for(value), value, **kwargs)

    def label_for(self, value: bool) -> Content:
        return Content(f"{self.bare_label}: {'on' if value else 'off'}")  # plain text, never markup

    def watch_value(self) -> None:
        self.label = self.label_for(self.value)
        super().watch_value()
