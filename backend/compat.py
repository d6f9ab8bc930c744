"""Every private internal of a framework that greentui relies on, in one place, with the versions it
was checked against.

A private name (``App._handle_exception``, ``textual.widgets._footer``, plotext's ``_utility``,
lm-eval's evaluator internals) can change in any release. Each one greentui touches is reached
through this module only, so an upgrade is checked here: :func:`checked` says whether the installed
version is one the shim was written for, and a shim whose framework moved on degrades (a feature
lost, a warning logged) instead of failing at a user.

Standard library only at import time: the UI imports this module; each framework is imported inside
the function that needs it.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import metadata

log = logging.getLogger("greentui.compat")


@lru_cache(maxsize=None)
def version_of(distribution: str) -> tuple[int, ...]:
    """The installed version of ``distribution`` as numbers (``(8, 2, 8)``); ``()`` when absent."""
    try:
        text = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ()
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def checked(distribution: str, lowest: tuple[int, ...], below: tuple[int, ...]) -> bool:
    """Whether the installed ``distribution`` is within ``[lowest, below)``: the versions a shim was
    written and tested for. Outside that range the caller takes its fallback and this logs why."""
    have = version_of(distribution)
    ok = bool(have) and lowest <= have < below
    if not ok:
        log.warning("%s %s is outside the versions greentui's shim was checked with (%s to below %s)",
                    distribution, ".".join(map(str, have)) or "(absent)", ".".join(map(str, lowest)),
                    ".".join(map(str, below)))
    return ok
