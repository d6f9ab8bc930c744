"""``greentui study``: a grid of runs from one file — run it, follow it, read its answer, write its report.

    greentui study run FILE.toml [--dry-run] [--executor slurm --partition P …] [--array-parallelism N]
    greentui study run --preset greenpruning|demo [--dry-run]
    greentui study status NAME        the grid: each cell's state, stage and result so far
    greentui study show NAME [--json] Tables 1 and 2, the energy-optimal cell, amortised cost, Pareto
    greentui study report NAME --out DIR   Markdown + SVG/PNG figures + CSV/LaTeX tables
    greentui study ls                 the workspace's studies

The file's keys are the run schema's settings (``backend.schema.study``); the executor options here
are generated from the same declarations as ``queue``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from backend.cli.commands.common import console, workspace_and_store
from backend.errors import GreentuiError

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    from backend.schema.runconfig import GROUP_NOTES, SETTINGS
    from backend.schema.settings import add_argument
    from backend.service.studies import PRESETS

    p = sub.add_parser("study", parents=parents, help="a grid of runs from one file: run, status, show, report",
                       description="A study is a TOML file: [study] name and models, [grid] run settings swept "
                                   "(cartesian product), [run] fixed run settings. See README, Studies.")
    ss = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    r = ss.add_parser("run", parents=parents, help="queue the study's cells that have no finished run",
                      description="Check every cell, then queue the cells without a done, queued or running run "
                                  "(one shared vanilla baseline per model) and start the runner, or submit one "
                                  "Slurm job array. Running it again queues only what is missing.")
    r.add_argument("file", nargs="?", help="the study file (TOML)")
    r.add_argument("--preset", choices=tuple(PRESETS), help="a built-in study: " +
                   "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    r.add_argument("--dry-run", action="store_true", help="show the cells, their planned sizes and a time "
                   "estimate; queue nothing")
    r.add_argument("--array-parallelism", type=_positive_int, metavar="N",
                   help="Slurm: at most N of the study's array tasks at once (default: the file's, else no limit)")
    r.add_argument("--no-start", action="store_true", help="only queue; start no runner, submit nothing")
    g = r.add_argument_group("executor", GROUP_NOTES.get("executor"))
    for s in SETTINGS:
        if s.group == "executor":
            add_argument(g, s)
    r.set_defaults(func=run)

    st = ss.add_parser("status", parents=parents, help="each cell's state, stage and result so far")
    st.add_argument("name", help="the study's name")
    st.add_argument("--json", action="store_true", help="print the grid as JSON")
    st.set_defaults(func=status)

    sh = ss.add_parser("show", parents=parents, help="the study's answer: tables, optimal cell, cost, Pareto")
    sh.add_argument("name", help="the study's name")
    sh.add_argument("--json", action="store_true", help="print the answer as JSON")
    sh.add_argument("--accuracy-floor", type=_share, metavar="SHARE",
                    help="a cell qualifies with at least this share of the vanilla average accuracy "
                         "(default: the file's, else 0.95)")
    sh.set_defaults(func=show)

    rp = ss.add_parser("report", parents=parents, help="write the study's report: Markdown, SVG/PNG, CSV, LaTeX")
    rp.add_argument("name", help="the study's name")
    rp.add_argument("--out", required=True, help="the folder to write into (created)")
    rp.add_argument("--accuracy-floor", type=_share, metavar="SHARE", help="as for study show")
    rp.add_argument("--force", action="store_true", help="write into a folder that holds other files")
    rp.set_defaults(func=report)

    ls = ss.add_parser("ls", parents=parents, help="the workspace's studies")
    ls.set_defaults(func=list_studies)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return n


def _share(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError("a share of the vanilla accuracy in (0, 1], e.g. 0.95")
    return x


# ------------------------------------------------------------------------------------- run

def run(args: argparse.Namespace) -> int:
    from backend.schema.runconfig import SETTINGS
    from backend.schema.settings import values_from_args
    from backend.service import studies

    overrides = values_from_args(args, tuple(s for s in SETTINGS if s.group == "executor"))
    if args.dry_run:
        ws, store = _maybe_store(args)
        spec = studies.load_study(args.file, preset=args.preset, workspace=ws, overrides=overrides)
        print_plan(studies.plan_study(store, spec))
        return 0
    ws, store = workspace_and_store(args)
    spec = studies.load_study(args.file, preset=args.preset, workspace=ws, overrides=overrides)
    done = studies.run_study(ws, store, spec, preset=args.preset, source=args.file and str(args.file),
                             start=not args.no_start, array_parallelism=args.array_parallelism)
    left = ", ".join(f"{n} {state}" for state, n in sorted(done.settled.items()))
    reused = f"; reused baseline run {', '.join(map(str, done.reused_baselines))}" if done.reused_baselines else ""
    if not done.queued:
        print(f"study {spec.name}: nothing to queue ({left or 'no cells'}){reused}")
        return 0
    where = ""
    slurm = any(c.config.executor == "slurm" for c in spec.check())
    if done.paused:
        where = "; the queue is paused (greentui resume to start it)"
    elif done.runner_pid:
        where = (f"; the Slurm runner (pid {done.runner_pid}) submits them as one job array" if slurm
                 else f"; runner pid {done.runner_pid}")
    print(f"study {spec.name}: queued {len(done.queued)} run(s) {_ids(done.queued)}"
          + (f" ({left} left as they are)" if left else "") + reused + where)
    print(f"follow it: greentui study status {spec.name}")
    return 0


def _ids(ids: list[int]) -> str:
    return f"{ids[0]}–{ids[-1]}" if len(ids) > 2 and ids == list(range(ids[0], ids[-1] + 1)) else \
        ", ".join(map(str, ids))


def _maybe_store(args: argparse.Namespace):
    """A dry run reads the workspace when there is one (past runs for the estimate, the study's
    state) and creates nothing when there is none."""
    from backend.workspace import DB_NAME, resolve_workspace
    try:
        ws = resolve_workspace(getattr(args, "runs_dir", None), create=False)
    except GreentuiError:
        return None, None
    from backend.store import open_store
    return ws, open_store(ws) if (ws / DB_NAME).exists() else None


def print_plan(plan) -> None:
    from rich.table import Table

    from backend.results.fmt import params as fmt_params
    from backend.service.form_advice import duration
    con = console()
    spec = plan.spec
    t = Table(title=f"study {spec.name} (dry run: nothing queued)", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"), ("model", "left"), ("cell", "left"), ("params", "right"), ("planned", "right"),
        ("paper", "right"), ("time", "right"), ("state", "left"))
    for col, just in columns:
        t.add_column(col, justify=just)
    with_paper = bool(plan.reference_sizes)
    if not with_paper:
        t.columns = [c for c in t.columns if c.header != "paper"]
    for cp in plan.cells:
        c = cp.cell
        planned = fmt_params(cp.params_after) if cp.params_after else "—"
        if cp.plan_note and cp.params_after is None:
            planned = "no config"
        row = [str(c.index), _text(_short_model(c.model)), _text(c.label),
               fmt_params(cp.params_before) if cp.params_before else "—",
               planned + (" *" if cp.plan_note == "shipped config" else "")]
        if with_paper:
            paper = plan.reference_sizes.get(c.model)
            row.append(f"{paper / 1e9:.1f}B" if paper and not c.baseline else "")
        row += [duration(cp.seconds) if cp.seconds is not None else "—", cp.state]
        t.add_row(*row)
    con.print(t)
    notes = []
    if any(cp.plan_note == "shipped config" for cp in plan.cells):
        notes.append("* planned from the config.json shipped with greentui (the model is not on this machine)")
    missing = sorted({cp.cell.model for cp in plan.cells if cp.params_after is None and cp.plan_note})
    for m in missing:
        notes.append(f"no plan for {m}: {next(cp.plan_note for cp in plan.cells if cp.cell.model == m)}")
    todo = plan.to_queue
    total = plan.seconds
    est = f"~{duration(total)} on this machine" if total is not None else f"no estimate ({plan.estimate_note})" \
        if plan.estimate_note else "no estimate"
    baselines = sum(1 for cp in todo if cp.cell.baseline)
    notes.append(f"{len(todo)} of {len(plan.cells)} cells would be queued ({baselines} shared vanilla "
                 f"baseline{'s' if baselines != 1 else ''}); time: {est}")
    from backend.text import safe_text
    for n in notes:
        con.print(safe_text(n), markup=False, highlight=False)


def _text(value: str):
    """Outside text (a model's name, a cell's values, a run's error) as a cell: never markup, control
    characters escaped, long names cut."""
    from rich.text import Text

    from backend.text import safe_name
    return Text(safe_name(value))


def _short_model(ref: str) -> str:
    from pathlib import Path
    p = Path(ref)
    return p.name if p.is_absolute() else ref


# ------------------------------------------------------------------------------------- status

def status(args: argparse.Namespace) -> int:
    from rich.table import Table

    from backend.results.fmt import num
    from backend.service.studies import study_grid
    _, store = workspace_and_store(args, create=False)
    study, cells = study_grid(store, args.name)
    if args.json:
        from dataclasses import asdict
        print(json.dumps({"study": study["name"], "cells": [asdict(c) for c in cells]}, indent=2, default=str))
        return 0
    con = console()
    t = Table(title=f"study {study['name']}: {sum(c.status == 'done' for c in cells)}/{len(cells)} cells done",
              title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"), ("model", "left"), ("cell", "left"), ("run", "right"), ("state", "left"),
        ("stage", "left"), ("tasks", "right"), ("acc", "right"), ("Wh", "right"))
    for col, just in columns:
        t.add_column(col, justify=just)
    from backend.results.fmt import status_cell
    for c in cells:
        stage = c.stage or ""
        if c.waits_for:
            stage = f"waits for run {c.waits_for}"
        elif c.status == "failed" and c.error:
            stage = c.error[:60]
        t.add_row(str(c.index), _text(_short_model(c.model)), _text(c.label), str(c.run_id or "—"),
                  status_cell(c.status), _text(stage), f"{c.tasks_done}/{c.tasks_planned}", num(c.avg_acc),
                  num(c.avg_wh, 4))
    con.print(t)
    return 0


def list_studies(args: argparse.Namespace) -> int:
    from backend.service.studies import study_names
    _, store = workspace_and_store(args, create=False)
    rows = study_names(store)
    if not rows:
        print("no studies here yet: greentui study run FILE.toml")
        return 0
    for r in rows:  # study names are letters, digits and - _ . (the schema refuses anything else)
        print(f"{r['name']}: {r['done'] or 0}/{r['cells']} cells done")
    return 0


# ------------------------------------------------------------------------------------- show

def show(args: argparse.Namespace) -> int:
    from backend.results.study import study_answer
    _, store = workspace_and_store(args, create=False)
    ans = study_answer(store, args.name, args.accuracy_floor)
    if args.json:
        print(json.dumps(ans.to_dict(), indent=2, default=str))
        return 0
    from backend.results.study_report import answer_markdown
    sys.stdout.write(answer_markdown(ans) + "\n")
    return 0


def report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.results.study_report import write_report
    _, store = workspace_and_store(args, create=False)
    written = write_report(store, args.name, Path(args.out), args.accuracy_floor, force=args.force)
    for path in written:
        print(path)
    return 0


__all__: list[Any] = ["register"]
