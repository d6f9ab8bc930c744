"""A screen that reloads its table from the store when it comes back or when the store changes."""

from __future__ import annotations

from textual.screen import Screen


class LiveTableScreen(Screen):
    """Reload on resume (not on first show: ``on_mount`` just loaded) and on store changes.

    ``store_changed`` is called by the app's poll; by default it reloads only when the app's
    ``table_token`` (runs/results/models, not progress events) moved. Screens whose rows change with
    every progress event set ``reload_on_every_change``.
    """

    reload_on_every_change = False

    @property
    def store(self):
        """The app's store (one connection for the UI thread)."""
        return self.app.store

    def reload(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def on_screen_suspend(self) -> None:
        self._suspended = True

    def on_screen_resume(self) -> None:
        if getattr(self, "_suspended", False):
            self._suspended = False
            self.reload()

    def store_changed(self) -> None:
        if self.reload_on_every_change:
            self.reload()
        elif getattr(self, "_seen_token", None) != self.app.table_token:
            self._seen_token = self.app.table_token
            self.reload()
