"""The study's answer, computed once from the store for ``study show``, the report and the Study screen.

Per model: Table 1 (accuracy) and Table 2 (Wh per task) with a vanilla row and each pruned cell, the
seven tasks, Avg and Ratio with its interval; the **energy-optimal cell** under an accuracy floor
(a share of the vanilla average accuracy, 0.95 by default) or "none qualifies", with how far every
cell is from it; the **amortised accounting** (the energy pruning and LoRA cost, and the number of
evaluated tokens and requests after which the pruned model has saved more than it cost); and where
an efficiency stage ran, the **crossover** batch size from which the pruned model's J/token beats
the vanilla's. Across all cells: the **Pareto front** of accuracy vs Wh and vs J/token, where a cell
is dominated only by one that is better beyond noise (the intervals) and not worse beyond it.

Every ratio carries its interval or says it has none (``Ratio.text``); the ratios and the Pareto rule
are ``backend.results.ratios``' (one implementation for the study and every other screen). Pure Python over the store
(the TUI imports it; figures are drawn by ``backend.results.study_figures``, which the UI never
imports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

from backend.results.ratios import Ratio, acc_noise, acc_ratio, energy_ratio, energy_ratios, pareto, scaled_noise
from backend.schema.study import DEFAULT_FLOOR, parse
from backend.schema.tasks import STUDY_TASKS
from backend.store import Store

J_PER_KWH = 3.6e6


# ------------------------------------------------------------------------------------ rows

@dataclass
class StudyRow:
    """One row of the study's tables: a model's vanilla evaluation or one pruned cell."""

    model: str                      # the model's display name
    model_ref: str
    label: str                      # "vanilla" or the cell's swept values
    variant: str                    # vanilla | pruned
    cell: int | None                # the cell's position in the study (None for a vanilla row)
    run_id: int | None
    status: str
    acc: dict[str, float | None] = field(default_factory=dict)
    acc_stderr: dict[str, float | None] = field(default_factory=dict)
    wh: dict[str, float | None] = field(default_factory=dict)
    wh_passes: dict[str, list[float]] = field(default_factory=dict)
    repeats: list[dict[str, Any]] = field(default_factory=list)   # the run's own passes, every variant
    tokens: dict[str, int | None] = field(default_factory=dict)
    items: dict[str, int | None] = field(default_factory=dict)
    avg_acc: float | None = None
    avg_wh: float | None = None
    j_per_token: float | None = None  # total J / total tokens over the tasks
    acc_ratio: Ratio | None = None
    wh_ratio: Ratio | None = None
    jpt_ratio: Ratio | None = None
    params: int | None = None
    meters: list[str] = field(default_factory=list)
    vs_run: int | None = None       # the vanilla run this row's ratios are against
    swept: dict[str, Any] = field(default_factory=dict)
    # the answer, per pruned cell
    qualifies: bool | None = None
    floor_gap: float | None = None  # accuracy points below the floor (positive = short)
    vs_optimal: float | None = None  # avg Wh / the optimal cell's avg Wh
    cost: "Amortised | None" = None
    crossover: "Crossover | None" = None

    @property
    def complete(self) -> bool:
        return self.status == "done" and self.avg_acc is not None


@dataclass
class Amortised:
    """What pruning and LoRA cost, and when the pruned model has paid it back."""

    prune_wh: float | None
    lora_wh: float | None
    saved_j_per_token: float | None       # vanilla − pruned J/token over the evaluated tasks
    saved_j_per_token_range: tuple[float | None, float | None] = (None, None)
    break_even_tokens: float | None = None      # None: never (the pruned model does not save)
    break_even_tokens_range: tuple[float | None, float | None] = (None, None)
    saved_wh_per_request: float | None = None
    break_even_requests: float | None = None
    note: str = ""

    @property
    def cost_wh(self) -> float | None:
        parts = [p for p in (self.prune_wh, self.lora_wh) if p is not None]
        return sum(parts) if parts else None

    def text(self) -> str:
        if self.cost_wh is None:
            return "pruning and LoRA energy not measured"
        cost = f"pruning {_wh(self.prune_wh)} + LoRA {_wh(self.lora_wh)} = {_wh(self.cost_wh)}"
        if self.break_even_tokens is None:
            return f"{cost}; {self.note or 'never pays back'}"
        lo, hi = self.break_even_tokens_range
        span = "" if lo is None else f" [{_count(lo)}, {'never' if hi is None else _count(hi)}]"
        req = "" if self.break_even_requests is None else f" ≈ {_count(self.break_even_requests)} requests"
        return f"{cost}; pays back after {_count(self.break_even_tokens)} tokens{span}{req}" + (
            f" ({self.note})" if self.note else "")


@dataclass
class Crossover:
    """The batch size from which the pruned model's J/token beats the vanilla's (efficiency stage)."""

    batch: int | None               # None: never in the measured range
    batches: list[int]
    ratios: dict[int, float | None]  # batch -> pruned/vanilla J/token

    def text(self) -> str:
        if not self.batches:
            return "no efficiency stage"
        if self.batch is None:
            return f"pruned J/token never below vanilla at batch {', '.join(map(str, self.batches))}"
        if self.batch == self.batches[0]:
            return f"pruned J/token below vanilla at every measured batch ({', '.join(map(str, self.batches))})"
        return f"pruned J/token below vanilla from batch {self.batch}"


def _wh(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g} Wh"


def _count(x: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


@dataclass
class ModelAnswer:
    """One model's part of the answer."""

    model: str
    model_ref: str
    vanilla: list[StudyRow]
    cells: list[StudyRow]
    floor: float | None = None          # the accuracy a cell must reach (floor share × vanilla avg)
    optimal: int | None = None          # the optimal cell's position
    verdict: str = ""                   # one line: the answer for this model


