"""A read-only panel of the planner's figures for the New-run form, updated as the user types.

``plan_lines`` calls ``backend.stages.pruning.plan.brief`` (standard library only: reads ``config.json``, never torch),
so the form shows what the pruning settings will make of the chosen model before any GPU time is
spent. The form runs it in a thread worker (see ``NewRunScreen.advise``) and the panel only shows the
result: the planner's import and its figures never delay the form's first frame or a keystroke.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from backend.errors import GreentuiError
from backend.text import safe_text

TITLE = "[b]plan[/b] [dim](computed from config.json, not measured)[/dim]"


def plan_lines(values: dict[str, Any]) -> list[str]:
    """The panel's text for the form's current values (RunConfig field names); never raises."""
    from backend.stages.pruning.plan import brief
    from backend.stages.pruning.spec import PruneConfig

    model = str(values.get("model") or "").strip()
    if not model:
        return ["choose a model to see the plan"]
    if values.get("no_prune"):
        return ["no pruning: the model is evaluated as it is"]
    try:
        cfg = PruneConfig(method=values.get("importance", "taylor"), ratio=values.get("prune_ratio", 2 / 7),
                          ignore_first=values.get("ignore_first"), ignore_last=values.get("ignore_last"),
                          round_to=values.get("round_to") or 8, calib_seq_len=values.get("calib_seq_len") or 64,
                          count_rule=values.get("count_rule") or PruneConfig.count_rule)
        return brief(model, cfg, values.get("target_params") or None, values.get("target_ratio") or None)
    except GreentuiError as exc:
        return [f"no plan: {exc}"]
    except (TypeError, ValueError) as exc:  # a half-typed value the form has not validated yet
        return [f"no plan: {exc}"]


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
