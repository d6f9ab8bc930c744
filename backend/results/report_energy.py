"""The energy sections of every export: spread, per-token and per-correct-answer figures, energy
above idle, Table 3 (the efficiency stage), the quality badge of each run, and the checks of
published reference tables.

Kept apart from ``backend.results.report`` (Tables 1 and 2) so each stays one job; ``report.render`` appends
these sections to every format, so md, LaTeX, CSV and JSON always carry the same figures. All figures
come from ``backend.measure.trust`` (the same code as ``show`` and the TUI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.measure.trust import Badge, TaskEnergy, averages, energy_noise, quality_badge, task_energy
from backend.results.reference_tables import checks_of
from backend.results.tables import Table, latex_comment, latex_table, markdown_lines, markdown_table
from backend.store import Store


@dataclass
class EnergyRow:
    """One (run, variant) line of the derived energy tables."""

    model: str
    run_id: int
    variant: str
    kind: str
    per_task: dict[str, TaskEnergy]
    avg: dict[str, float | None]
    method: str = ""
    prune_ratio: str = "—"


def energy_sections(store: Store, tables: dict[str, Any]) -> dict[str, Any]:
    """Everything the energy sections print, computed once from the rows of ``study_tables``."""
    rows: list[EnergyRow] = []
    for r in tables["energy"]:
        run = store.runs.require(r.run_id)
        per = task_energy(store, r.run_id, r.variant)
        rows.append(EnergyRow(r.model, r.run_id, r.variant, run["kind"], per, averages(per), r.method,
                              r.prune_ratio))
    noise = []
    last_vanilla: EnergyRow | None = None
    for er in rows:
        if er.kind == "reference":  # published figures: no passes, no noise band
            continue
        if er.variant == "vanilla":
            last_vanilla = er
        elif last_vanilla is not None:
            for n in energy_noise(er.per_task, last_vanilla.per_task):
                noise.append(dict(n, run_id=er.run_id, vs_run=last_vanilla.run_id))
    run_ids = list(dict.fromkeys(r.run_id for r in rows))
    badges: dict[int, Badge] = {}
    efficiency: dict[int, list[dict[str, Any]]] = {}
    checks: dict[int, list[Any]] = {}
    for i in run_ids:
        run = store.runs.require(i)
        if run["kind"] == "reference":
            checks[i] = checks_of(run)
            continue
        badges[i] = quality_badge(store, i)
        points = store.results.efficiency(i)
        if points:
            efficiency[i] = efficiency_table(points, run)
    return {"rows": rows, "noise": noise, "badges": badges, "efficiency": efficiency, "checks": checks}


def efficiency_table(points: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 3 lines of one run: per batch size, vanilla and pruned side by side with the ratios
    (pruned / vanilla) of tokens/s and J/token beside the parameter and FLOP ratios."""
    by = {(p["variant"], p["batch_size"]): p for p in points}
    out = []
    for b in sorted({p["batch_size"] for p in points}):
        v, p = by.get(("vanilla", b)), by.get(("pruned", b))
        seen = v or p
        if seen is None:  # only a variant of neither kind measured this batch size: no line of this table
            continue
        line: dict[str, Any] = {"batch_size": b, "seq_len": seen["seq_len"]}
        for name, pt in (("vanilla", v), ("pruned", p)):
            line[f"{name}_tokens_per_s"] = pt["tokens_per_s"] if pt else None
            line[f"{name}_j_per_token"] = pt["j_per_token"] if pt else None
            line[f"{name}_meter"] = pt["meter"] if pt else None
        line["speed_ratio"] = _ratio(line["pruned_tokens_per_s"], line["vanilla_tokens_per_s"])
        line["energy_ratio"] = _ratio(line["pruned_j_per_token"], line["vanilla_j_per_token"])
        dv, dp = (v or {}).get("detail", {}), (p or {}).get("detail", {})
        line["param_ratio"] = _ratio(dp.get("params"), dv.get("params"))
        line["flop_ratio"] = _ratio(dp.get("flops_per_token"), dv.get("flops_per_token"))
        out.append(line)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _f(x: float | None, fmt: str = ".4g") -> str:
    return "—" if x is None else format(x, fmt)


