"""``greentui show RUN``: config, status, per-task results with meters, metrics, the error if any."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from backend.cli.commands.common import console, parse_run_id, workspace_and_store
from backend.results.fmt import num as fmt_float
from backend.results.fmt import params as fmt_params
from backend.results.fmt import when as fmt_time


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("show", parents=parents, help="show one run in detail")
    p.add_argument("run", help="run id")
    p.add_argument("--json", action="store_true", help="print the run, its results and metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_id = parse_run_id(args.run)
    _, store = workspace_and_store(args, create=False)
    r = store.runs.require(run_id)
    results = store.results.task_results(run_id)
    base = store.results.task_results(r["parent_run_id"], "vanilla") if r["parent_run_id"] else []
    metrics = store.results.metrics(run_id)
    from backend.results.run_energy import run_energy_doc
    energy = run_energy_doc(store, r)
    if args.json:
        print(json.dumps({"run": r, "results": results, "baseline_results": base, "metrics": metrics,
                          **energy}, indent=2, default=str))
        return 0
    con = console()
    con.print(f"[b]run {run_id}[/b]  {r['kind']}  [b]{r['status']}[/b]  model {r['model_ref']}")
    con.print(f"created {fmt_time(r['created_at'])}  started {fmt_time(r['started_at'])}  "
              f"finished {fmt_time(r['finished_at'])}  device {r['device'] or '—'}")
    if r["params_before"]:
        ratio = (r["params_after"] or 0) / r["params_before"]
        con.print(f"parameters {fmt_params(r['params_before'])} → {fmt_params(r['params_after'])} ({ratio:.3f})")
    if r["parent_run_id"]:
        con.print(f"baseline: run {r['parent_run_id']}")
    if r["error"]:
        con.print(f"[red]error:[/red] {r['error']}")
    t = Table(title="task results")
    for c in ("variant", "task", "acc", "±", "acc_norm", "n", "s", "Wh", "meter"):
        t.add_column(c)
    for row in [*base, *results]:
        wh = None if row["energy_kwh"] is None else row["energy_kwh"] * 1000
        t.add_row(row["variant"], row["task"], fmt_float(row["acc"]), fmt_float(row["acc_stderr"]),
                  fmt_float(row["acc_norm"]), str(row["n_samples"] or "—"), fmt_float(row["seconds"], 1),
                  fmt_float(wh, 5), row["meter"] or "missing")
    con.print(t)
    from backend.results.run_energy import energy_lines
    for line in energy_lines(energy):
        con.print(line, markup=False, highlight=False)
    for m in metrics:
        con.print(f"{m['variant']} {m['name']}: {fmt_float(m['value'], 4)}")
    con.print("config: " + json.dumps(r["config"], sort_keys=True))
    return 0
