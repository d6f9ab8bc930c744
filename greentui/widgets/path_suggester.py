"""Path completion for text fields that take a model directory (Models → Add, New run's model).

Textual's ``Input`` shows a suggester's completion greyed after the cursor; → (or End) takes it. This
suggester completes the last component of a path from the directory listing (folders end with
``/``), and otherwise a known model reference, so typing ``./ru`` offers ``./runs/`` and
``Qw`` offers ``Qwen/Qwen2.5-7B`` when the workspace knows it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual.suggester import Suggester

MAX_LISTED = 2000  # entries read from one directory per keystroke: a huge folder cannot stall the UI


class PathSuggester(Suggester):
    def __init__(self, known: Iterable[str] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)  # folders change; paths are case-sensitive
        self.known = sorted(set(known))

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        if value.startswith(("/", "./", "../", "~")) or os.sep in value and Path(value).expanduser().parent.is_dir():
            found = complete_path(value)
            if found:
                return found
        for ref in self.known:
            if ref.startswith(value) and ref != value:
                return ref
        return None


def complete_path(value: str) -> str | None:
    """``value`` with its last component completed from its folder's entries (the first in name order
    that starts with it; a folder gets a trailing ``/``), or None."""
    head, _, partial = value.rpartition("/")
    folder = Path(os.path.expanduser(head or "/")) if value.startswith(("/", "~")) or head else Path(".")
    try:
        with os.scandir(folder) as entries:
            names = []
            for i, entry in enumerate(entries):
                if i >= MAX_LISTED:
                    break
                if entry.name.startswith(partial) and (partial.startswith(".") or not entry.name.startswith(".")):
                    names.append(entry.name + ("/" if entry.is_dir() else ""))
    except OSError:
        return None
    for name in sorted(names):
        if name != partial:
            return f"{head}/{name}" if value.rpartition("/")[1] else name
    return None