def _one(x: float | None) -> str:
    """A ratio of two single measurements: it says it has no interval."""
    return "—" if x is None else f"{x:.3f} (n=1)"


def _wh_cell(te: TaskEnergy | None) -> str:
    if te is None or te.wh is None:
        return "—"
    if te.wh_spread is not None and te.wh_spread.ci95 is not None:
        return f"{te.wh:.4f} ± {te.wh_spread.ci95:.4f}"
    return f"{te.wh:.4f}"


# ------------------------------------------------------------------------- Markdown and LaTeX
# Both formats print the same Table objects through ``backend.results.tables`` (one escape function
# per format); only the prose around them differs.

def _tables(sec: dict[str, Any], tasks: list[str], short: dict[str, str]) -> list[Table]:
    from backend.results.report import ROW_ALIGN, ROW_HEADER, row_cells

    header = [*ROW_HEADER, *[short.get(t, t) for t in tasks], "Avg"]
    align = ROW_ALIGN + "r" * (len(tasks) + 1)
    specs = [
        ("Table 2a — energy per task, mean ± 95 % CI over repeats (Wh)",
         "Mean of the measured passes ± the t-distribution 95 % half-width (n ≥ 2); a bare value is one pass.",
         _wh_cell, "wh"),
        ("Table 2b — energy above idle per task (Wh)",
         "Total minus idle power × duration (idle sampled before the run, same meter family); the total is Table 2.",
         lambda te: _f(te.above_idle_wh if te else None), "above_idle_wh"),
        ("Table 2c — energy per token (J/token)",
         "Total energy / input tokens processed (lm-eval forwards, no padding).",
         lambda te: _f(te.j_per_token if te else None), "j_per_token"),
        ("Table 2d — energy per correct answer (J)", "Total energy / (acc × items).",
         lambda te: _f(te.j_per_correct if te else None), "j_per_correct"),
    ]
    out = [Table(title=title, note=note, header=header, align=align,
                 rows=[[*row_cells(er), *[cell(er.per_task.get(t)) for t in tasks], _f(er.avg.get(key))]
                       for er in sec["rows"]])
           for title, note, cell, key in specs]
    if sec["efficiency"]:
        out.append(Table(
            title="Table 3 — efficiency: forward throughput and J/token by batch size",
            note="Same shipped text for both variants; ratios are pruned / vanilla: speed and energy from one "
                 "measurement per batch size (n=1: no interval), parameters and FLOPs counted (exact).",
            header=["Run", "Batch", "Seq", "tok/s vanilla", "tok/s pruned", "speed ×", "J/tok vanilla",
                    "J/tok pruned", "energy ×", "params × (exact)", "FLOPs × (exact)"],
            align="r" * 11,
            rows=[[str(rid), str(ln["batch_size"]), str(ln["seq_len"]), _f(ln["vanilla_tokens_per_s"], ".0f"),
                   _f(ln["pruned_tokens_per_s"], ".0f"), _one(ln["speed_ratio"]),
                   _f(ln["vanilla_j_per_token"]), _f(ln["pruned_j_per_token"]), _one(ln["energy_ratio"]),
                   _f(ln["param_ratio"], ".3f"), _f(ln["flop_ratio"], ".3f")]
                  for rid, lines in sec["efficiency"].items() for ln in lines]))
    return out


def _noise_lines(sec: dict[str, Any], short: dict[str, str]) -> list[str]:
    out = []
    for n in sec["noise"]:
        band = "—" if n["band_wh"] is None else f"±{n['band_wh']:.5f}"
        out.append(f"run {n['run_id']} vs {n['vs_run']} {short.get(n['task'], n['task'])}: "
                   f"ΔWh {n['delta_wh']:+.5f} {band} — {n['verdict']}")
    return out


def _badge_lines(sec: dict[str, Any]) -> list[str]:
    return [f"run {rid}: {b.label()}" for rid, b in sec["badges"].items()]


