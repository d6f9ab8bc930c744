"""``greentui import FILE...``: lm-eval results JSON files become runs in the store.

``greentui import --table FILE.csv --metric acc|wh [--source TEXT]``: a published table becomes
reference runs (``backend.results.reference_tables``), its printed Avg and Ratio checked against its cells.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.cli.commands.common import console, workspace_and_store
from backend.errors import GreentuiError
from backend.text import NAME_LIMIT, safe_text


@contextmanager
def import_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for a long import (a terminal only; nothing when piped)."""
    import sys

    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import Progress

    with Progress(transient=True, console=console(stderr=True)) as bar:
        task = bar.add_task("writing reference runs", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", parents=parents, help="import lm-eval results JSON files, or a published table",
                       description="Each file written by `lm_eval --output_path` becomes a run (the study's "
                                   "seven tasks are kept). Energy in the file is kept; absent, it is missing. "
                                   "With --table, a paper's accuracy or energy table (CSV: model, variant, one "
                                   "column per task, optional Avg and Ratio) becomes reference runs.")
    p.add_argument("files", nargs="*")
    p.add_argument("--variant", choices=("vanilla", "pruned"), default="vanilla")
    p.add_argument("--baseline", type=int, default=None, help="run id of the vanilla run to compare with")
    p.add_argument("--table", default=None, metavar="FILE.csv",
                   help="a published table: rows become reference runs (kind 'reference')")
    p.add_argument("--metric", choices=("acc", "wh"), default=None,
                   help="what the table's cells are: accuracy (fraction or %%) or energy in Wh")
    p.add_argument("--source", default=None, help="where the table comes from (default: the file name); a "
                   "table from another source never replaces this one's rows")
    p.add_argument("--rename", action="append", default=None, metavar="OLD=NEW",
                   help="store the table's model OLD (any case) as NEW, to match another table's spelling "
                        "(repeatable); names already match in any case")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.table is not None:
        if args.files:
            raise GreentuiError("import: give either --table FILE.csv or lm-eval JSON files, not both")
        if args.metric is None:
            raise GreentuiError("import --table: --metric acc or --metric wh is required")
        from backend.results.reference_tables import flags_of, import_table, parse_renames
        renames = parse_renames(args.rename)
        _, store = workspace_and_store(args)
        with import_progress() as progress:
            ids = import_table(store, Path(args.table), args.metric, args.source, renames, progress=progress)
        for i in ids:
            run_row = store.runs.require(i)
            flags = flags_of(run_row)
            print(f"{i}\treference\t{safe_text(run_row['model_name'], NAME_LIMIT)}"
                  + ("" if not flags else "\tFLAGGED"))
            for f in flags:
                print(f"  flag: {safe_text(f)}")
        return 0
    if not args.files:
        raise GreentuiError("import: give lm-eval results JSON files, or --table FILE.csv --metric acc|wh")
    if args.metric is not None or args.source is not None or args.rename:
        raise GreentuiError("import: --metric, --source and --rename go with --table")
    from backend.results.importer import import_files
    _, store = workspace_and_store(args)
    ids = import_files(store, [Path(f) for f in args.files], args.variant, args.baseline)
    for i in ids:
        print(i)
    return 0
