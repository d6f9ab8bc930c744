"""The workbench's screen bases: worker failures go to the app's one handler; screens that follow the
store subscribe to the app's ``store_changed`` signal.

``Worker.StateChanged`` does not bubble, so :class:`AppScreen` hands its workers' state changes to
``GreentuiApp.on_worker_state_changed`` — the one place a failure becomes a notification. The app polls the store's change token (``GreentuiApp.poll_store``) and publishes a
:class:`~greentui.signals.StoreChange` when it moved; each screen that derives from
:class:`WatchingScreen` receives it in ``store_change`` while it is the visible screen (a hidden one
catches up on resume). No screen is looked up by name or probed with ``getattr``.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from textual.screen import Screen
from textual.worker import Worker

from backend.compat import start_at_app_css_generation
from greentui.signals import StoreChange


class AppScreen(Screen):
    """A screen whose thread workers' failures reach the app's handler (a notification, never a crash)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A new screen is styled from the app's current stylesheet when it mounts, yet Textual re-parses
        # every stylesheet when a mode's first screen carries an older CSS generation than the app's:
        # ~40 ms of the first frame and of the first `2`/`3` (P2). So a screen starts at the current
        # generation (a private attribute: backend.compat, which costs only the 40 ms if it moves).
        with suppress(Exception):  # no running app (a screen built outside one)
            start_at_app_css_generation(self, self.app)
        self._take_breakpoint_classes()

    def _take_breakpoint_classes(self) -> None:
        """Take the size classes (the app's ``-narrow``/``-wide``) now, as Textual would on the screen's
        first resize: added then, they would restyle every widget of a screen styled a moment before."""
        try:
            width, height = self.app.size
        except Exception:  # no running app (a screen built outside one): Textual sets them on resize
            return
        horizontal = self.HORIZONTAL_BREAKPOINTS if self.HORIZONTAL_BREAKPOINTS is not None \
            else self.app.HORIZONTAL_BREAKPOINTS
        vertical = self.VERTICAL_BREAKPOINTS if self.VERTICAL_BREAKPOINTS is not None \
            else self.app.VERTICAL_BREAKPOINTS
        for size, points in ((width, horizontal), (height, vertical)):
            for point, name in sorted(points or [], reverse=True):
                if size >= point:
                    self.add_class(name, update=False)
                    break

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)


class WatchingScreen(AppScreen):
    """A screen told of store changes (``store_change``) while it is the one on display."""

    def on_mount(self) -> None:
        self.app.store_changed.subscribe(self, self._on_store_changed)

    def _on_store_changed(self, change: StoreChange) -> None:
        if self.is_current:
            self.store_change(change)

    def store_change(self, change: StoreChange) -> None:
        """Override: react to a change of the store (runs, results, models, queue or events)."""


class LiveTableScreen(WatchingScreen):
    """Reload on resume (not on first show: ``on_mount`` just loaded) and on store changes.

    By default a table reloads only when runs/results/models/the queue moved, not for every progress
    event of a running run; screens whose rows change with every event set ``reload_on_every_change``.
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

    def store_change(self, change: StoreChange) -> None:
        if self.reload_on_every_change or change.tables_changed:
            self.reload()
