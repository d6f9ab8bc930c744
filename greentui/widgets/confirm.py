"""A yes/no modal (y / n / Escape), used before anything destructive.

Its buttons say what they do ("Stop the run (y)" / "Keep it running (n)"), never "Cancel" for no:
in a dialog about cancelling a run, "Cancel" would read as the thing it refuses."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from backend.results.fmt import plain
from greentui.keymap import binding


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True on y/Enter-on-Yes, False on n/Escape."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 70; height: auto; padding: 1 2; border: thick $error; background: $surface;
    }
    ConfirmScreen Label { width: 1fr; margin-bottom: 1; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """
    BINDINGS = [binding("yes"), binding("no")]

    def __init__(self, message: str, yes: str = "Delete", no: str = "Keep them") -> None:
        """``yes`` and ``no`` label the buttons with what each does (``Delete`` / ``Keep them``)."""
        super().__init__()
        self.message = message
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(plain(self.message, 2000), id="confirm-message")  # may quote names: text, not markup
            with Horizontal():
                yield Button(f"{self.no} (n)", id="no")
                yield Button(f"{self.yes} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
