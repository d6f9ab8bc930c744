"""What every table screen shares: plain-text cells and the row key under the cursor."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


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
    ``m[red]x[/red]`` would lose its brackets (or fail to parse). ``Text`` values pass as they are."""
    return [v if isinstance(v, Text) else Text(str(v)) for v in values]
