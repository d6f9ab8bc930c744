"""Plugins through entry points: the one way greentui reads the ``greentui.*`` entry-point groups.

Executors, energy meters and pruning importances each keep a registry of their own; what they share is
how a separate package joins one: its entry point is read (by name only, or loaded), a built-in or an
earlier plugin of the same name is never replaced, and a plugin that fails to load is named with its
reason instead of taking the others (or the app) down. Standard library only: the schema layer and the
UI's start-up path read names through it, and importlib.metadata is imported only when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any


def entry_point_names(group: str) -> list[str]:
    """The names installed plugins declare in ``group``; nothing is imported."""
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group=group)]


def load_entry_points(group: str, known: Container[str], register: Callable[[Any], Any]) -> dict[str, str]:
    """Load every plugin of ``group`` whose name is not ``known`` and hand what it exports to
    ``register`` (which returns the registered object, with a ``name``). Returns the broken ones:
    ``{entry-point name: why}`` — an exception while loading or registering, or a plugin that
    registers under another name than its entry point's."""
    from importlib.metadata import entry_points

    broken: dict[str, str] = {}
    for ep in entry_points(group=group):
        if ep.name in known:  # a plugin never replaces a built-in (or an earlier) one
            continue
        try:
            made = register(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
            broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            continue
        if getattr(made, "name", None) != ep.name:
            broken[ep.name] = f"{ep.value} registers {getattr(made, 'name', None)!r}, not {ep.name!r}"
    return broken
