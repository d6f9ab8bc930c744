"""The footer that never loses the essential keys, and the help screen that lists every key.

Textual's footer lists the focused widget's and the screen's bindings before the app's, so at 80
columns a screen with many keys pushes ``1/2/3``, ``?`` and Quit off the right edge. ``KeyFooter``
puts the app's essential keys first (compactly, ``1 2 3`` as one group), then the screen's own as
long as each fits whole; whatever does not fit is one ``?`` away. The help screen lists every key of
the screen (what Enter does included), grouped by where it works, its details wrapped to the width,
with the id the workspace's ``[keys]`` table rebinds it by (``greentui/keymap.py``).

The footer's parts (``FooterKey``…) are Textual internals, reached through ``backend.compat``; without
them the footer is Textual's own.
"""

from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from backend.compat import footer_parts
from backend.results.fmt import plain
from greentui.keymap import binding as key_binding

# Textual's own screen keys (focus moves, copy): not the app's, left out of the help list
TEXTUAL_INTERNALS = {"focus_next", "focus_previous", "copy_text", "maximize", "minimize"}
# app actions shown first, in this order (see GreentuiApp.BINDINGS)
ESSENTIAL = ("help", "go('runs')", "go('queue')", "go('models')", "go('studies')", "quit", "new_run")
#: a table's cursor keys, one help row: what they do is plain
CURSOR_MOVES = {"cursor_up", "cursor_down", "cursor_left", "cursor_right"}


def _cells(text: str) -> int:
    return Text(text).cell_len


class KeyFooter(Footer):
    """A compact footer: the essential app keys first, then the screen's keys that fit whole."""

    DEFAULT_CSS = """
    KeyFooter FooterLabel { padding: 0 1 0 0; }
    """

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)
        self._shown: tuple | None = None  # the keys on display (shown_keys) and the width, once composed

    def shown_keys(self, screen) -> tuple:
        """What the footer shows of ``screen``'s bindings (key, action, label, enabled, tooltip) at its width."""
        return (self._width(), *((b.key, b.action, b.description, enabled, tooltip)
                                 for _, b, enabled, tooltip in screen.active_bindings.values() if b.show))

    def _width(self) -> int:
        try:
            return self.size.width or self.app.size.width
        except Exception:  # no app yet
            return 80

    def bindings_changed(self, screen) -> None:
        """Recompose only when the shown keys changed: moving the focus between a form's fields (or a
        table taking it at start) changes the bindings but rarely the footer, and each recompose
        mounts a dozen widgets."""
        if self._shown is not None and screen is self.screen and self.shown_keys(screen) == self._shown:
            return
        super().bindings_changed(screen)

    def on_resize(self, event: events.Resize) -> None:
        """A new width may fit more (or fewer) keys."""
        if self._shown is not None and self._shown[0] != event.size.width and self.is_attached:
            self.call_after_refresh(self.recompose)

    def compose(self) -> ComposeResult:
        parts = footer_parts()
        if parts is None:  # Textual's footer internals moved (backend.compat): its own footer
            yield from super().compose()
            return
        FooterKey, FooterLabel, KeyGroup = parts
        if not self._bindings_ready:
            return
        self._shown = self.shown_keys(self.screen)
        room = self._shown[0]
        active = self.screen.active_bindings
        by_action: dict[str, list[tuple[Binding, bool, str]]] = defaultdict(list)
        for _, binding, enabled, tooltip in active.values():
            if binding.show:
                by_action[binding.action].append((binding, enabled, tooltip))
        rank = {a: i for i, a in enumerate(ESSENTIAL)}
        ordered = sorted(by_action.items(), key=lambda kv: rank.get(kv[0], len(rank)))
        # what fits, whole: a group (1 2 3) takes its keys, a space and its label; a key its display,
        # a space, its label and a space; the essential keys come first, so only screen keys drop out
        entries: list[list[tuple[Binding, bool, str]]] = []
        used = 0
        for _action, items in ordered:
            binding = items[0][0]
            if entries and binding.group is not None and entries[-1][0][0].group is binding.group:
                entries[-1].append(items[0])
                used += _cells(self.app.get_key_display(binding))
                continue
            key = _cells(self.app.get_key_display(binding))
            width = key + 1 + _cells(binding.group.description if binding.group else binding.description) + 1
            if used + width > room and entries:
                continue
            entries.append([items[0]])
            used += width
        self.styles.grid_size_columns = len(entries)
        for entry in entries:
            binding, enabled, tooltip = entry[0]
            if binding.group is not None:
                with KeyGroup(classes="-compact"):
                    for b, on, tip in entry:
                        yield FooterKey(b.key, self.app.get_key_display(b), "", b.action, disabled=not on,
                                        tooltip=tip or b.description, classes="-grouped").data_bind(
                                            compact=Footer.compact)
                yield FooterLabel(binding.group.description)
                continue
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                            binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)


