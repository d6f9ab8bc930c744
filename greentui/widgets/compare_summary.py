"""Compare's folded header: one title line and one line of the most important notice.

Why: at 80×24 Compare's full header (title, a quality line per run, merged-baseline and demo notes,
perplexity) wrapped to 7–8 lines and left the charts 9–13 rows. Below 100 columns the screen shows
this two-line summary instead and keeps the full header one key away (``i``). The lines are fitted to
the widget's width at render time, so a resize refits them: notices are kept whole and in priority
order, and what does not fit is counted ("+2 more"), never cut silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

NOTICE_SEPARATOR = "; "


def fit_title(titles: Text | Sequence[Text], width: int) -> Text:
    """The first of ``titles`` (longest first) that fits one line of ``width`` cells; else the last,
    cut with an ellipsis."""
    candidates = [titles] if isinstance(titles, Text) else list(titles)
    for title in candidates:
        if title.cell_len <= width:
            return _one_line(title.copy())
    line = candidates[-1].copy() if candidates else Text()
    line.truncate(max(1, width), overflow="ellipsis")
    return _one_line(line)


def fold_notices(notices: Sequence[Text], width: int, hint: str = "i") -> Text:
    """As many notices as fit on one line of ``width`` cells, in order, then where the rest is.

    The line ends in ``details: i`` when every notice is on it, else ``+N more: i`` (``hint`` is the
    key). Notices are joined whole; the first one is shortened (with an ellipsis) only when even it
    alone does not fit, so the line always says that more is behind the key.
    """
    def tail(left_out: int) -> Text:
        return Text(f"  +{left_out} more: {hint}" if left_out else f"  details: {hint}", "dim")

    n = len(notices)
    for k in range(n, 0, -1):
        line = Text(NOTICE_SEPARATOR).join(notices[:k]).append_text(tail(n - k))
        if line.cell_len <= width:
            return _one_line(line)
    if not n:
        alone = Text(f"details: {hint}", "dim")
        return _one_line(alone if alone.cell_len <= width else Text())
    end = tail(n - 1)
    first = notices[0].copy()
    room = width - end.cell_len
    if room < 8:  # too narrow for both: the notice wins over the hint
        first.truncate(max(1, width), overflow="ellipsis")
        return _one_line(first)
    first.truncate(room, overflow="ellipsis")
    return _one_line(first.append_text(end))


def _one_line(text: Text) -> Text:
    text.no_wrap = True
    text.end = ""
    return text


class CompareSummary(Widget):
    """Two lines: the title (runs, task count, meters) and the first notices that fit, with a hint."""

    DEFAULT_CSS = """
    CompareSummary { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.titles: list[Text] = []
        self.notices: list[Text] = []
        self.hint = ""

    def show(self, titles: Text | Sequence[Text], notices: Sequence[Text], hint: str = "") -> None:
        """Replace the content: ``titles`` are the title's forms, longest first; ``hint`` is the key
        that shows everything ("" = no second line unless there are notices). The lines are fitted
        to the width when drawn."""
        self.titles = [titles] if isinstance(titles, Text) else list(titles)
        self.notices = list(notices)
        self.hint = hint
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        out = [fit_title(self.titles, width)]
        if self.notices or self.hint:
            out.append(fold_notices(self.notices, width, self.hint or "i"))
        return out

    def render(self) -> Text:
        width = self.content_size.width or 80  # before the first layout: any width, one line each
        out = Text("\n", no_wrap=True, end="").join(self.lines(width))
        out.no_wrap = True
        return out
