"""The footer that never loses the essential keys, and the help screen that lists every key.

Textual's footer lists the focused widget's and the screen's bindings before the app's, so at 80
columns a screen with many keys pushes ``1/2/3``, ``?`` and Quit off the right edge. ``KeyFooter``
puts the app's essential keys first (compactly, ``1 2 3`` as one group) and then the screen's own;
whatever does not fit is still one ``?`` away.
"""

from __future__ import annotations

from collections import defaultdict

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

# Textual's own screen keys (focus moves, copy): not the app's, left out of the help list
TEXTUAL_INTERNALS = {"focus_next", "focus_previous", "copy_text", "maximize", "minimize"}
# app actions shown first, in this order (see GreentuiApp.BINDINGS)
ESSENTIAL = ("help", "go('runs')", "go('queue')", "go('models')", "go('studies')", "quit")


class KeyFooter(Footer):
    """A compact footer: the essential app keys first, then the screen's keys."""

    DEFAULT_CSS = """
    KeyFooter FooterLabel { padding: 0 1 0 0; }
    """

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)
        self._shown: tuple | None = None  # the keys on display (shown_keys), once composed

    @staticmethod
    def shown_keys(screen) -> tuple:
        """What the footer shows of ``screen``'s bindings: (key, action, label, enabled, tooltip)."""
        return tuple((b.key, b.action, b.description, enabled, tooltip)
                     for _, b, enabled, tooltip in screen.active_bindings.values() if b.show)

    def bindings_changed(self, screen) -> None:
        """Recompose only when the shown keys changed: moving the focus between a form's fields (or a
        table taking it at start) changes the bindings but rarely the footer, and each recompose
        mounts a dozen widgets."""
        if self._shown is not None and screen is self.screen and self.shown_keys(screen) == self._shown:
            return
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        self._shown = self.shown_keys(self.screen)
        active = self.screen.active_bindings
        by_action: dict[str, list[tuple[Binding, bool, str]]] = defaultdict(list)
        for _, binding, enabled, tooltip in active.values():
            if binding.show:
                by_action[binding.action].append((binding, enabled, tooltip))
        rank = {a: i for i, a in enumerate(ESSENTIAL)}
        ordered = sorted(by_action.items(), key=lambda kv: rank.get(kv[0], len(rank)))
        self.styles.grid_size_columns = len(ordered)
        pending_group: list[tuple[Binding, bool, str]] = []
        group = None

        def flush():
            if not pending_group:
                return
            with KeyGroup(classes="-compact"):
                for binding, enabled, tooltip in pending_group:
                    yield FooterKey(binding.key, self.app.get_key_display(binding), "", binding.action,
                                    disabled=not enabled, tooltip=tooltip or binding.description,
                                    classes="-grouped").data_bind(compact=Footer.compact)
            yield FooterLabel(group.description)
            pending_group.clear()

        for _action, items in ordered:
            binding, enabled, tooltip = items[0]
            if binding.group is not None:
                if group is not None and binding.group is not group:
                    yield from flush()
                group = binding.group
                pending_group.append((binding, enabled, tooltip))
                continue
            yield from flush()
            group = None
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                            binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)
        yield from flush()


def key_rows(screen) -> list[tuple[str, str, str, str]]:
    """(where, key, what, why) for every binding active on ``screen``, screen keys before app keys."""
    rows: list[tuple[str, str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    app = screen.app
    for key, (node, binding, _enabled, tooltip) in screen.active_bindings.items():
        if not binding.description or (binding.action, key) in seen:
            continue
        if binding.action.rsplit(".", 1)[-1] in TEXTUAL_INTERNALS:
            continue
        seen.add((binding.action, key))
        where = "everywhere" if node is app else ("this screen" if node is screen else focused_place(node))
        rows.append((where, app.get_key_display(binding), binding.description, tooltip or binding.tooltip or ""))
    order = {"this screen": 0, "everywhere": 1}
    return sorted(rows, key=lambda r: order.get(r[0], 2))


def focused_place(node) -> str:
    """Where a focused widget's own keys work, in the help list's words."""
    names = [cls.__name__ for cls in type(node).__mro__]
    for name, place in (("DataTable", "in the table"), ("SelectionList", "in the list"),
                        ("OptionList", "in the list"), ("FoldTitle", "on a fold title"),
                        ("Fold", "on a fold title"), ("Input", "in a text field"), ("Select", "in a choice"),
                        ("ScrollableContainer", "in the scrolled pane"), ("ScrollView", "in the scrolled pane")):
        if name in names:
            return place
    return "on the focused item"


class HelpScreen(ModalScreen[None]):
    """Every key of the screen underneath, and the app's; Esc, ? or q closes it."""

    BINDINGS = [Binding("escape,question_mark,q,f1", "dismiss", "Close", show=False)]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; max-width: 110; height: 90%; border: round $accent;
                            background: $surface; padding: 0 1; }
    HelpScreen #help-title { height: auto; text-style: bold; }
    HelpScreen DataTable { height: 1fr; }
    HelpScreen #help-foot { height: auto; color: $text-muted; }
    """

    def __init__(self, rows: list[tuple[str, str, str, str]], title: str) -> None:
        super().__init__()
        self.rows = rows
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Keys — {self.title_text}", id="help-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Static("Esc closes · Ctrl+P runs any action by name · runs go on when greentui "
                         "closes (the runner is a separate process)", id="help-foot")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "does", "where", "details")
        for where, key, what, why in self.rows:
            table.add_row(key, what, where, why)
        table.focus()

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