@dataclass
class StudyAnswer:
    name: str
    accuracy_floor: float
    tasks: list[str]
    models: list[ModelAnswer]
    pareto_wh: list[tuple[str, int | None]] = field(default_factory=list)   # (model, cell) on the front
    pareto_jpt: list[tuple[str, int | None]] = field(default_factory=list)
    cells_total: int = 0
    cells_done: int = 0

    @property
    def rows(self) -> list[StudyRow]:
        return [r for m in self.models for r in (*m.vanilla, *m.cells)]

    def to_dict(self) -> dict[str, Any]:
        def ratio(r: Ratio | None) -> dict[str, Any] | None:
            return None if r is None else r.to_dict()

        def row(r: StudyRow) -> dict[str, Any]:
            d = asdict(r)
            for k in ("acc_ratio", "wh_ratio", "jpt_ratio"):
                d[k] = ratio(getattr(r, k))
            d["cost"] = None if r.cost is None else dict(asdict(r.cost), cost_wh=r.cost.cost_wh, text=r.cost.text())
            d["crossover"] = None if r.crossover is None else dict(asdict(r.crossover), text=r.crossover.text())
            d.pop("wh_passes", None)
            d.pop("repeats", None)
            return d

        return {"study": self.name, "accuracy_floor": self.accuracy_floor, "tasks": self.tasks,
                "cells": self.cells_total, "cells_done": self.cells_done,
                "models": [{"model": m.model, "model_ref": m.model_ref, "floor": m.floor, "optimal_cell": m.optimal,
                            "verdict": m.verdict, "vanilla": [row(r) for r in m.vanilla],
                            "cells": [row(r) for r in m.cells]} for m in self.models],
                "pareto": {"accuracy_vs_wh": [{"model": m, "cell": c} for m, c in self.pareto_wh],
                           "accuracy_vs_j_per_token": [{"model": m, "cell": c} for m, c in self.pareto_jpt]}}


# ------------------------------------------------------------------------------------ building

