"""The ``greentui`` console script: no subcommand opens the TUI; subcommands run the pipeline headless.

Argument parsing imports no heavy library; each command imports what it needs when it runs, so
``greentui --help`` and ``greentui ls`` answer at once.

This module is the composition root, the one place where the CLI and the UI meet: ``greentui``,
``greentui tui`` and ``greentui demo`` hand the workspace to ``greentui.app.run_workbench`` (imported
here, when chosen). Nothing else in ``backend`` imports the UI package, and the UI never imports
``backend.cli.commands``: imports point from ``greentui`` to ``backend`` only (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import GreentuiError
from backend.text import safe_text

COMMAND_MODULES = ("tui", "ls", "show", "models", "demo_model", "prune", "plan", "run", "queue", "worker",
                   "export", "export_model", "import_", "cancel", "rm", "doctor", "study")


#: subcommand name -> the module that registers it (module names not listed register their own name)
_COMMAND_OF = {"demo": "tui", "demo-model": "demo_model", "import": "import_", "resume": "queue",
               "export-model": "export_model",
               "pause": "queue"}


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules to import for this command line.

    Why: importing every command module (and what they import: the run service, the schema) cost
    ~0.1 s of the TUI's first frame (issue #12, P2). Only the chosen command's module is needed to
    parse and run it; ``--help``, ``--version`` and an unknown command still get the full parser, so
    their listing and error messages are unchanged.
    """
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--runs-dir":
            i += 2
            continue
        if tok.startswith("--runs-dir="):
            i += 1
            continue
        if tok.startswith("-"):
            return COMMAND_MODULES  # --help, --version, or an option argparse must judge
        module = _COMMAND_OF.get(tok, tok)
        return (module,) if module in COMMAND_MODULES else COMMAND_MODULES
    return ("tui",)  # bare `greentui`: the workbench


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS,
                        help="workspace folder (default: $GREENTUI_HOME or ./runs)")
    parser = argparse.ArgumentParser(
        prog="greentui", parents=[common],
        description="Does pruning this LLM save energy, and what accuracy does it cost? "
                    "Without a command, opens the terminal workbench.")
    parser.add_argument("--version", action="version", version=f"greentui {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(f"backend.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"backend.cli.commands.{name}":
                continue  # a command whose module is not written yet
            raise
        module.register(sub, [common])
    return parser


def _version() -> str:
    from backend import __version__
    return __version__


def open_workbench(args: argparse.Namespace) -> int:
    """``greentui`` / ``greentui tui`` / ``greentui demo``: the Textual workbench on the workspace."""
    from backend.workspace import resolve_workspace
    ws = resolve_workspace(getattr(args, "runs_dir", None))
    from greentui.app import run_workbench  # Textual only: the UI never imports torch
    run_workbench(ws, device=getattr(args, "device", "auto"), demo=getattr(args, "demo", False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_modules_for(argv))
    args = parser.parse_args(argv)
    if not hasattr(args, "runs_dir"):
        args.runs_dir = None
    func = getattr(args, "func", None) or open_workbench  # bare `greentui`: the workbench
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe is answered below, not by a traceback
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except GreentuiError as exc:
        print(f"greentui: error: {safe_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("greentui: interrupted", file=sys.stderr)
        return 130


#: the exit status of a process that SIGPIPE ended (128 + 13), what `yes | head` reports
EXIT_BROKEN_PIPE = 141


def _reader_went_away() -> int:
    """``greentui export … | head``: the reader closed the pipe. End quietly, as a process that
    SIGPIPE ended would: no traceback, no "Exception ignored" when Python flushes stdout at exit
    (stdout now points at /dev/null; the Python docs' recipe, "Note on SIGPIPE")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture): nothing will be flushed to a pipe
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
