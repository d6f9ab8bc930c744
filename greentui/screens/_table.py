"""The row key under a DataTable's cursor: the one helper every table screen uses."""

from __future__ import annotations

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
