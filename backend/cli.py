"""The ``greentui`` console script: no subcommand opens the TUI; subcommands run the pipeline headless.

Argument parsing imports no heavy library; each command imports what it needs when it runs, so
``greentui --help`` and ``greentui ls`` answer at once.

This module is the composition root, the one place where the CLI and the UI meet: ``greentui``,
``greentui tui`` and ``greentui demo`` hand the workspace to ``greentui.app.run_workbench`` (imported
here, when chosen). Nothing else in ``backend`` imports the UI package, and the UI never imports
``backend.commands``: imports point from ``greentui`` to ``backend`` only (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import GreentuiError

COMMAND_MODULES = ("tui", "ls", "show", "models", "demo_model", "prune", "plan", "run", "queue", "worker",
                   "export", "import_", "cancel", "rm", "doctor")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS,
                        help="workspace folder (default: $GREENTUI_HOME or ./runs)")
    parser = argparse.ArgumentParser(
        prog="greentui", parents=[common],
        description="Does pruning this LLM save energy, and what accuracy does it cost? "
                    "Without a command, opens the terminal workbench.")
    parser.add_argument("--version", action="version", version=f"greentui {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"backend.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"backend.commands.{name}":
                continue  # a command whose module is not written yet
            raise
        module.register(sub, [common])
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def open_workbench(args: argparse.Namespace) -> int:
    """``greentui`` / ``greentui tui`` / ``greentui demo``: the Textual workbench on the workspace."""
    from .workspace import resolve_workspace
    ws = resolve_workspace(getattr(args, "runs_dir", None))
    from greentui.app import run_workbench  # Textual only: the UI never imports torch
    run_workbench(ws, device=getattr(args, "device", "auto"), demo=getattr(args, "demo", False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "runs_dir"):
        args.runs_dir = None
    func = getattr(args, "func", None) or open_workbench  # bare `greentui`: the workbench
    try:
        return int(func(args) or 0)
    except GreentuiError as exc:
        print(f"greentui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("greentui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
