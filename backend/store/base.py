"""What every repository of the store shares: the store's connection, its transactions, and the
two row helpers. Repositories never open connections of their own: one store = one connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from backend.store.database import Store


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The id of the row the INSERT on ``cur`` just made. sqlite3 types ``lastrowid`` as optional (it is
    None before any INSERT); after one it is always set, so None here is a bug, told as one."""
    rowid = cur.lastrowid
    if rowid is None:
        raise RuntimeError("the INSERT made no row id (no row was inserted)")
    return rowid


class Repository:
    """One concern's queries over the store's connection (``store.runs``, ``store.results``, …)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def conn(self) -> sqlite3.Connection:
        return self._store.conn

    @property
    def path(self) -> Path:
        return self._store.path

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._store.transaction()

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self._store._rows(sql, params)

    def _row(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        return self._store._row(sql, params)


__all__ = ["Repository", "Iterator", "inserted_id"]