#: the help list's sections, in order
PLACES = ("this screen", "everywhere")


def key_rows(screen) -> list[tuple[str, str, str, str]]:
    """(where, keys, what, why) for every binding active on ``screen`` (one row per binding, its keys
    together: ``? f1``), screen keys first, then the app's, then the focused widget's; the screen's
    ``HELP_NOTES`` (what Enter does in a form…) among them. ``why`` ends with the keymap id."""
    grouped: dict[tuple[str, str, str], dict] = {}
    app = screen.app
    for key, (node, binding, _enabled, tooltip) in screen.active_bindings.items():
        if not binding.description or binding.action.rsplit(".", 1)[-1] in TEXTUAL_INTERNALS:
            continue
        where = "everywhere" if node is app else ("this screen" if node is screen else focused_place(node))
        row = grouped.setdefault((where, binding.action, binding.description),
                                 {"keys": [], "why": tooltip or binding.tooltip or "", "id": binding.id})
        shown = app.get_key_display(binding)
        if shown not in row["keys"]:
            row["keys"].append(shown)
    rows = [(where, " ".join(r["keys"]), what, r["why"] + (f" · [keys] {r['id']}" if r["id"] else ""))
            for (where, action, what), r in grouped.items() if action not in CURSOR_MOVES]
    moves = [" ".join(r["keys"]) for (where, action, _), r in grouped.items() if action in CURSOR_MOVES]
    if moves:
        rows.append(("in the table", " ".join(moves), "Move", "Move the cursor"))
    # what the screen says a key does where a widget's own binding shadows it (a table's Enter is
    # "Select" to Textual; on Runs it opens the run's detail)
    notes = list(getattr(screen, "HELP_NOTES", []))
    noted = {(where, keys) for where, keys, _, _ in notes}
    rows = [r for r in rows if (r[0], r[1]) not in noted] + notes
    order = {p: i for i, p in enumerate(PLACES)}
    return sorted(rows, key=lambda r: order.get(r[0], len(order)))


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
    """Every key of the screen underneath, and the app's, by where they work; Esc, ? or F1 closes it.

    Three columns (key, does, details) under a heading per place; the details wrap to the width
    (never cut mid-word at 80×24), each ending with the id ``[keys]`` rebinds it by."""

    BINDINGS = [key_binding("close_help")]
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
        self._laid_out_for = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Keys — {self.title_text}", id="help-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=False, show_header=False)
            yield Static(Text("Esc closes · Ctrl+P runs any action by name · rebind keys in the workspace's "
                              "greentui.toml: [keys] id = \"key,key\" · runs go on when greentui closes"),
                         id="help-foot")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.call_after_refresh(self.lay_out)

    def on_resize(self) -> None:
        self.call_after_refresh(self.lay_out)

    def lay_out(self) -> None:
        """Fill the table for its width: the details column takes what the key and name leave, and
        each row is as tall as its wrapped details."""
        table = self.query_one(DataTable)
        width = table.size.width or (self.app.size.width - 8)
        if width == self._laid_out_for:
            return
        self._laid_out_for = width
        keys_w = max([4] + [_cells(k) for _, k, _, _ in self.rows])
        what_w = max([8] + [_cells(w) for _, _, w, _ in self.rows] + [_cells(p) for p, _, _, _ in self.rows])
        # 2 cells of padding a column, and a scrollbar's width kept free
        details_w = max(16, width - keys_w - what_w - 3 * 2 - 2)
        table.clear(columns=True)
        table.add_column("key", key="key", width=keys_w)
        table.add_column("does", key="does", width=what_w)
        table.add_column("details", key="details", width=details_w)
        where = None
        for place, keys, what, why in self.rows:
            if place != where:
                where = place
                table.add_row(Text(""), Text(place, "bold"), Text(""), key=f"place-{place}")
            details = plain(why)
            details.overflow = "fold"
            lines = max(1, len(details.wrap(self.app.console, details_w)))
            table.add_row(plain(keys), plain(what), details, height=lines)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
