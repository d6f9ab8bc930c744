"""The study's two tables from the store: Table 1 (accuracy) and Table 2 (energy, Wh).

For each experiment: a vanilla row (its baseline's results) and a pruned row, the seven task columns,
Avg, and Ratio = pruned Avg / vanilla Avg. Averages are over the tasks a row holds; the ratio is over
the tasks both rows hold, so a missing task never skews it. A missing figure is shown as missing,
never as zero. Pure Python (the TUI's Compare screen uses it too).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

from backend.measure.stats import spread
from backend.results.fmt import method_label, ratio_label
from backend.results.ratios import METHOD_ACC, METHOD_PAIRED, METHOD_UNPAIRED, Ratio, as_dict, batch_ratios
from backend.results.tables import Table, csv_text, latex_table, markdown_table
from backend.schema.tasks import STUDY_TASKS, TASK_LABELS
from backend.store import Store

SHORT = TASK_LABELS  # the tasks' display names (backend.schema.tasks: one naming for tables and charts)


@dataclass
class Row:
    """One line of a study table."""

    model: str
    run_id: int
    variant: str
    values: dict[str, float | None]
    stderr: dict[str, float | None] = field(default_factory=dict)
    meters: dict[str, str | None] = field(default_factory=dict)
    avg: float | None = None
    ratio: Ratio | None = None      # against the vanilla row shown before it, with its interval
    kind: str = "experiment"        # "reference" rows are a paper's printed figures, not measurements
    method: str = ""                # "vanilla", the importance ("taylor"), or "pruned" when the file does not say
    prune_ratio: str = "—"          # as the study writes it ("2/7"); "—" for vanilla rows
    baseline_run_id: int | None = None  # the run of the vanilla row this row's ratio is against
    design: str = ""                # energy rows: "paired" (its own vanilla windows) or "unpaired"
    ci95: dict[str, float | None] = field(default_factory=dict)  # Wh rows: 95 % half-width over the passes


def _avg(values: dict[str, float | None], tasks: list[str]) -> float | None:
    vals = [v for t in tasks if (v := values.get(t)) is not None]
    return mean(vals) if vals else None


def _method(run: dict[str, Any], variant: str) -> tuple[str, str]:
    """The row's method and pruning ratio cells: what tells two pruned rows of one model apart."""
    if variant == "vanilla":
        return "vanilla", "—"
    cfg = run.get("config") or {}
    if run.get("kind") != "experiment":
        return "pruned", "—"        # an imported file or a paper's table: pruned, but not said how
    label = {"kind": "experiment", "no_prune": cfg.get("no_prune"), "method": cfg.get("importance"),
             "prune_ratio": cfg.get("prune_ratio")}
    return method_label(label), ratio_label(label)


def _rows_for(store: Store, run: dict[str, Any], variant: str, metric: str) -> Row:
    results = {r["task"]: r for r in store.results.task_results(run["id"], variant)}
    if not results and metric == "wh":  # a paired run's vanilla windows without a task row: their means
        passes: dict[str, list[dict[str, Any]]] = {}
        for p in store.results.energy_repeats(run["id"], variant):
            passes.setdefault(p["task"], []).append(p)
        results = {t: {"energy_kwh": mean(p["energy_kwh"] for p in ps if p["energy_kwh"] is not None)
                       if any(p["energy_kwh"] is not None for p in ps) else None, "meter": ps[0]["meter"]}
                   for t, ps in passes.items()}
    if metric == "acc":
        values = {t: results[t]["acc"] for t in results}
        stderr = {t: results[t]["acc_stderr"] for t in results}
    else:
        values = {t: None if results[t]["energy_kwh"] is None else results[t]["energy_kwh"] * 1000
                  for t in results}
        stderr = {}
    meters = {t: results[t]["meter"] for t in results}
    ci95: dict[str, float | None] = {}
    if metric == "wh":
        pass_wh: dict[str, list[float | None]] = {}
        for p in store.results.energy_repeats(run["id"], variant):
            pass_wh.setdefault(p["task"], []).append(None if p["energy_kwh"] is None else p["energy_kwh"] * 1000)
        ci95 = {t: (sp.ci95 if (sp := spread(v)) else None) for t, v in pass_wh.items()}
    name = run.get("model_name") or run.get("model_ref") or "?"
    method, prune_ratio = _method(run, variant)
    return Row(model=name, run_id=run["id"], variant=variant, values=values, stderr=stderr, meters=meters,
               kind=run.get("kind") or "experiment", method=method, prune_ratio=prune_ratio, ci95=ci95)