def _row(store: Store, run: dict[str, Any] | None, variant: str, *, model: str, model_ref: str, label: str,
         cell: int | None, status: str, swept: dict[str, Any] | None = None) -> StudyRow:
    r = StudyRow(model=model, model_ref=model_ref, label=label, variant=variant, cell=cell,
                 run_id=run["id"] if run else None, status=status, swept=swept or {})
    if run is None:
        return r
    passes: dict[str, list[float]] = {}
    r.repeats = store.results.energy_repeats(run["id"])
    for p in r.repeats:
        if p["energy_kwh"] is not None and p["variant"] == variant:
            passes.setdefault(p["task"], []).append(p["energy_kwh"] * 1000)
    for t in store.results.task_results(run["id"], variant):
        task = t["task"]
        r.acc[task], r.acc_stderr[task] = t["acc"], t["acc_stderr"]
        wh = None if t["energy_kwh"] is None else t["energy_kwh"] * 1000
        r.wh[task] = wh
        r.wh_passes[task] = passes.get(task) or ([] if wh is None else [wh])
        r.tokens[task], r.items[task] = t["tokens"], t["n_samples"]
        if t["meter"] and t["meter"] not in r.meters:
            r.meters.append(t["meter"])
    accs = [v for v in r.acc.values() if v is not None]
    whs = [v for v in r.wh.values() if v is not None]
    r.avg_acc = mean(accs) if accs else None
    r.avg_wh = mean(whs) if whs else None
    tok = sum(n for task, n in r.tokens.items() if n and r.wh.get(task) is not None)
    r.j_per_token = sum(w for w in whs) * 3600 / tok if tok and whs else None
    r.params = run.get("params_after") if variant == "pruned" else run.get("params_before")
    return r


def _total(values: Mapping[str, float | int | None], keys: list[str]) -> float:
    """The sum of ``values`` over ``keys``. The callers pick the keys that hold a value (the tasks both
    rows measured), so a missing one is a bug: said at once rather than summed as nothing."""
    present = [v for k in keys if (v := values.get(k)) is not None]
    if len(present) != len(keys):
        raise ValueError(f"no value for {sorted(set(keys) - {k for k in keys if values.get(k) is not None})}")
    return sum(present)


def _pair(row: StudyRow, vanilla: StudyRow) -> None:
    """The pruned row's ratios against the vanilla row shown beside it (the tasks both hold)."""
    row.vs_run = vanilla.run_id
    row.acc_ratio = acc_ratio({t: (row.acc[t], row.acc_stderr.get(t)) for t in row.acc},
                              {t: (vanilla.acc[t], vanilla.acc_stderr.get(t)) for t in vanilla.acc})
    # paired when the run measured its own vanilla windows, else against the vanilla row's passes
    row.wh_ratio = energy_ratios(row.repeats, row.wh, vanilla.wh_passes).average
    common = [t for t in row.tokens if row.tokens[t] and vanilla.tokens.get(t) and row.wh.get(t) is not None
              and vanilla.wh.get(t) is not None]
    if common:
        jp = _total(row.wh, common) / _total(row.tokens, common)
        jv = _total(vanilla.wh, common) / _total(vanilla.tokens, common)
        if jv > 0 and jp > 0:
            w = row.wh_ratio
            # tokens are counted, not measured: J/token's ratio carries the Wh ratio's relative interval
            lo = None if w is None or w.lo is None else jp / jv * w.lo / w.value
            hi = None if w is None or w.hi is None else jp / jv * w.hi / w.value
            row.jpt_ratio = Ratio(jp / jv, lo, hi, w.note if w else "n=1")


def _amortised(store: Store, row: StudyRow, vanilla: StudyRow) -> Amortised | None:
    if row.run_id is None:
        return None
    metrics = {m["name"]: m["value"] for m in store.results.metrics(row.run_id)}
    prune = metrics.get("prune_energy_kwh")
    lora = metrics.get("lora_energy_kwh")
    out = Amortised(prune_wh=None if prune is None else prune * 1000, lora_wh=None if lora is None else lora * 1000,
                    saved_j_per_token=None)
    if out.cost_wh is None:
        return out
    cost_j = out.cost_wh * 3600
    common = [t for t in row.tokens if row.tokens[t] and vanilla.tokens.get(t) and row.wh.get(t) is not None
              and vanilla.wh.get(t) is not None]
    if not common:
        out.note = "no task measured on both models"
        return out
    jv = _total(vanilla.wh, common) * 3600 / _total(vanilla.tokens, common)
    jp = _total(row.wh, common) * 3600 / _total(row.tokens, common)
    saved = jv - jp
    out.saved_j_per_token = saved
    w = row.wh_ratio
    if w is not None and w.lo is not None and w.hi is not None:
        # the saving's interval from the energy ratio's: saved = J_v (1 − R)
        out.saved_j_per_token_range = (jv * (1 - w.hi), jv * (1 - w.lo))
    if saved <= 0:
        out.note = "never pays back: the pruned model uses more energy per token than the vanilla"
        return out
    out.break_even_tokens = cost_j / saved
    lo_s, hi_s = out.saved_j_per_token_range
    if hi_s is not None:
        out.break_even_tokens_range = (cost_j / hi_s, cost_j / lo_s if lo_s is not None and lo_s > 0 else None)
    items = [n for t in common if (n := row.items.get(t))]
    if items:
        per_request = (_total(vanilla.wh, common) - _total(row.wh, common)) / sum(items)
        out.saved_wh_per_request = per_request
        out.break_even_requests = out.cost_wh / per_request if per_request > 0 else None
    if w is not None and w.lo is None:
        out.note = "no interval: one energy pass per task (n=1)"
    elif w is not None and w.inconclusive:
        out.note = "the energy saving is within noise: it may never pay back"
    return out


