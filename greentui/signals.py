"""What the app tells its screens: typed payloads of the app's Textual signals.

``GreentuiApp.store_changed`` (a ``textual.signal.Signal[StoreChange]``) is published whenever the
store's change token moved; screens subscribe to it (``greentui.screens._live.WatchingScreen``).
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.store import ChangeToken


@dataclass(frozen=True)
class StoreChange:
    """The store moved from ``previous`` to ``token``."""

    token: ChangeToken
    previous: ChangeToken | None

    @property
    def tables_changed(self) -> bool:
        """Runs, results, models or the queue changed (not only a running run's progress events)."""
        return self.previous is None or self.token.tables != self.previous.tables