def study_tables(store: Store, run_ids: list[int] | None = None) -> dict[str, Any]:
    """{"tasks": [...], "accuracy": [Row...], "energy": [Row...]} for the given or all finished runs.

    Experiments that share a baseline are grouped under its vanilla row, which is written once
    (it used to be repeated above every experiment); each pruned row's ``ratio`` is against the
    vanilla row of its group (``baseline_run_id``). A group stands where its first run would.
    """
    if run_ids:
        runs = [store.runs.require(i) for i in run_ids]
    else:
        runs = [store.runs.require(r["id"]) for r in store.runs.list(limit=100_000, descending=False)
                if r["status"] == "done" and r["kind"] in ("experiment", "import", "reference")]
    tables: dict[str, Any] = {"accuracy": [], "energy": []}
    for metric, key in (("acc", "accuracy"), ("wh", "energy")):
        groups: dict[tuple[str, int], list[Row]] = {}
        for run in runs:
            if metric == "wh" and run["kind"] == "experiment" and store.results.energy_repeats(run["id"], "vanilla"):
                # the paired protocol: its energy ratio is against its own vanilla windows, shown beside it
                groups[("paired", run["id"])] = [_rows_for(store, run, "vanilla", metric),
                                                 _rows_for(store, run, "pruned", metric)]
            elif run["kind"] in ("experiment", "baseline") and (run["parent_run_id"] or run["kind"] == "baseline"):
                base_id = run["parent_run_id"] if run["kind"] == "experiment" else run["id"]
                group = groups.get(("baseline", base_id))
                if group is None:
                    base = run if base_id == run["id"] else store.runs.require(base_id)
                    group = groups[("baseline", base_id)] = [_rows_for(store, base, "vanilla", metric)]
                if run["kind"] == "experiment":
                    group.append(_rows_for(store, run, "pruned", metric))
            elif run["kind"] == "experiment":
                groups[("run", run["id"])] = [_rows_for(store, run, "pruned", metric)]
            else:
                rows = [_rows_for(store, run, variant, metric) for variant in ("vanilla", "pruned")]
                groups[("run", run["id"])] = [r for r in rows if r.values]
        tables[key] = [row for group in groups.values() for row in group]
    seen: set[str] = set()
    for run in runs:
        for r in store.results.task_results(run["id"]):
            seen.add(r["task"])
        if run["parent_run_id"]:
            seen.update(r["task"] for r in store.results.task_results(run["parent_run_id"]))
    tasks = [t for t in STUDY_TASKS if t in seen] or list(STUDY_TASKS)
    for key in ("accuracy", "energy"):
        for row in tables[key]:
            row.avg = _avg(row.values, tasks)
        # each pruned row against the vanilla row just before it: its group's baseline
        last_vanilla: Row | None = None
        for row in tables[key]:
            if row.variant == "vanilla":
                last_vanilla = row
            elif last_vanilla is not None:
                row.baseline_run_id = last_vanilla.run_id
    tables["tasks"] = tasks
    set_ratios(store, tables)
    return tables


def set_ratios(store: Store, tables: dict[str, Any]) -> None:
    """Every pruned row's ratio, with its interval, against the vanilla row shown before it
    (``baseline_run_id``): ``backend.results.ratios`` for the whole table in two queries."""
    wanted = {(r.run_id, r.variant, r.baseline_run_id) for key in ("accuracy", "energy") for r in tables[key]
              if r.variant != "vanilla" and r.baseline_run_id is not None}
    got = batch_ratios(store, sorted(wanted, key=lambda w: (w[0], w[1], w[2] or 0))) if wanted else {}
    for key in ("accuracy", "energy"):
        for r in tables[key]:
            if r.variant == "vanilla" or r.baseline_run_id is None:
                r.ratio = None
                continue
            acc, energy = got[(r.run_id, r.variant)]
            r.ratio = acc if key == "accuracy" else energy.average
            if key == "energy":
                r.design = energy.design


