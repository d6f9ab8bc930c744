"""Workspace switches (``settings`` table): the queue's pause flag and friends.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.settings``.
"""

from __future__ import annotations

from backend.store.base import Repository


class SettingsRepository(Repository):
    """Workspace switches (``settings`` table): the queue's pause flag and friends."""

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
