"""One run's energy figures as a document and as text lines: ``show``/``show --json`` and the TUI's
Run detail use it, so they print the same numbers.

For each variant the run holds (and its baseline's vanilla): per task Wh as mean ± 95 % CI and CV
over the repeats, Wh above idle beside the total, J/token and J per correct answer, and their means
over tasks; the energy noise verdicts against the baseline; the efficiency points; the quality badge;
and, for a reference run, its published-table checks.
"""

from __future__ import annotations

from typing import Any

from backend.measure.stats import within_noise
from backend.measure.trust import Badge, TaskEnergy, averages, energy_noise, quality_badge, task_energy
from backend.results.ratios import as_dict, run_ratios
from backend.store import Store

#: what the UI may use of the meters' trust rules, through the results layer (the UI never imports
#: backend.measure: pyproject's import contract)
__all__ = ["Badge", "baselines_agree", "energy_lines", "quality_badge", "run_energy_doc"]


def baselines_agree(store: Store, a: int, b: int) -> bool:
    """Whether two vanilla runs' energy agrees within noise on every task both measured
    (``backend.measure.stats.within_noise``: each task needs ≥ 2 passes on both sides). Compare merges
    two baselines only then: one with other energy is another measurement, shown as such."""
    ea, eb = task_energy(store, a, "vanilla"), task_energy(store, b, "vanilla")
    common = [t for t in ea if t in eb and ea[t].wh is not None and eb[t].wh is not None]
    if not common:
        return not any(x.wh is not None for x in (*ea.values(), *eb.values()))  # neither measured energy
    for t in common:
        verdict = within_noise(ea[t].wh_spread, eb[t].wh_spread)
        if verdict is None or not verdict[2]:
            return False
    return True


def _te(t: TaskEnergy) -> dict[str, Any]:
    s = t.wh_spread
    return {"wh": t.wh, "wh_ci95": s.ci95 if s else None, "wh_cv": s.cv if s else None,
            "repeats": t.repeats, "seconds": t.seconds,
            "seconds_ci95": t.seconds_spread.ci95 if t.seconds_spread else None,
            "above_idle_wh": t.above_idle_wh, "j_per_token": t.j_per_token, "j_per_correct": t.j_per_correct,
            "tokens": t.tokens, "correct": t.correct, "meter": t.meter}


def run_energy_doc(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """{"energy": {variant: {"tasks": {...}, "avg": {...}}}, "energy_noise", "efficiency",
    "quality", "reference_checks"} for ``run``."""
    from backend.results.reference_tables import checks_of

    rid = run["id"]
    doc: dict[str, Any] = {"energy": {}, "energy_noise": [], "efficiency": store.results.efficiency(rid)}
    variants: dict[str, dict[str, TaskEnergy]] = {}
    if run.get("parent_run_id"):
        variants["baseline vanilla"] = task_energy(store, run["parent_run_id"], "vanilla")
    for v in ("vanilla", "pruned"):
        te = task_energy(store, rid, v)
        if te:
            variants[v] = te
    for name, te in variants.items():
        doc["energy"][name] = {"tasks": {k: _te(x) for k, x in te.items()}, "avg": averages(te)}
    # the run's own vanilla windows (paired protocol) when it measured them, else its baseline run's
    vanilla = variants.get("vanilla") or variants.get("baseline vanilla")
    if "pruned" in variants and vanilla and run["kind"] != "reference":
        doc["energy_noise"] = energy_noise(variants["pruned"], vanilla)
    if "pruned" in variants:
        acc, energy = run_ratios(store, rid)
        doc["ratios"] = {"vs_run": run.get("parent_run_id") or rid, "accuracy": as_dict(acc),
                         "energy": energy.to_dict()}
    if run["kind"] == "reference":
        doc["reference_checks"] = [c.__dict__ for c in checks_of(run)]
        doc["quality"] = None
    else:
        doc["quality"] = quality_badge(store, rid).to_dict()
    return doc


def _f(x: float | None, fmt: str = ".4g") -> str:
    return "—" if x is None else format(x, fmt)


def _rt(r: dict[str, Any] | None) -> str:
    return "—" if r is None else r["text"]


def energy_lines(doc: dict[str, Any]) -> list[str]:
    """Plain text lines (no markup) for the CLI and the TUI."""
    out: list[str] = []
    if doc.get("quality"):
        out.append("quality: " + doc["quality"]["label"])
    ratios = doc.get("ratios")
    if ratios:
        e = ratios["energy"]
        how = {"paired": "paired with its own vanilla windows", "unpaired": "unpaired"}.get(e["design"], e["design"])
        out.append(f"ratio pruned / vanilla (run {ratios['vs_run']}), 95 % interval: "
                   f"acc × {_rt(ratios['accuracy'])} · Wh × {_rt(e['average'])} ({how})")
        if e["per_task"]:
            out.append("  Wh × per task: " + " · ".join(f"{t} {r['compact']}" for t, r in e["per_task"].items()))
        methods = sorted({m for m in (ratios["accuracy"] or {}, e["average"] or {}) for m in [m.get("method")] if m})
        if methods:
            out.append("  intervals: " + "; ".join(methods))
    for name, block in doc["energy"].items():
        a = block["avg"]
        out.append(f"{name}: avg Wh {_f(a['wh'])} total · {_f(a['above_idle_wh'])} above idle · "
                   f"{_f(a['j_per_token'])} J/token · {_f(a['j_per_correct'])} J/correct answer")
        for task, t in block["tasks"].items():
            if t["wh"] is None:
                out.append(f"  {task:<14} energy not measured")
                continue
            spread = (f" ± {t['wh_ci95']:.5f} (95 % CI, CV {t['wh_cv'] * 100:.1f} %, n={t['repeats']})"
                      if t["wh_ci95"] is not None and t["wh_cv"] is not None else f" (n={t['repeats']})")
            out.append(f"  {task:<14} total {t['wh']:.5f} Wh{spread} · above idle {_f(t['above_idle_wh'], '.5f')} Wh"
                       f" · {_f(t['j_per_token'])} J/token · {_f(t['j_per_correct'])} J/correct")
    for n in doc.get("energy_noise") or []:
        band = "" if n["band_wh"] is None else f" ±{n['band_wh']:.5f}"
        out.append(f"energy Δ {n['task']}: {n['delta_wh']:+.5f} Wh{band} — {n['verdict']}")
    for p in doc.get("efficiency") or []:
        out.append(f"efficiency {p['variant']} batch {p['batch_size']}×{p['seq_len']}: "
                   f"{_f(p['tokens_per_s'], '.0f')} tokens/s · {_f(p['j_per_token'])} J/token ({p['meter'] or 'no meter'})")
    for c in doc.get("reference_checks") or []:
        mark = "" if c["ok"] else "FLAG "
        out.append(f"{mark}{c['metric']} row {c['line']} {c['variant']}: printed {c['what']} {c['printed']:g} "
                   f"vs cells {c['recomputed']:.4g} (±{c['tolerance']:.2g})")
    return out