# ------------------------------------------------------------------------------------- formats

def _fmt(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def model_cell(r: Any) -> str:
    """The model as a table shows it; a paper's figures are marked as such."""
    return f"{r.model} (reference)" if r.kind == "reference" else r.model


#: the columns every study table starts with: which model, which run, how it was pruned
ROW_HEADER = ["Model", "Run", "Method", "Prune ratio"]
ROW_ALIGN = "lrlr"


def row_cells(r: Any) -> list[str]:
    """The leading cells of a row (``ROW_HEADER``): rows of one model are told apart by run and method."""
    return [model_cell(r), str(r.run_id), r.method, r.prune_ratio]


def ratio_cell(r: Row) -> str:
    """Pruned Avg / vanilla Avg with its interval (``0.912 ±0.028``, ``≈1 (inconclusive: …)``,
    ``0.912 (n=1)``), or "—" for a vanilla row or a missing figure."""
    return "—" if r.ratio is None else r.ratio.text(3)


#: what the Ratio column means, under each table of every format
RATIO_NOTES = {
    "accuracy": f"Ratio = pruned Avg / vanilla Avg over the tasks both rows hold, ± the larger half of its 95 % "
                f"interval ({METHOD_ACC}); '≈1 (inconclusive)': the interval holds 1.",
    "energy": f"Ratio ± the larger half of its 95 % interval — {METHOD_PAIRED} (the run measured its own vanilla "
              f"beside the pruned model), or {METHOD_UNPAIRED} (against the baseline row); '(n=1)': one pass, "
              "no interval; '≈1 (inconclusive)': the interval holds 1.",
}


def study_table(tables: dict[str, Any], key: str) -> Table:
    """Table 1 (``key="accuracy"``) or Table 2 (``"energy"``) as plain text cells."""
    tasks = tables["tasks"]
    title, digits = {"accuracy": ("Table 1 — accuracy (acc)", 3),
                     "energy": ("Table 2 — energy per task (Wh)", 4)}[key]
    rows = [[*row_cells(r), *[_fmt(r.values.get(t), digits) for t in tasks], _fmt(r.avg, digits), ratio_cell(r)]
            for r in tables[key]]
    table = Table(title=title, header=[*ROW_HEADER, *[SHORT.get(t, t) for t in tasks], "Avg", "Ratio (95 % CI)"],
                  rows=rows, align=ROW_ALIGN + "r" * (len(tasks) + 2))
    table.notes_after = [RATIO_NOTES[key]]
    if key == "energy":
        meters = sorted({m for r in tables[key] for m in r.meters.values() if m})
        designs = sorted({f"run {r.run_id} {r.design}" for r in tables[key] if r.ratio is not None and r.design})
        if designs:
            table.notes_after.append("Energy design: " + ", ".join(designs) + ".")
        table.notes_after.append("Meters: " + (", ".join(meters) if meters else "none recorded") +
                                 ". '—' = not measured (never zero).")
    return table


def to_markdown(tables: dict[str, Any]) -> str:
    return "\n".join(markdown_table(study_table(tables, key)) for key in ("accuracy", "energy"))


def to_latex(tables: dict[str, Any]) -> str:
    return "\n".join(latex_table(study_table(tables, key)) for key in ("accuracy", "energy"))


def to_json(store: Store, tables: dict[str, Any]) -> str:
    run_ids = sorted({r.run_id for r in tables["accuracy"]})
    runs = []
    for i in run_ids:
        run = store.runs.require(i)
        runs.append({"run": run, "results": store.results.task_results(i), "metrics": store.results.metrics(i)})
    def row(r: Row) -> dict[str, Any]:
        return dict(asdict(r), ratio=as_dict(r.ratio))  # value, lo, hi, n, method, inconclusive, text

    doc = {"tasks": tables["tasks"],
           "ratio_methods": {"accuracy": METHOD_ACC, "energy_paired": METHOD_PAIRED, "energy_unpaired": METHOD_UNPAIRED},
           "accuracy": [row(r) for r in tables["accuracy"]],
           "energy_wh": [row(r) for r in tables["energy"]],
           "runs": runs}
    return json.dumps(doc, indent=2, default=str)


def to_csv(store: Store, tables: dict[str, Any], sec: dict[str, Any] | None = None) -> str:
    """Long format: one line per (run, variant, task) with stderr, meters, the energy columns of
    ``backend.results.report_energy`` and the run's config; then Table 3's lines (``record`` = efficiency)."""
    from backend.results import report_energy as re_

    cols = ["model", "run_id", "variant", "task", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
            "n_samples", "seconds", "tokens", "energy_wh", "energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh",
            "nvml_joules", "meter", "cpu_mode", "device", "method", "prune_ratio", *re_.CSV_EXTRA, "record",
            "batch_size", "seq_len", "vanilla_tokens_per_s", "pruned_tokens_per_s", "speed_ratio",
            "vanilla_j_per_token", "pruned_j_per_token", "energy_ratio", "param_ratio", "flop_ratio",
            *RATIO_COLUMNS, "config"]
    records: list[dict[str, Any]] = []
    for row in tables["accuracy"]:
        run = store.runs.require(row.run_id)
        for r in store.results.task_results(row.run_id, row.variant):
            extra = re_.csv_extra(sec, row.run_id, row.variant, r["task"]) if sec else {}
            records.append({**r, "record": "task", "model": row.model, "run_id": row.run_id,
                            "method": row.method,
                            "prune_ratio": None if row.prune_ratio == "—" else run["config"].get("prune_ratio"),
                            "energy_wh": None if r["energy_kwh"] is None else r["energy_kwh"] * 1000,
                            **extra, "config": json.dumps(run["config"], sort_keys=True)})
    records += ratio_records(tables)
    records += re_.csv_efficiency_lines(sec) if sec else []
    return csv_text(cols, records)


#: the CSV's ``record = ratio`` lines: one per pruned row and metric, the interval's fields spelled out
RATIO_COLUMNS = ["ratio_metric", "ratio", "ratio_lo", "ratio_hi", "ratio_n", "ratio_method", "ratio_design",
                 "ratio_text", "vs_run_id"]


def ratio_records(tables: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ratio column of Tables 1 and 2 as CSV lines (``record = ratio``)."""
    out = []
    for key, metric in (("accuracy", "acc"), ("energy", "energy_wh")):
        for r in tables[key]:
            if r.ratio is None:
                continue
            out.append({"record": "ratio", "model": r.model, "run_id": r.run_id, "variant": r.variant,
                        "kind": r.kind, "reference": r.kind == "reference",
                        "method": r.method, "ratio_metric": metric, "ratio": r.ratio.value, "ratio_lo": r.ratio.lo,
                        "ratio_hi": r.ratio.hi, "ratio_n": r.ratio.n, "ratio_method": r.ratio.method or r.ratio.note,
                        "ratio_design": r.design or None, "ratio_text": r.ratio.text(), "vs_run_id": r.baseline_run_id})
    return out


def comparison_markdown(store: Store, run_ids: list[int]) -> str:
    return to_markdown(study_tables(store, run_ids))


def render(store: Store, fmt: str, run_ids: list[int] | None = None) -> str:
    """Tables 1 and 2 plus the energy sections of ``backend.results.report_energy`` (spread, above idle,
    J/token, J per correct answer, Table 3, quality badges, reference checks) in every format."""
    from backend.results import report_energy as re_

    tables = study_tables(store, run_ids)
    sec = re_.energy_sections(store, tables)
    if fmt == "md":
        return to_markdown(tables) + "\n" + re_.markdown(sec, tables["tasks"], SHORT)
    if fmt == "latex":
        return to_latex(tables) + "\n" + re_.latex(sec, tables["tasks"], SHORT)
    if fmt == "json":
        doc = json.loads(to_json(store, tables))
        doc.update(re_.to_jsonable(sec))
        return json.dumps(doc, indent=2, default=str)
    if fmt == "csv":
        return to_csv(store, tables, sec)
    raise ValueError(fmt)
