"""A collapsed section whose contents are built the first time it is opened.

Why: Textual styles, lays out and renders every widget in the DOM, folded or not (``display: none``
still costs the styling passes a screen makes on push, resize and focus). The New-run form has 41
settings; building only the ones it shows at first is what lets it open in well under half a second
on a 2-core machine (issue #12). A :class:`Fold` holds a builder instead of widgets: the builder runs
when the fold is first expanded (by the user, or by :meth:`Fold.build` when the form needs a field in
it, e.g. to focus a refused value), and the widgets stay afterwards (collapsing only hides them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.widget import AwaitMount, Widget
from textual.widgets import Collapsible


class Fold(Collapsible):
    """A :class:`~textual.widgets.Collapsible` that composes its contents on first expansion."""

    DEFAULT_CSS = """
    Fold { background: $surface; padding: 0 0 0 0; margin: 1 0 0 0; border-top: none; }
    Fold > Contents { padding: 0 0 0 0; }
    Fold CollapsibleTitle { padding: 0 1 0 0; }
    """

    def __init__(self, build: Callable[[], Iterable[Widget]], *, title: str, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(title=title, collapsed=True, id=id, classes=classes)
        self._builder = build
        self.built = False

    def build(self) -> AwaitMount | None:
        """Compose the contents now (once); the AwaitMount to await when the fold is already mounted."""
        if self.built:
            return None
        self.built = True
        widgets = list(self._builder())
        if not self.is_mounted:  # not composed yet: compose() takes them
            self._contents_list.extend(widgets)
            return None
        return self.query_one(Collapsible.Contents).mount_all(widgets)

    def expand(self) -> AwaitMount | None:
        """Build (first time) and open."""
        waiter = self.build()
        self.collapsed = False
        return waiter

    def watch_collapsed(self, collapsed: bool) -> None:
        """Opened by the user (Enter or a click on the title): build the contents the first time."""
        if not collapsed:
            self.build()
