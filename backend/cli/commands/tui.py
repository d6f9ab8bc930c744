"""``greentui`` (no command), ``greentui tui`` and ``greentui demo``: the workbench's command line.

Only the arguments live here; ``backend.cli.open_workbench`` (the composition root) opens the UI, so
no command module imports the UI package.
"""

from __future__ import annotations

import argparse

from backend.schema.catalog import DEMO_DURATION


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tui", parents=parents, help="open the terminal workbench (the default)",
                       description="Models, runs, new run, run detail, compare and queue screens. The UI "
                                   "never runs the work: a detached runner does, so closing it (or an SSH "
                                   "drop) never costs a run.")
    p.add_argument("--device", default="auto", help="device the runner started by the UI claims runs for")
    d = sub.add_parser("demo", parents=parents, help="open the workbench and queue the demo run",
                       description="Copy the shipped demo model (a ~1.3 M-parameter Llama trained on the "
                                   "package's own text, offline), queue one demo run on the bundled real task "
                                   f"items and open the workbench on it; the run takes {DEMO_DURATION}.")
    d.add_argument("--device", default="auto")
    d.set_defaults(demo=True)
