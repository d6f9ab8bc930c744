"""``greentui import FILE...``: lm-eval results JSON files become runs in the store."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import workspace_and_store


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", parents=parents, help="import lm-eval results JSON files as runs",
                       description="Each file written by `lm_eval --output_path` becomes a run (the study's "
                                   "seven tasks are kept). Energy in the file is kept; absent, it is missing.")
    p.add_argument("files", nargs="+")
    p.add_argument("--variant", choices=("vanilla", "pruned"), default="vanilla")
    p.add_argument("--baseline", type=int, default=None, help="run id of the vanilla run to compare with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..importer import import_files
    _, store = workspace_and_store(args)
    ids = import_files(store, [Path(f) for f in args.files], args.variant, args.baseline)
    for i in ids:
        print(i)
    return 0