def _check_lines(sec: dict[str, Any], flag: str) -> list[str]:
    return [f"reference run {rid}: {'' if c.ok else flag}{c.message()}"
            for rid, cs in sec["checks"].items() for c in cs]


def markdown(sec: dict[str, Any], tasks: list[str], short: dict[str, str]) -> str:
    tables = _tables(sec, tasks, short)
    out = [markdown_table(t) for t in tables[:4]]
    if sec["noise"]:
        out.append(markdown_lines("Energy differences pruned − vanilla (|Δ| ≤ 2·√(se_p² + se_v²) ≈ 95 % is "
                                  "within noise):", _noise_lines(sec, short)))
    out += [markdown_table(t) for t in tables[4:]]
    if sec["badges"]:
        out.append(markdown_lines("Measurement quality:", _badge_lines(sec)))
    if sec["checks"]:
        out.append(markdown_lines("Published reference tables (printed Avg/Ratio recomputed from the cells):",
                                  _check_lines(sec, "⚠ ")))
    return "\n".join(out)


def latex(sec: dict[str, Any], tasks: list[str], short: dict[str, str]) -> str:
    parts = [latex_table(t) for t in _tables(sec, tasks, short)]
    parts += [latex_comment(f"quality {line}") for line in _badge_lines(sec)]
    parts += [latex_comment(line) for line in _check_lines(sec, "FLAG ")]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------- JSON / CSV

def to_jsonable(sec: dict[str, Any]) -> dict[str, Any]:
    def te(t: TaskEnergy) -> dict[str, Any]:
        return {"wh": t.wh, "wh_ci95": t.wh_spread.ci95 if t.wh_spread else None,
                "wh_cv": t.wh_spread.cv if t.wh_spread else None, "repeats": t.repeats,
                "seconds": t.seconds, "seconds_ci95": t.seconds_spread.ci95 if t.seconds_spread else None,
                "above_idle_wh": t.above_idle_wh, "j_per_token": t.j_per_token,
                "j_per_correct": t.j_per_correct, "tokens": t.tokens, "correct": t.correct, "meter": t.meter}

    return {
        "energy_detail": [{"model": er.model, "run_id": er.run_id, "variant": er.variant, "kind": er.kind,
                           "reference": er.kind == "reference", "tasks": {k: te(v) for k, v in er.per_task.items()},
                           "avg": er.avg} for er in sec["rows"]],
        "energy_noise": sec["noise"],
        "efficiency": {str(k): v for k, v in sec["efficiency"].items()},
        "quality": {str(k): b.to_dict() for k, b in sec["badges"].items()},
        "reference_checks": {str(k): [c.__dict__ for c in cs] for k, cs in sec["checks"].items()},
    }


CSV_EXTRA = ["kind", "reference", "repeats", "wh_ci95", "wh_cv", "above_idle_wh", "j_per_token",
             "j_per_correct", "quality", "reference_flags"]


def csv_extra(sec: dict[str, Any], run_id: int, variant: str, task: str) -> dict[str, Any]:
    """The energy columns of one long-format CSV line."""
    er = next((e for e in sec["rows"] if e.run_id == run_id and e.variant == variant), None)
    t = er.per_task.get(task) if er else None
    badge = sec["badges"].get(run_id)
    flags = [c.message() for c in sec["checks"].get(run_id, []) if not c.ok]
    return {"kind": er.kind if er else None, "reference": bool(er and er.kind == "reference"),
            "repeats": t.repeats if t else None,
            "wh_ci95": t.wh_spread.ci95 if t and t.wh_spread else None,
            "wh_cv": t.wh_spread.cv if t and t.wh_spread else None,
            "above_idle_wh": t.above_idle_wh if t else None, "j_per_token": t.j_per_token if t else None,
            "j_per_correct": t.j_per_correct if t else None, "quality": badge.label() if badge else None,
            "reference_flags": " | ".join(flags) or None}


def csv_efficiency_lines(sec: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 3 as CSV lines (record = "efficiency")."""
    out = []
    for rid, lines in sec["efficiency"].items():
        for ln in lines:
            out.append(dict(ln, record="efficiency", run_id=rid))
    return out
