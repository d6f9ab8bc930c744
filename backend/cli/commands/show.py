"""``greentui show RUN``: config, status, per-task results with meters, metrics, the error if any."""

from __future__ import annotations

import argparse
import json

from rich.table import Table
from rich.text import Text

from backend.cli.commands.common import console, parse_run_id, plain, say, workspace_and_store
from backend.results.fmt import num as fmt_float
from backend.results.fmt import params as fmt_params
from backend.results.fmt import when as fmt_time
from backend.text import NAME_LIMIT, safe_text


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
    # an experiment's vanilla figures (perplexity…) live on its baseline run: shown with it
    base_metrics = [m for m in store.results.metrics(r["parent_run_id"]) if m["variant"] == "vanilla"] \
        if r["parent_run_id"] else []
    from backend.results.run_energy import run_energy_doc
    energy = run_energy_doc(store, r)
    if args.json:
        print(json.dumps({"run": r, "results": results, "baseline_results": base, "metrics": metrics,
                          "baseline_metrics": base_metrics, **energy}, indent=2, default=str))
        return 0
    con = console()
    # outside text (the model, the error, meters, the config) is printed as text: never markup,
    # control characters escaped (backend.text)
    con.print(Text.assemble((f"run {run_id}", "bold"), "  ", safe_text(r["kind"]), "  ",
                            (safe_text(r["status"]), "bold"), "  model ", safe_text(r["model_ref"], NAME_LIMIT)))
    con.print(f"created {fmt_time(r['created_at'])}  started {fmt_time(r['started_at'])}  "
              f"finished {fmt_time(r['finished_at'])}  device {r['device'] or '—'}")
    if r["params_before"]:
        ratio = (r["params_after"] or 0) / r["params_before"]
        # counted, not measured: the one ratio with no interval to show, and it says so
        con.print(f"parameters {fmt_params(r['params_before'])} → {fmt_params(r['params_after'])} "
                  f"(×{ratio:.3f}, counted: exact)")
    if r["parent_run_id"]:
        con.print(f"baseline: run {r['parent_run_id']}")
    if r["error"]:
        say(con, "error:", r["error"], style="red")
    t = Table(title="task results")
    for c in ("variant", "task", "acc", "±", "acc_norm", "n", "s", "Wh", "meter"):
        t.add_column(c)
    for row in [*base, *results]:
        wh = None if row["energy_kwh"] is None else row["energy_kwh"] * 1000
        t.add_row(*plain(row["variant"], row["task"], fmt_float(row["acc"]), fmt_float(row["acc_stderr"]),
                         fmt_float(row["acc_norm"]), str(row["n_samples"] or "—"), fmt_float(row["seconds"], 1),
                         fmt_float(wh, 5), row["meter"] or "missing", limit=NAME_LIMIT))
    con.print(t)
    from backend.results.run_energy import energy_lines
    for line in energy_lines(energy):
        say(con, line)
    for m in [*base_metrics, *metrics]:
        say(con, m["variant"], f"{m['name']}:", fmt_float(m["value"], 4))
    say(con, "config: " + json.dumps(r["config"], sort_keys=True))  # JSON escapes control characters
    return 0
