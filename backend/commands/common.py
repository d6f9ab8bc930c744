"""Helpers shared by the subcommands: open the workspace and its store, format numbers."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from ..store import Store, open_store
from ..workspace import resolve_workspace


def workspace_and_store(args: argparse.Namespace, *, create: bool = True) -> tuple[Path, Store]:
    """``create=False`` for read-only commands: a missing workspace is an error, never created."""
    ws = resolve_workspace(getattr(args, "runs_dir", None), create=create)
    return ws, open_store(ws)


def fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def fmt_float(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_time(t: float | None) -> str:
    return "—" if not t else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


from ..runs import parse_run_id  # noqa: E402,F401  (re-exported for the commands)


def console(stderr: bool = False):
    """A rich console; piped output gets a wide fixed width so tables are never truncated."""
    import sys

    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)
