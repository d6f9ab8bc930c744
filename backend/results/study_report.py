"""The study's answer as text: ``study show`` (Markdown on stdout) and ``study report --out DIR``.

The report is the paper's results section for the study: the answer per model, Table 1 (accuracy)
and Table 2 (Wh per task) with every ratio's interval, the distance of each cell from the optimal one,
the amortised accounting, the crossover batch sizes, the Pareto front, the figures (SVG and PNG,
``backend.results.study_figures``), the measurement quality of every run and its provenance. Where
the workspace holds an imported reference table (``greentui import --table``) for a study model,
the paper's rows are set beside the reproduction. The tables are written through the one table
writer (``backend.results.tables``: Markdown, LaTeX booktabs and CSV, each with its escaping).

Files ``write_report`` writes::

    DIR/report.md                         the page (figures linked as figures/*.svg)
    DIR/figures/<name>.svg, .png          radar per model, bars, Pareto (Wh and J/token)
    DIR/tables/table1-accuracy.csv, .tex  per model: vanilla and each cell, tasks, Avg, Ratio [95 % CI]
    DIR/tables/table2-energy.csv, .tex
    DIR/tables/answer.csv, .tex           per cell: floor, distance from the optimal, cost, break-even
    DIR/answer.json                       ``study show --json``
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.results.study import Ratio, StudyAnswer, StudyRow, study_answer
from backend.results.tables import Table, csv_text, escape_markdown, latex_table, markdown_table
from backend.schema.tasks import task_label
from backend.store import Store


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _g(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _ratio(r: Ratio | None) -> str:
    return "—" if r is None else r.text()


def _cell_name(r: StudyRow) -> str:
    return "vanilla" if r.variant == "vanilla" else f"{r.cell}: {r.label}"


# ------------------------------------------------------------------------------------ tables

def study_tables(ans: StudyAnswer, references: dict[str, list[StudyRow]] | None = None) -> list[Table]:
    """Table 1 and Table 2 (per model: the paper's rows when imported, vanilla, each cell)."""
    out = []
    for metric, title, digits in (("acc", "Table 1 — accuracy per task", 3), ("wh", "Table 2 — energy per task (Wh)", 4)):
        header = ["Model", "Cell", "Run", *[task_label(t) for t in ans.tasks], "Avg", "Ratio (95 % CI)"]
        rows = []
        for m in ans.models:
            for ref in (references or {}).get(m.model_ref, []):
                vals = getattr(ref, metric)
                if any(v is not None for v in vals.values()):
                    rows.append([m.model, f"paper: {ref.label}", f"ref {ref.run_id}",
                                 *[_f(vals.get(t), digits) for t in ans.tasks],
                                 _f(ref.avg_acc if metric == "acc" else ref.avg_wh, digits),
                                 _ratio(ref.acc_ratio if metric == "acc" else ref.wh_ratio)])
            for r in (*m.vanilla, *m.cells):
                vals = getattr(r, metric)
                rows.append([m.model, _cell_name(r), str(r.run_id or "—"),
                             *[_f(vals.get(t), digits) for t in ans.tasks],
                             _f(r.avg_acc if metric == "acc" else r.avg_wh, digits),
                             "" if r.variant == "vanilla" else _ratio(r.acc_ratio if metric == "acc" else r.wh_ratio)])
        note = ("Ratio = pruned Avg / vanilla Avg over the tasks both rows hold, ± the larger half of its 95 % "
                "interval " + ("(lm-eval's standard errors, delta method on the log ratio)." if metric == "acc" else
                               "(paired: t on the mean log-ratio over the run's own vanilla/pruned pairs; "
                               "unpaired: delta method on the log of the ratio of means over each task's "
                               "repeats; 'n=1' = one pass, no interval).") +
                " '≈1 (inconclusive)': the interval holds 1.")
        out.append(Table(title, header, rows, align="lll" + "r" * (len(ans.tasks) + 2), note=note))
    return out


def answer_table(ans: StudyAnswer) -> Table:
    """Per cell: floor, distance from the optimal, amortised cost, break-even, crossover, Pareto."""
    header = ["Model", "Cell", "Avg acc", "Short of floor", "Avg Wh", "× optimal Wh", "J/token ratio",
              "Pruning + LoRA", "Pays back after", "Crossover batch", "Pareto"]
    rows = []
    for m in ans.models:
        for r in m.cells:
            if r.status != "done":
                rows.append([m.model, _cell_name(r), r.status, "", "", "", "", "", "", "", ""])
                continue
            qual = "qualifies" if r.qualifies else _f(r.floor_gap)
            if r.cell == m.optimal:
                qual = "optimal"
            cost = r.cost
            pays = "—"
            if cost is not None and cost.cost_wh is not None:
                pays = (f"{_count(cost.break_even_tokens)} tokens" if cost.break_even_tokens is not None else "never")
            front = ", ".join(n for n, on in (("Wh", (m.model, r.cell) in ans.pareto_wh),
                                              ("J/token", (m.model, r.cell) in ans.pareto_jpt)) if on) or "—"
            rows.append([m.model, _cell_name(r), _f(r.avg_acc), qual, _g(r.avg_wh), _f(r.vs_optimal),
                         _ratio(r.jpt_ratio), "—" if cost is None or cost.cost_wh is None else f"{cost.cost_wh:.4g} Wh",
                         pays, _crossover(r), front])
    return Table("The answer per cell", header, rows, align="ll" + "r" * 9,
                 note=f"Floor: {ans.accuracy_floor:.0%} of the vanilla average accuracy. 'Short of floor' is the "
                      "accuracy a cell lacks; × optimal Wh is its average Wh over the optimal cell's.")


def _count(x: float | None) -> str:
    from backend.results.study import _count as count
    return "—" if x is None else count(x)


def _crossover(r: StudyRow) -> str:
    c = r.crossover
    if c is None or not c.batches:
        return "—"
    return "never" if c.batch is None else str(c.batch)


# ------------------------------------------------------------------------------------ markdown

def answer_markdown(ans: StudyAnswer, references: dict[str, list[StudyRow]] | None = None,
                    figures: dict[str, list[Path]] | None = None, extra: list[str] | None = None) -> str:
    """The answer as Markdown: what ``study show`` prints and the heart of ``report.md``."""
    parts = [f"# Study {escape_markdown(ans.name)}", "",
             f"{ans.cells_done} of {ans.cells_total} cells done. Accuracy floor: {ans.accuracy_floor:.0%} of "
             "each model's vanilla average accuracy.", "", "## The answer", ""]
    for m in ans.models:
        parts.append(f"- **{escape_markdown(m.model)}**: {escape_markdown(m.verdict)}")
    parts.append("")
    for m in ans.models:
        for r in m.cells:
            if r.cost is not None or r.crossover is not None:
                break
        else:
            continue
        parts.append(f"**{escape_markdown(m.model)}** — amortised cost and crossover:")
        parts.append("")
        for r in m.cells:
            bits = []
            if r.cost is not None:
                bits.append(r.cost.text())
            if r.crossover is not None:
                bits.append(r.crossover.text())
            if bits:
                parts.append(f"- cell {escape_markdown(_cell_name(r))}: {escape_markdown('; '.join(bits))}")
        parts.append("")
    front = {"accuracy vs Wh": ans.pareto_wh, "accuracy vs J/token": ans.pareto_jpt}
    for what, pts in front.items():
        if pts:
            names = ", ".join(f"{m} {'vanilla' if c is None else f'cell {c}'}" for m, c in pts)
            parts.append(f"Pareto front ({what}; dominated only beyond noise): {escape_markdown(names)}")
    parts.append("")
    for name, files in (figures or {}).items():
        svg = next((f for f in files if f.suffix == ".svg"), None)
        if svg is not None:
            parts += [f"![{escape_markdown(name)}](figures/{svg.name})", ""]
    for t in study_tables(ans, references):
        parts.append(markdown_table(t))
    parts.append(markdown_table(answer_table(ans)))
    parts.extend(extra or [])
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ references

def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).rsplit("/", 1)[-1].lower())