def _crossover(store: Store, run_id: int | None) -> Crossover | None:
    if run_id is None:
        return None
    points = store.results.efficiency(run_id)
    if not points:
        return None
    by = {(p["variant"], p["batch_size"]): p["j_per_token"] for p in points}
    batches = sorted({p["batch_size"] for p in points if ("vanilla", p["batch_size"]) in by
                      and ("pruned", p["batch_size"]) in by})
    ratios = {b: (by[("pruned", b)] / by[("vanilla", b)] if by[("pruned", b)] is not None and by[("vanilla", b)]
                  else None) for b in batches}
    cross = None
    for b in reversed(batches):
        r = ratios[b]
        if r is not None and r < 1:
            cross = b
        else:
            break
    return Crossover(cross, batches, ratios)


def _optimal(ans: ModelAnswer, floor_share: float) -> None:
    """The energy-optimal finished cell whose average accuracy reaches the floor, and every cell's
    distance from it (accuracy points short of the floor; Wh relative to the optimal cell)."""
    base = next((v for v in ans.vanilla if v.avg_acc is not None), None)
    if base is None or base.avg_acc is None:
        ans.verdict = "no finished vanilla evaluation yet: no floor to judge by"
        return
    floor = ans.floor = floor_share * base.avg_acc
    done = [c for c in ans.cells if c.complete]
    for c in done:
        if c.avg_acc is not None:  # always (a complete cell has its average)
            c.qualifies = c.avg_acc >= floor
            c.floor_gap = max(0.0, floor - c.avg_acc)
    fits = [(wh, c) for c in done if c.qualifies and (wh := c.avg_wh) is not None]
    floor_text = f"avg accuracy ≥ {ans.floor:.3f} ({floor_share:.0%} of vanilla {base.avg_acc:.3f})"
    if not done:
        ans.verdict = "no finished cell yet"
        return
    if not fits:
        near = min(done, key=lambda c: c.floor_gap or 0.0)
        ans.verdict = (f"none qualifies ({floor_text}); closest: cell {near.cell} {near.label}, "
                       f"{near.floor_gap:.3f} short")
        return
    best_wh, best = min(fits, key=lambda f: f[0])
    ans.optimal = best.cell
    for c in done:
        if c.avg_wh is not None and best_wh:
            c.vs_optimal = c.avg_wh / best_wh
    ratio = best.wh_ratio.text() if best.wh_ratio else "—"
    saves = "" if best.wh_ratio is None or best.wh_ratio.value < 1 else "; it does not use less energy than vanilla"
    if best.wh_ratio is not None and best.wh_ratio.inconclusive:
        saves = "; its saving against vanilla is within noise"
    ans.verdict = (f"cell {best.cell} {best.label}: {best_wh:.4g} Wh avg, accuracy {best.avg_acc:.3f} "
                   f"({floor_text}), Wh ratio {ratio}{saves}")


def _pareto(points: list[tuple[tuple[str, int | None], float, float, float, float]]) -> list[tuple[str, int | None]]:
    """The front beyond noise (``backend.results.ratios.pareto``)."""
    return pareto(points)


