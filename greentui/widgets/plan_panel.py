"""A read-only panel of the planner's figures for the New-run form, updated as the user types.

``plan_lines`` builds the ``RunConfig`` the form describes and asks the service layer
(``backend.service.form_advice.plan_brief``: the planner reads ``config.json``, never torch), so the form
shows what the pruning settings will make of the chosen model before any GPU time is spent, with the
same rules and words as ``greentui plan``. The form runs it in a thread worker (see
``NewRunScreen.advise``) and the panel only shows the result: the planner's import and its figures never
delay the form's first frame or a keystroke.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from backend.schema.runconfig import RunConfig
from backend.text import safe_text

TITLE = "[b]plan[/b] [dim](computed from config.json, not measured)[/dim]"


def plan_lines(values: dict[str, Any]) -> list[str]:
    """The panel's text for the form's current values (a ``RunConfig``'s fields); never raises."""
    from backend.service.form_advice import plan_brief

    if not str(values.get("model") or "").strip():
        return ["choose a model to see the plan"]
    if values.get("no_prune"):
        return ["no pruning: the model is evaluated as it is"]
    try:
        cfg = RunConfig.from_dict(values)
    except TypeError as exc:  # not a config's fields
        return [f"no plan: {exc}"]
    return plan_brief(cfg)


class PlanPanel(Static):
    """Shows the plan's lines; the form computes them (``plan_lines``) in a thread worker and hands them to
    :meth:`show`, so opening the form or typing never waits for the planner. Until the first plan
    arrives it says it is computing."""

    DEFAULT_CSS = """
    PlanPanel { border: round $accent; padding: 0 1; height: auto; margin: 1 0; }
    """

    COMPUTING = "[dim]computing…[/dim]"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(TITLE + "\n" + self.COMPUTING, **kwargs)
        self.lines: list[str] = []

    def show(self, lines: list[str]) -> None:
        """Display ``lines`` (from :func:`plan_lines`); a no-op when they are the ones shown."""
        if lines == self.lines:
            return
        self.lines = list(lines)
        # the lines quote the model's path and config.json: text, never markup
        self.update(Text.from_markup(TITLE).append("".join("\n" + safe_text(line, 400) for line in self.lines)))
