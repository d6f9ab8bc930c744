"""Helpers shared by the subcommands: open the workspace and its store, a console (figures are
formatted by ``backend.results.fmt``, the same module the TUI uses)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.service.runs import parse_run_id  # noqa: F401  (re-exported for the commands)
from backend.store import Store, open_store
from backend.text import safe_text
from backend.workspace import resolve_workspace


def workspace_and_store(args: argparse.Namespace, *, create: bool = True) -> tuple[Path, Store]:
    """``create=False`` for read-only commands: a missing workspace is an error, never created."""
    ws = resolve_workspace(getattr(args, "runs_dir", None), create=create)
    return ws, open_store(ws)


def plain(*values: object, limit: int | None = None) -> list:
    """Rich ``Text`` cells of outside values (names, errors, meters): shown as written, never read as
    markup, control characters escaped (``backend.text.safe_text``)."""
    from backend.results.fmt import plain as one
    return [one(v, limit) for v in values]


def say(con, *parts: object, style: str = "") -> None:
    """Print one line whose parts may hold outside text: plain text, no markup, no highlighting."""
    from rich.text import Text
    con.print(Text(" ".join(safe_text(p) for p in parts), style=style), markup=False, highlight=False)


def console(stderr: bool = False):
    """A rich console; piped output gets a wide fixed width so tables are never truncated."""
    import sys

    from rich.console import Console

    class CommandConsole(Console):
        def on_broken_pipe(self) -> None:
            """The reader went away (``greentui ls | head``): rich's own answer is exit 1; hand it
            to ``backend.cli.main``, which ends every command the same quiet way (status 141)."""
            self.quiet = True
            raise BrokenPipeError

    stream = sys.stderr if stderr else sys.stdout
    return CommandConsole(stderr=stderr, width=None if stream.isatty() else 200)