def _acc_noise(r: StudyRow) -> float:
    """2 standard errors of the row's average accuracy (lm-eval's stderr per task; 0 when missing)."""
    return acc_noise(s for t, s in r.acc_stderr.items() if r.acc.get(t) is not None)


def _energy_noise(r: StudyRow, value: float | None) -> float:
    """Half the width of the row's energy interval (its Wh ratio's, scaled to the value); 0 when n=1."""
    return scaled_noise(r.wh_ratio, value)


def study_answer(store: Store, name: str, accuracy_floor: float | None = None) -> StudyAnswer:
    """The study's answer from what the store holds now (cells not finished show as such)."""
    from backend.results.fmt import model_label
    study = store.studies.require(name)
    try:
        floor = accuracy_floor if accuracy_floor is not None else parse(study["text"]).accuracy_floor
    except Exception:  # noqa: BLE001 - a stored text this version no longer parses keeps the default
        floor = DEFAULT_FLOOR
    cells = store.studies.cells(study["id"])
    models: list[ModelAnswer] = []
    seen: set[str] = set()
    for model_ref in [c["model"] for c in cells]:
        if model_ref in seen:
            continue
        seen.add(model_ref)
        mine = [c for c in cells if c["model"] == model_ref]
        runs = {c["run_id"]: store.runs.get(c["run_id"]) for c in mine if c["run_id"]}
        some = next((r for r in runs.values() if r), None)
        display = model_label(some) if some else model_label({"model_ref": model_ref})
        vanilla_rows: dict[int, StudyRow] = {}
        for c in mine:
            if c["baseline"] and c["run_id"]:
                vanilla_rows[c["run_id"]] = _row(store, runs.get(c["run_id"]), "vanilla", model=display,
                                                 model_ref=model_ref, label="vanilla", cell=None,
                                                 status=c["status"] or "not queued")
        ans = ModelAnswer(display, model_ref, [], [])
        for c in mine:
            if c["baseline"]:
                continue
            run = runs.get(c["run_id"]) if c["run_id"] else None
            row = _row(store, run, "pruned", model=display, model_ref=model_ref, label=c["label"] or "",
                       cell=c["position"], status=c["status"] or "not queued", swept=c["swept"])
            parent = run.get("parent_run_id") if run else None
            if parent and parent not in vanilla_rows:  # a cell that evaluated its own baseline
                vanilla_rows[parent] = _row(store, store.runs.get(parent), "vanilla", model=display,
                                            model_ref=model_ref, label="vanilla", cell=None,
                                            status=(store.runs.get(parent) or {}).get("status", "?"))
            vanilla = vanilla_rows.get(parent) if parent else next(iter(vanilla_rows.values()), None)
            if vanilla is not None and row.acc:
                _pair(row, vanilla)
                row.cost = _amortised(store, row, vanilla)
            row.crossover = _crossover(store, row.run_id)
            ans.cells.append(row)
        ans.vanilla = list(vanilla_rows.values())
        _optimal(ans, floor)
        models.append(ans)
    seen_tasks = {t for m in models for r in (*m.vanilla, *m.cells) for t in r.acc}
    tasks = [t for t in STUDY_TASKS if t in seen_tasks] or list(STUDY_TASKS)
    out = StudyAnswer(name, floor, tasks, models, cells_total=len(cells),
                      cells_done=sum(1 for c in cells if c["status"] == "done"))
    finished = [(m, r, acc) for m in models for r in (*m.vanilla, *m.cells) if (acc := r.avg_acc) is not None]
    out.pareto_wh = _pareto([((m.model, r.cell), acc, _acc_noise(r), wh, _energy_noise(r, wh))
                             for m, r, acc in finished if (wh := r.avg_wh) is not None])
    out.pareto_jpt = _pareto([((m.model, r.cell), acc, _acc_noise(r), jpt, _energy_noise(r, jpt))
                              for m, r, acc in finished if (jpt := r.j_per_token) is not None])
    return out


__all__ = ["Amortised", "Crossover", "ModelAnswer", "Ratio", "StudyAnswer", "StudyRow", "acc_ratio", "energy_ratio",
           "study_answer"]
