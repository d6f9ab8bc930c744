"""The study's two tables from the store: Table 1 (accuracy) and Table 2 (energy, Wh).

For each experiment: a vanilla row (its baseline's results) and a pruned row, the seven task columns,
Avg, and Ratio = pruned Avg / vanilla Avg. Averages are over the tasks a row holds; the ratio is over
the tasks both rows hold, so a missing task never skews it. A missing figure is shown as missing,
never as zero. Pure Python (the TUI's Compare screen uses it too).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

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
    ratio: float | None = None
    kind: str = "experiment"        # "reference" rows are a paper's printed figures, not measurements


def _avg(values: dict[str, float | None], tasks: list[str]) -> float | None:
    vals = [values[t] for t in tasks if values.get(t) is not None]
    return mean(vals) if vals else None


def _ratio(pruned: dict[str, float | None], vanilla: dict[str, float | None]) -> float | None:
    common = [t for t in pruned if pruned.get(t) is not None and vanilla.get(t) is not None]
    if not common:
        return None
    v = mean(vanilla[t] for t in common)
    return mean(pruned[t] for t in common) / v if v else None


def _rows_for(store: Store, run: dict[str, Any], variant: str, metric: str) -> Row:
    results = {r["task"]: r for r in store.results.task_results(run["id"], variant)}
    if metric == "acc":
        values = {t: results[t]["acc"] for t in results}
        stderr = {t: results[t]["acc_stderr"] for t in results}
    else:
        values = {t: None if results[t]["energy_kwh"] is None else results[t]["energy_kwh"] * 1000
                  for t in results}
        stderr = {}
    meters = {t: results[t]["meter"] for t in results}
    name = run.get("model_name") or run.get("model_ref") or "?"
    return Row(model=name, run_id=run["id"], variant=variant, values=values, stderr=stderr, meters=meters,
               kind=run.get("kind") or "experiment")


def study_tables(store: Store, run_ids: list[int] | None = None) -> dict[str, Any]:
    """{"tasks": [...], "accuracy": [Row...], "energy": [Row...]} for the given or all finished runs."""
    if run_ids:
        runs = [store.runs.require(i) for i in run_ids]
    else:
        runs = [store.runs.get(r["id"]) for r in store.runs.list(limit=100_000, descending=False)
                if r["status"] == "done" and r["kind"] in ("experiment", "import", "reference")]
    tables: dict[str, Any] = {"accuracy": [], "energy": []}
    seen: set[str] = set()
    for run in runs:
        for metric, key in (("acc", "accuracy"), ("wh", "energy")):
            pair: list[Row] = []
            if run["kind"] == "experiment":
                if run["parent_run_id"]:
                    pair.append(_rows_for(store, store.runs.require(run["parent_run_id"]), "vanilla", metric))
                pair.append(_rows_for(store, run, "pruned", metric))
            else:
                for variant in ("vanilla", "pruned"):
                    row = _rows_for(store, run, variant, metric)
                    if row.values:
                        pair.append(row)
            tables[key].extend(pair)
        for r in store.results.task_results(run["id"]):
            seen.add(r["task"])
        if run["parent_run_id"]:
            seen.update(r["task"] for r in store.results.task_results(run["parent_run_id"]))
    tasks = [t for t in STUDY_TASKS if t in seen] or list(STUDY_TASKS)
    for key in ("accuracy", "energy"):
        for row in tables[key]:
            row.avg = _avg(row.values, tasks)
        # pair each pruned row with the vanilla row just before it (its baseline)
        last_vanilla: Row | None = None
        for row in tables[key]:
            if row.variant == "vanilla":
                last_vanilla = row
            elif last_vanilla is not None:
                row.ratio = _ratio(row.values, last_vanilla.values)
    tables["tasks"] = tasks
    return tables


# ------------------------------------------------------------------------------------- formats

def _fmt(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _model_cell(r: Row) -> str:
    return f"{r.model} (reference)" if r.kind == "reference" else r.model


def _table_lines(rows: list[Row], tasks: list[str], digits: int, sep: str = " | ") -> list[list[str]]:
    out = []
    for r in rows:
        out.append([_model_cell(r), str(r.run_id), r.variant, *[_fmt(r.values.get(t), digits) for t in tasks],
                    _fmt(r.avg, digits), _fmt(r.ratio, 3)])
    return out


def to_markdown(tables: dict[str, Any]) -> str:
    tasks = tables["tasks"]
    head = ["Model", "Run", "Variant", *[SHORT.get(t, t) for t in tasks], "Avg", "Ratio"]
    parts = []
    for key, title, digits in (("accuracy", "Table 1 — accuracy (acc)", 3),
                               ("energy", "Table 2 — energy per task (Wh)", 4)):
        parts.append(f"### {title}\n")
        parts.append("| " + " | ".join(head) + " |")
        parts.append("|" + "|".join("---" for _ in head) + "|")
        for line in _table_lines(tables[key], tasks, digits):
            parts.append("| " + " | ".join(line) + " |")
        meters = sorted({m for r in tables[key] for m in r.meters.values() if m})
        if key == "energy":
            parts.append("\nMeters: " + (", ".join(meters) if meters else "none recorded") +
                         ". '—' = not measured (never zero).")
        parts.append("")
    return "\n".join(parts)


def to_latex(tables: dict[str, Any]) -> str:
    tasks = tables["tasks"]
    cols = "ll" + "r" * (len(tasks) + 2)
    parts = []
    for key, caption, digits in (("accuracy", "Accuracy per task", 3), ("energy", "Energy per task (Wh)", 4)):
        parts += [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\begin{{tabular}}{{{cols}}}",
                  r"\toprule",
                  " & ".join(["Model", "Variant", *[SHORT.get(t, t) for t in tasks], "Avg", "Ratio"]) + r" \\",
                  r"\midrule"]
        for r in tables[key]:
            cells = [_model_cell(r).replace("_", r"\_"), r.variant, *[_fmt(r.values.get(t), digits) for t in tasks],
                     _fmt(r.avg, digits), _fmt(r.ratio, 3)]
            parts.append(" & ".join(cells) + r" \\")
        parts += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(parts)


def to_json(store: Store, tables: dict[str, Any]) -> str:
    run_ids = sorted({r.run_id for r in tables["accuracy"]})
    runs = []
    for i in run_ids:
        run = store.runs.require(i)
        runs.append({"run": run, "results": store.results.task_results(i), "metrics": store.results.metrics(i)})
    doc = {"tasks": tables["tasks"],
           "accuracy": [asdict(r) for r in tables["accuracy"]],
           "energy_wh": [asdict(r) for r in tables["energy"]],
           "runs": runs}
    return json.dumps(doc, indent=2, default=str)


def to_csv(store: Store, tables: dict[str, Any], sec: dict[str, Any] | None = None) -> str:
    """Long format: one line per (run, variant, task) with stderr, meters, the energy columns of
    ``backend.results.report_energy`` and the run's config; then Table 3's lines (``record`` = efficiency)."""
    from backend.results import report_energy as re_

    buf = io.StringIO()
    cols = ["model", "run_id", "variant", "task", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
            "n_samples", "seconds", "tokens", "energy_wh", "energy_cpu_kwh", "energy_gpu_kwh",
            "energy_ram_kwh", "nvml_joules", "meter", "cpu_mode", "device", *re_.CSV_EXTRA, "record",
            "batch_size", "seq_len", "vanilla_tokens_per_s", "pruned_tokens_per_s", "speed_ratio",
            "vanilla_j_per_token", "pruned_j_per_token", "energy_ratio", "param_ratio", "flop_ratio", "config"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for row in tables["accuracy"]:
        run = store.runs.require(row.run_id)
        for r in store.results.task_results(row.run_id, row.variant):
            extra = re_.csv_extra(sec, row.run_id, row.variant, r["task"]) if sec else {}
            w.writerow({**{k: r.get(k) for k in cols if k in r}, "record": "task", "model": row.model,
                        "run_id": row.run_id,
                        "energy_wh": None if r["energy_kwh"] is None else r["energy_kwh"] * 1000,
                        **extra, "config": json.dumps(run["config"], sort_keys=True)})
    for line in re_.csv_efficiency_lines(sec) if sec else []:
        w.writerow(line)
    return buf.getvalue()


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
