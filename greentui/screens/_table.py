"""What every table screen shares: plain-text cells, the row key under the cursor, and a narrow
column set for 80-column terminals."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from backend.results.fmt import plain
from backend.text import NAME_LIMIT, safe_text


def cursor_key(table: DataTable) -> str | None:
    """The key of the highlighted row, or None for an empty table."""
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
    except CellDoesNotExist:
        return None


def cursor_id(table: DataTable) -> int | None:
    """The highlighted row's key as a run id (tables keyed by run id)."""
    key = cursor_key(table)
    return int(key) if key is not None else None


def plain_cells(*values: Any) -> list[Text]:
    """Cells as Rich ``Text``: DataTable reads a ``str`` as markup, so a model or label named
    ``m[red]x[/red]`` would lose its brackets (or fail to parse), and ``[@click=app.quit]`` would be a
    link. Strings are outside text (``backend.results.fmt.plain``: control characters escaped, cut at
    ``NAME_LIMIT``); ``Text`` values pass as they are."""
    return [plain(v, NAME_LIMIT) for v in values]


class NarrowColumns:
    """Mixin of a table screen with up to three column sets: ``WIDE_COLUMNS``; below ``NARROW_BELOW``
    columns ``MEDIUM_COLUMNS`` when the screen has them (from ``MEDIUM_FROM`` columns: 120 columns
    keep kind and date where the wide set would not fit, rather than falling back to the 80-column
    set with ~45 columns blank); below that (the app's -narrow breakpoint; 80x24 is a first-class
    size) ``NARROW_COLUMNS``, which keep what answers the screen's question and fold the rest into
    them. Entries are ``(key, label, ...)``; ``NARROW_WIDTHS`` caps columns in the narrow and medium
    sets (their cells are cut with an ellipsis). The screen builds its cells for ``self.tier``
    (``narrow``/``medium``/``wide``) and reloads itself when a resize crosses a breakpoint."""

    NARROW_BELOW: ClassVar[int] = 100
    MEDIUM_FROM: ClassVar[int] = 100
    WIDE_COLUMNS: ClassVar[list[tuple[Any, ...]]] = []
    MEDIUM_COLUMNS: ClassVar[list[tuple[Any, ...]]] = []
    NARROW_COLUMNS: ClassVar[list[tuple[Any, ...]]] = []
    NARROW_WIDTHS: ClassVar[dict[str, int]] = {}
    #: tighter caps for the narrow set alone (over ``NARROW_WIDTHS``): room for wider figures at 80 columns
    NARROWEST_WIDTHS: ClassVar[dict[str, int]] = {}
    #: appended to every label (Runs keeps one cell free for its sort arrow)
    LABEL_PAD: ClassVar[str] = ""
    tier: str = "wide"

    @property
    def narrow(self) -> bool:
        return self.tier == "narrow"

    def tier_for(self, width: int) -> str:
        if width >= self.NARROW_BELOW:
            return "wide"
        return "medium" if self.MEDIUM_COLUMNS and width >= self.MEDIUM_FROM else "narrow"

    @property
    def columns(self) -> list[tuple[Any, ...]]:
        return {"wide": self.WIDE_COLUMNS, "medium": self.MEDIUM_COLUMNS, "narrow": self.NARROW_COLUMNS}[self.tier]

    def add_columns(self, table: DataTable, width: int) -> None:
        """(Re)build the table's columns for a screen ``width`` columns wide."""
        self.tier = self.tier_for(width)
        table.clear(columns=True)
        for key, label, *_ in self.columns:  # labels as Text: no markup parsing
            caps = {**self.NARROW_WIDTHS, **self.NARROWEST_WIDTHS} if self.tier == "narrow" else self.NARROW_WIDTHS
            cap = caps.get(key) if self.tier != "wide" else None
            table.add_column(Text(label + self.LABEL_PAD), key=key, width=cap)

    def on_resize(self, event: events.Resize) -> None:
        if self.tier_for(event.size.width) != self.tier and self.is_mounted:  # type: ignore[attr-defined]
            self.add_columns(self.query_one(DataTable), event.size.width)  # type: ignore[attr-defined]
            self.reload()  # type: ignore[attr-defined]


def ellipsis(text: str) -> Text:
    """A cell cut with "…" when its column is capped (``NarrowColumns.NARROW_WIDTHS``)."""
    return Text(safe_text(text, NAME_LIMIT), no_wrap=True, overflow="ellipsis")
