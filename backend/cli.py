"""The ``greentui`` console script: no subcommand opens the TUI; subcommands run the pipeline headless.

Argument parsing imports no heavy library; each command imports what it needs when it runs, so
``greentui --help`` and ``greentui ls`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import GreentuiError

COMMAND_MODULES = ("tui", "ls", "show", "models", "demo_model", "prune", "plan", "run", "queue", "worker",
                   "export", "import_", "cancel", "rm")


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "runs_dir"):
        args.runs_dir = None
    func = getattr(args, "func", None)
    if func is None:  # bare `greentui`: the workbench
        from .commands.tui import run as run_tui
        func = run_tui
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
