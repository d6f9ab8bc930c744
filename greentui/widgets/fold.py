"""A folded section whose contents are built the first time it is opened.

Why: Textual styles, lays out and renders every widget in the DOM, folded or not (``display: none``
still costs the styling passes a screen makes on push, resize and focus). The New-run form has 41
settings; building only the ones it shows at first is what lets it open in well under half a second
on a 2-core machine (issue #12). A :class:`Fold` holds a builder instead of widgets: the builder runs
when the fold is first opened (Enter or a click on its title, or :meth:`Fold.expand` when the form
needs a field in it, e.g. to focus a refused value); the widgets stay afterwards (closing only hides
them).

Not Textual's ``Collapsible``: that composes its contents up front, and even empty it costs three
widgets and a restyle of itself when mounted; a closed :class:`Fold` is two widgets, styled once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.text import Text
from textual import events
from textual.containers import Vertical
from textual.widget import AwaitMount, Widget
from textual.widgets import Static

from greentui.keymap import binding


class FoldTitle(Static, can_focus=True):
    """The fold's one-line (wrapping) title: ``▶ title`` closed, ``▼ title`` open; Enter or a click toggles."""

    BINDINGS = [binding("toggle_fold")]

    DEFAULT_CSS = """
    FoldTitle { width: 1fr; height: auto; padding: 0 1 0 0; pointer: pointer; }
    FoldTitle:hover { background: $block-hover-background; }
    FoldTitle:focus { background: $block-cursor-background; color: $block-cursor-foreground; }
    """

    def action_toggle(self) -> None:
        fold = self.parent
        if isinstance(fold, Fold):
            fold.toggle()

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.action_toggle()


class Fold(Vertical):
    """A titled section, closed at first, whose contents ``build()`` returns when it is first opened."""

    DEFAULT_CSS = """
    Fold { height: auto; margin: 1 0 0 0; }
    Fold > .fold-body { height: auto; }
    Fold.-collapsed > .fold-body { display: none; }
    """

    def __init__(self, build: Callable[[], Iterable[Widget]], *, title: str | Text, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=" ".join(filter(None, (classes, "-collapsed"))))
        self._builder = build
        self._title = title if isinstance(title, Text) else Text.from_markup(title)
        self.collapsed = True
        self.built = False
        self.title_widget = FoldTitle(self._label())
        self._body: Vertical | None = None
        self._composed = False

    @property
    def title(self) -> Text:
        return self._title

    @title.setter
    def title(self, text: str | Text) -> None:
        """A ``Text`` title is shown as it is (outside values in it stay text); a ``str`` is markup."""
        text = text if isinstance(text, Text) else Text.from_markup(text)
        if text != self._title:
            self._title = text
            self.title_widget.update(self._label())

    def _label(self) -> Text:
        return Text("▶ " if self.collapsed else "▼ ").append_text(self._title)

    def compose(self):
        self._composed = True
        yield self.title_widget
        if self._body is not None:  # built before the fold itself was composed
            yield self._body

    def build(self) -> AwaitMount | None:
        """Compose the contents now (once); the AwaitMount to await for them to be mounted (None when the
        fold is not composed yet: its compose takes them)."""
        if self.built:
            return None
        self.built = True
        self._body = Vertical(*self._builder(), classes="fold-body")
        return self.mount(self._body) if self._composed else None

    def expand(self) -> AwaitMount | None:
        """Open (building the contents the first time); an AwaitMount when they are being mounted."""
        waiter = self.build()
        if self.collapsed:
            self.collapsed = False
            self.remove_class("-collapsed")
            self.title_widget.update(self._label())
            self.call_after_refresh(self.scroll_visible)
        return waiter

    def collapse(self) -> None:
        if not self.collapsed:
            self.collapsed = True
            self.add_class("-collapsed")
            self.title_widget.update(self._label())

    def toggle(self) -> None:
        if self.collapsed:
            self.expand()
        else:
            self.collapse()