def reference_rows(store: Store, ans: StudyAnswer) -> dict[str, list[StudyRow]]:
    """The imported published tables' rows (``kind = reference``) of each study model, vanilla and
    pruned with their ratios. A row matches a model by name, case and punctuation aside: the paper's
    name of one of the study's seven (``Mistral-7.2B`` is ``mistralai/Mistral-7B-v0.3``, from
    ``schema.study_models``), or the last part of the model's HF id or folder (``import --table
    --rename`` maps any other spelling)."""
    from backend.results.study import _pair, _row
    from backend.schema.study_models import study_model
    wanted = {_norm(m.model_ref): m for m in ans.models}
    wanted.update({_norm(m.model): m for m in ans.models})
    out: dict[str, list[StudyRow]] = {}
    for r in store.runs.list(limit=100_000, descending=False):
        if r["kind"] != "reference":
            continue
        name = r.get("model_name") or ""
        known = study_model(name)
        m = wanted.get(_norm(known.hf_id if known else name))
        if m is None:
            continue
        run = store.runs.get(r["id"])
        v = _row(store, run, "vanilla", model=m.model, model_ref=m.model_ref, label="vanilla", cell=None,
                 status="reference")
        p = _row(store, run, "pruned", model=m.model, model_ref=m.model_ref, label="pruned", cell=None,
                 status="reference")
        rows = [x for x in (v, p) if x.acc or x.wh]
        if v.acc and p.acc:
            _pair(p, v)
        out.setdefault(m.model_ref, []).extend(rows)
    return out


# ------------------------------------------------------------------------------------ the report

def _quality_and_provenance(store: Store, ans: StudyAnswer) -> list[str]:
    from backend.measure.machine import library_versions
    from backend.measure.trust import quality_badge
    lines = ["## Measurement quality", ""]
    run_ids = [r.run_id for r in ans.rows if r.run_id and r.status == "done"]
    for rid in dict.fromkeys(run_ids):
        lines.append(f"- run {rid}: {escape_markdown(quality_badge(store, rid).label())}")
    lines += ["", "## Provenance", ""]
    study = store.studies.require(ans.name)
    for rid in dict.fromkeys(run_ids):
        results = store.results.task_results(rid)
        prov = {}
        if results and results[0].get("provenance"):
            p = results[0]["provenance"]
            prov = json.loads(p) if isinstance(p, str) else p
        run = store.runs.get(rid) or {}
        where = ", ".join(str(x) for x in (prov.get("device_name") or run.get("device"), prov.get("model")) if x)
        lines.append(f"- run {rid}: {escape_markdown(where or '—')}; versions "
                     f"{escape_markdown(json.dumps(prov.get('versions') or {}, sort_keys=True))}")
    lines += ["", f"Written by greentui with {escape_markdown(json.dumps(library_versions(), sort_keys=True))}.",
              "", "The study file:", "", "```toml", study["text"].replace("```", "ʼʼʼ").rstrip(), "```", ""]
    return lines


def _csv(table: Table) -> str:
    cols = list(table.header)
    return csv_text(cols, [dict(zip(cols, row)) for row in table.rows])


def check_report_dir(out: Path, workspace: Path, *, force: bool = False) -> Path:
    """The folder a report may be written into, or a one-line GreentuiError: never the workspace itself
    or a run folder (their files are the runs' record), nor a folder holding other files than an
    earlier report's unless ``force``."""
    from backend.results.export_file import check_export_target
    target = Path(out).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise GreentuiError(f"--out {out}: is a file; give a folder")
    if target == Path(workspace).resolve():
        raise GreentuiError(f"--out {out}: is the workspace; write the report into a folder of its own")
    check_export_target(target / "report.md", workspace, force=True)  # a store, a run folder: refused
    if target.is_dir() and any(target.iterdir()) and not (target / "report.md").exists() and not force:
        raise GreentuiError(f"--out {out}: holds other files (no report.md); pass --force to write into it")
    return target


def write_report(store: Store, name: str, out: Path, accuracy_floor: float | None = None, *,
                 force: bool = False) -> list[Path]:
    """Write the report's files into ``out`` (see the module docstring); the paths written. Every
    file is written whole or not at all (``export_file.write_export``)."""
    from backend.results.export_file import write_export
    from backend.results.study_figures import write_figures
    ans = study_answer(store, name, accuracy_floor)
    if not any(r.acc for r in ans.rows):
        raise GreentuiError(f"study {name} has no finished results yet (greentui study status {name})")
    out = check_report_dir(Path(out), store.path.parent, force=force)
    try:
        (out / "tables").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create {out}: {exc.strerror or exc}") from exc
    written: list[Path] = []
    figures = write_figures(out / "figures", ans)
    for files in figures.values():
        written += files
    refs = reference_rows(store, ans)
    t1, t2 = study_tables(ans, refs)
    for stem, table in (("table1-accuracy", t1), ("table2-energy", t2), ("answer", answer_table(ans))):
        for suffix, text in ((".csv", _csv(table)), (".tex", latex_table(table))):
            path = out / "tables" / f"{stem}{suffix}"
            write_export(path, text)
            written.append(path)
    path = out / "answer.json"
    write_export(path, json.dumps(ans.to_dict(), indent=2, default=str) + "\n")
    written.append(path)
    page = answer_markdown(ans, refs, figures, extra=_quality_and_provenance(store, ans))
    path = out / "report.md"
    write_export(path, page + "\n")
    written.append(path)
    return written


__all__: list[Any] = ["answer_markdown", "answer_table", "reference_rows", "study_tables", "write_report"]
