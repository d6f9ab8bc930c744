"""Every pruned/vanilla ratio greentui shows, with its 95 % interval: the one implementation.

Why one module: a ratio of two energy figures measured on a shared machine is mostly noise unless it
says how wide it is (issue #18). The Runs list, Run detail, Compare, ``ls``, ``show`` and every export
format read their ratios from here, so a ratio is computed one way and written one way.

How each interval is computed (say which where it is shown: ``Ratio.method``):

- **accuracy** (``acc_ratio``): Σ pruned acc / Σ vanilla acc over the tasks both hold, 95 % interval
  by the delta method on the log ratio from lm-eval's standard errors (the two models taken as
  independent, which widens it when they are not). ``METHOD_ACC``.
- **energy, paired** (``paired_energy_ratio``): the run measured its own vanilla beside the pruned
  model (same task, same ``repeat`` index = one pair). Per task: Student's t interval on the mean of
  the pairs' log-ratios (``exp`` of it is the task's ratio). On average: the tasks' ratios weighted
  by their vanilla Wh share (≈ Σ pruned / Σ vanilla), its variance by the delta method over the
  tasks' paired errors, t with the fewest pairs of any task minus one. ``METHOD_PAIRED``.
- **energy, unpaired** (``energy_ratio``): the baseline run's repeats against the run's own: the
  delta method on the log of the ratio of means, t with the fewest passes minus one. ``METHOD_UNPAIRED``.

One pass per task (or no stderr) leaves no interval: the ratio says ``n=1`` (or why). Written forms
(``Ratio.text`` for sentences and exports, ``Ratio.compact`` for narrow columns):

=====================  ===============================  ==========
case                   text()                           compact()
=====================  ===============================  ==========
interval excludes 1    ``0.912 ±0.028``                 ``0.91±.03``
interval contains 1    ``≈1 (inconclusive: 0.990 ±0.040)``  ``≈1``
no interval            ``0.912 (n=1)``                  ``0.91 n=1``
=====================  ===============================  ==========

The ± is the larger of the two half-widths (the interval is computed on the log scale, so it is
slightly asymmetric; exports carry the exact ``lo``/``hi``). Pure Python over the store (the UI
imports it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.measure.stats import t975

METHOD_ACC = "delta method on the log ratio, lm-eval stderr"
METHOD_PAIRED = "paired: t-interval on the mean log-ratio over pairs"
METHOD_UNPAIRED = "unpaired: delta method on the log of the ratio of means"
#: every written ratio matches one of these (tests scan screens and exports with them)
COMPACT_FORMS = (r"\d+\.\d+±\d*\.\d+", r"≈1", r"\d+\.\d+ n=1", r"\d+\.\d+ ±\?")


@dataclass(frozen=True)
class Ratio:
    """A ratio with its 95 % interval, or ``None`` bounds and the reason it has none (``note``)."""

    value: float
    lo: float | None = None
    hi: float | None = None
    note: str = ""          # "n=1" or "no stderr" when there is no interval; "n=N" otherwise
    n: int | None = None    # pairs or passes (energy); None for accuracy
    method: str = ""        # METHOD_* (how the interval was computed); "" when there is none

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def inconclusive(self) -> bool:
        return self.lo is not None and self.hi is not None and self.lo <= 1 <= self.hi

    @property
    def half(self) -> float | None:
        """The larger half-width of the interval (what ``±`` shows)."""
        if self.lo is None or self.hi is None:
            return None
        return max(self.hi - self.value, self.value - self.lo)

    def text(self, digits: int = 3) -> str:
        """``0.912 ±0.028``, ``≈1 (inconclusive: 0.990 ±0.040)`` or ``0.912 (n=1)``."""
        v = f"{self.value:.{digits}f}"
        if self.half is None:
            return f"{v} ({self.note or 'n=1'})"
        pm = f"{v} ±{_up(self.half, digits):.{digits}f}"
        return f"≈1 (inconclusive: {pm})" if self.inconclusive else pm

    def cell(self, digits: int = 3) -> str:
        """A table cell with room: ``0.912 ±0.028``, ``≈1 (inconclusive)``, ``0.912 (n=1)``."""
        return "≈1 (inconclusive)" if self.inconclusive else self.text(digits)

    def compact(self) -> str:
        """At most 8 characters for an 80-column table: ``0.91±.03``, ``≈1``, ``0.91 n=1``, ``0.91 ±?``."""
        v = f"{self.value:.2f}"
        if self.half is None:
            return f"{v} n=1" if self.note in ("", "n=1") else f"{v} ±?"
        if self.inconclusive:
            return "≈1"
        h = _up(self.half, 2)
        return f"{v}±{h:.2f}".replace("±0.", "±.") if h < 1 else f"{v}±{h:.1f}"

    def to_dict(self) -> dict[str, Any]:
        """What JSON and CSV exports carry: value, lo, hi, n, method, inconclusive, the text."""
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n, "method": self.method,
                "note": self.note, "inconclusive": self.inconclusive, "text": self.text(), "compact": self.compact()}


def mean(xs: Iterable[float]) -> float:
    """The arithmetic mean in float arithmetic: ``statistics.mean`` works in fractions and cost the
    Runs page ~30 ms for 100 rows (bench P2); these are measurements, not exact numbers."""
    xs = list(xs)
    return math.fsum(xs) / len(xs)


def _up(x: float, digits: int) -> float:
    """``x`` rounded up at ``digits`` (a half-width is never shown narrower than it is), at least one unit."""
    unit = 10.0 ** -digits
    return max(unit, math.ceil(x / unit - 1e-9) * unit)


def text(r: Ratio | None, digits: int = 3) -> str:
    """``Ratio.text`` or "—" when there is no ratio (a vanilla row, a missing figure)."""
    return "—" if r is None else r.text(digits)


def cell(r: Ratio | None, digits: int = 3) -> str:
    return "—" if r is None else r.cell(digits)


def compact(r: Ratio | None) -> str:
    return "—" if r is None else r.compact()


def as_dict(r: Ratio | None) -> dict[str, Any] | None:
    return None if r is None else r.to_dict()


# ------------------------------------------------------------------------------------ accuracy

def acc_ratio(pruned: dict[str, tuple[float | None, float | None]],
              vanilla: dict[str, tuple[float | None, float | None]]) -> Ratio | None:
    """Σ pruned acc / Σ vanilla acc over the tasks both hold (the study's Ratio of the averages), with a
    95 % interval from lm-eval's standard errors by the delta method on the log ratio."""
    # (pruned acc, its stderr, vanilla acc, its stderr) of each task both hold, in the pruned row's order
    common: list[tuple[float, float | None, float, float | None]] = []
    for t, (p_acc, p_se) in pruned.items():
        v_acc, v_se = vanilla.get(t) or (None, None)
        if p_acc is not None and v_acc is not None:
            common.append((p_acc, p_se, v_acc, v_se))
    if not common:
        return None
    a = sum(c[0] for c in common)
    b = sum(c[2] for c in common)
    if a <= 0 or b <= 0:
        return None
    p_ses = [s for c in common if (s := c[1]) is not None and not math.isnan(s)]
    v_ses = [s for c in common if (s := c[3]) is not None and not math.isnan(s)]
    if len(p_ses) < len(common) or len(v_ses) < len(common):
        return Ratio(a / b, note="no stderr")
    var = sum(s ** 2 for s in p_ses) / a ** 2 + sum(s ** 2 for s in v_ses) / b ** 2
    half = 1.96 * math.sqrt(var)
    return Ratio(a / b, a / b * math.exp(-half), a / b * math.exp(half), "stderr", method=METHOD_ACC)


# ------------------------------------------------------------------------------------ energy

def energy_ratio(pruned: dict[str, list[float]], vanilla: dict[str, list[float]]) -> Ratio | None:
    """Unpaired: Σ mean pruned Wh / Σ mean vanilla Wh over the tasks both hold, each task's passes as
    independent samples: the delta method on the log ratio, Student's t with the fewest passes of any
    task minus one degrees of freedom. No interval with a single pass (``n=1``)."""
    common = [t for t in pruned if pruned[t] and vanilla.get(t)]
    if not common:
        return None
    a = sum(mean(pruned[t]) for t in common)
    b = sum(mean(vanilla[t]) for t in common)
    if a <= 0 or b <= 0:
        return None
    n = min(min(len(pruned[t]), len(vanilla[t])) for t in common)
    if n < 2:
        return Ratio(a / b, note="n=1", n=n)
    var = sum(_var_of_mean(pruned[t]) for t in common) / a ** 2 + sum(_var_of_mean(vanilla[t]) for t in common) / b ** 2
    half = t975(n - 1) * math.sqrt(var)
    return Ratio(a / b, a / b * math.exp(-half), a / b * math.exp(half), f"n={n}", n=n, method=METHOD_UNPAIRED)


def paired_task_ratio(pairs: Sequence[tuple[float, float]]) -> Ratio | None:
    """One task's paired ratio: exp(mean log(p/v)) with Student's t interval over the pairs."""
    logs = [math.log(p / v) for p, v in pairs if p and v and p > 0 and v > 0]
    if not logs:
        return None
    m = mean(logs)
    n = len(logs)
    if n < 2:
        return Ratio(math.exp(m), note="n=1", n=1)
    se = math.sqrt(sum((x - m) ** 2 for x in logs) / (n - 1) / n)
    half = t975(n - 1) * se
    return Ratio(math.exp(m), math.exp(m - half), math.exp(m + half), f"n={n}", n=n, method=METHOD_PAIRED)


def paired_energy_ratio(pairs: Mapping[str, Sequence[tuple[float, float]]]) -> Ratio | None:
    """The average over tasks of paired ratios: each task's ratio weighted by its share of the vanilla
    Wh (so it is ≈ Σ pruned / Σ vanilla), variance by the delta method over the tasks' errors."""
    parts = []
    for t, ps in pairs.items():
        r = paired_task_ratio(ps)
        good = [v for p, v in ps if p and v and p > 0 and v > 0]
        if r is not None and good:
            parts.append((mean(good), r))
    if not parts:
        return None
    total = sum(w for w, _ in parts)
    value = sum(w * r.value for w, r in parts) / total
    n = min(r.n or 1 for _, r in parts)
    if n < 2:
        return Ratio(value, note="n=1", n=n)
    # var(log R_t) = (log-half / t)²; var(Σ w_t R_t) = Σ w_t² R_t² var(log R_t); back to the log of the sum
    terms = []
    for w, r in parts:
        if r.hi is None or r.n is None:  # never: a task of n >= 2 pairs has its interval
            raise ValueError(f"a paired task ratio of {r.n} pairs without an interval")
        terms.append((w / total) ** 2 * r.value ** 2 * (math.log(r.hi / r.value) / t975(r.n - 1)) ** 2)
    var = sum(terms)
    half = t975(n - 1) * math.sqrt(var) / value
    return Ratio(value, value * math.exp(-half), value * math.exp(half), f"n={n}", n=n, method=METHOD_PAIRED)


def _var_of_mean(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)


def pairs_of(repeats: Iterable[dict[str, Any]], variant: str = "pruned") -> dict[str, list[tuple[float, float]]]:
    """A paired run's own ``energy_repeats`` rows as task → [(pruned Wh, vanilla Wh)], one pair per
    ``repeat`` index that holds both variants (the data contract of the paired protocol)."""
    by: dict[tuple[str, int], dict[str, float]] = {}
    for r in repeats:
        if r.get("energy_kwh") is not None:
            by.setdefault((r["task"], r["repeat"]), {})[r["variant"]] = r["energy_kwh"] * 1000
    out: dict[str, list[tuple[float, float]]] = {}
    for (task, _), both in sorted(by.items()):
        if variant in both and "vanilla" in both:
            out.setdefault(task, []).append((both[variant], both["vanilla"]))
    return out


@dataclass(frozen=True)
class EnergyRatios:
    """A run's energy ratio on average and per task, and which design gave it."""

    average: Ratio | None
    per_task: dict[str, Ratio]
    design: str                 # "paired" (its own vanilla windows) or "unpaired" (the baseline run's)

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design, "average": as_dict(self.average),
                "per_task": {t: r.to_dict() for t, r in self.per_task.items()}}


def energy_ratios(own: Iterable[dict[str, Any]], own_wh: dict[str, float | None],
                  base_passes: dict[str, list[float]], variant: str = "pruned",
                  per_task: bool = True) -> EnergyRatios:
    """The run's energy ratios: paired when its own repeats hold vanilla windows, else unpaired
    against ``base_passes`` (the baseline run's Wh per task, one value per pass).

    ``own``: the run's ``energy_repeats`` rows (every variant); ``own_wh``: its task means (the
    ``task_results`` Wh, used where a task has no repeat rows); ``per_task=False`` leaves the
    per-task ratios out (the Runs list shows the average only)."""
    own = list(own)
    pairs = pairs_of(own, variant)
    if pairs:
        per = {t: r for t, ps in pairs.items() if per_task and (r := paired_task_ratio(ps)) is not None}
        return EnergyRatios(paired_energy_ratio(pairs), per, "paired")
    passes: dict[str, list[float]] = {}
    for row in own:
        if row["variant"] == variant and row.get("energy_kwh") is not None:
            passes.setdefault(row["task"], []).append(row["energy_kwh"] * 1000)
    for t, wh in own_wh.items():
        if t not in passes and wh is not None:
            passes[t] = [wh]
    per = {t: r for t in passes if per_task and base_passes.get(t)
           and (r := energy_ratio({t: passes[t]}, {t: base_passes[t]})) is not None}
    return EnergyRatios(energy_ratio(passes, base_passes), per, "unpaired")


def passes_of(repeats: Iterable[dict[str, Any]], results: Iterable[dict[str, Any]],
              variant: str = "vanilla") -> dict[str, list[float]]:
    """Task → Wh of each measured pass of ``variant`` (a task without repeat rows: its one mean)."""
    out: dict[str, list[float]] = {}
    for r in repeats:
        if r["variant"] == variant and r.get("energy_kwh") is not None:
            out.setdefault(r["task"], []).append(r["energy_kwh"] * 1000)
    for r in results:
        if r["variant"] == variant and r["task"] not in out and r.get("energy_kwh") is not None:
            out[r["task"]] = [r["energy_kwh"] * 1000]
    return out


# ------------------------------------------------------------------------------------ runs

def run_ratios(store: Any, run_id: int, variant: str = "pruned",
               baseline_id: int | None = None) -> tuple[Ratio | None, EnergyRatios]:
    """One run's accuracy ratio and energy ratios against ``baseline_id`` (default: its parent)."""
    return batch_ratios(store, [(run_id, variant, baseline_id)])[(run_id, variant)]


def batch_ratios(store: Any, wanted: Sequence[tuple[int, str, int | None]], per_task: bool = True,
                 ) -> dict[tuple[int, str], tuple[Ratio | None, EnergyRatios]]:
    """(run, variant, baseline run or None = its parent) → (acc ratio, energy ratios), for a page of
    runs in two queries (task results and repeats of the runs and their baselines), so the Runs list
    stays fast with 10,000 runs (bench P2)."""
    ids = {i for i, _, _ in wanted}
    parents = store.results.parents(ids)
    base_of = {(i, v): (b if b is not None else parents.get(i)) for i, v, b in wanted}
    rows = store.results.task_results_of(ids | {b for b in base_of.values() if b is not None})
    reps = store.results.energy_repeats_of(ids | {b for b in base_of.values() if b is not None})
    out: dict[tuple[int, str], tuple[Ratio | None, EnergyRatios]] = {}
    bases: dict[int, tuple[dict[str, tuple[Any, Any]], dict[str, list[float]]]] = {}  # a shared baseline once

    def vanilla_of(run: int) -> tuple[dict[str, tuple[Any, Any]], dict[str, list[float]]]:
        if run not in bases:
            van = [r for r in rows.get(run, []) if r["variant"] == "vanilla"]
            bases[run] = ({r["task"]: (r["acc"], r["acc_stderr"]) for r in van}, passes_of(reps.get(run, []), van))
        return bases[run]

    for (i, v), b in base_of.items():
        if v == "vanilla":
            out[(i, v)] = (None, EnergyRatios(None, {}, "unpaired"))
            continue
        own = [r for r in rows.get(i, []) if r["variant"] == v]
        # no baseline run: one that holds its own vanilla (an import, a reference table)
        base_acc, base_passes = vanilla_of(b if b is not None else i)
        acc = acc_ratio({r["task"]: (r["acc"], r["acc_stderr"]) for r in own}, base_acc)
        energy = energy_ratios(reps.get(i, []), {r["task"]: _wh(r) for r in own}, base_passes, v, per_task)
        out[(i, v)] = (acc, energy)
    return out


def _wh(r: dict[str, Any]) -> float | None:
    return None if r.get("energy_kwh") is None else r["energy_kwh"] * 1000


def attach(store: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``store.runs.list`` rows with ``acc_ratio_ci`` and ``wh_ratio_ci`` (``Ratio`` or None) and
    ``energy_design`` added, computed for the whole page at once."""
    wanted = [(r["id"], "pruned", r.get("parent_run_id") if r.get("kind") != "reference" else None)
              for r in rows if r.get("kind") == "experiment" or r.get("acc_ratio") is not None
              or r.get("wh_ratio") is not None]
    got = batch_ratios(store, wanted, per_task=False) if wanted else {}
    for r in rows:
        acc, energy = got.get((r["id"], "pruned"), (None, EnergyRatios(None, {}, "")))
        r["acc_ratio_ci"], r["wh_ratio_ci"], r["energy_design"] = acc, energy.average, energy.design
    return rows


# ------------------------------------------------------------------------------------ Pareto

def pareto(points: list[tuple[Any, float, float, float, float]]) -> list[Any]:
    """Points (id, acc, acc_noise, energy, energy_noise) not dominated beyond noise: B dominates A only
    when B is not worse beyond noise on either axis and better beyond noise on at least one."""
    front = []
    for pid, acc, an, e, en in points:
        dominated = False
        for qid, acc2, an2, e2, en2 in points:
            if qid == pid:
                continue
            acc_band = math.hypot(an, an2)
            e_band = math.hypot(en, en2)
            not_worse = acc2 >= acc - acc_band and e2 <= e + e_band
            better = acc2 - acc > acc_band or e - e2 > e_band
            if not_worse and better:
                dominated = True
                break
        if not dominated:
            front.append(pid)
    return front


def scaled_noise(r: Ratio | None, value: float | None) -> float:
    """Half the width of ``r``'s interval scaled to ``value`` (a figure the ratio was taken of); 0 without one."""
    if value is None or r is None or r.lo is None or r.hi is None or not r.value:
        return 0.0
    return value * (r.hi - r.lo) / 2 / r.value


def point_noise(store: Any, run_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Run → (95 % half-width of its average accuracy, of its average Wh per task) from its own
    figures (lm-eval's stderrs; the spread of its passes, t with the fewest passes minus one; 0 with
    one pass), for the runs' own variant (pruned where they hold one): the whiskers of a Pareto chart
    and the noise its front is judged with. Two queries for all the runs."""
    rows = store.results.task_results_of(run_ids)
    reps = store.results.energy_repeats_of(run_ids)
    out: dict[int, tuple[float, float]] = {}
    for i in run_ids:
        mine = rows.get(i, [])
        variant = "pruned" if any(r["variant"] == "pruned" for r in mine) else "vanilla"
        mine = [r for r in mine if r["variant"] == variant]
        a = acc_noise(r["acc_stderr"] for r in mine if r["acc"] is not None) / 2 * 1.96
        passes = passes_of(reps.get(i, []), mine, variant)
        n = min((len(p) for p in passes.values()), default=1)
        wh = 0.0
        if n >= 2 and passes:
            wh = t975(n - 1) * math.sqrt(sum(_var_of_mean(p) for p in passes.values())) / len(passes)
        out[i] = (a, wh)
    return out


def acc_noise(stderrs: Iterable[float | None]) -> float:
    """2 standard errors of an average accuracy from its tasks' stderrs (0 when none): 2·√Σse² / n."""
    ses = [s for s in stderrs if s is not None and not math.isnan(s)]
    return 2 * math.sqrt(sum(s * s for s in ses)) / len(ses) if ses else 0.0


__all__ = ["COMPACT_FORMS", "METHOD_ACC", "METHOD_PAIRED", "METHOD_UNPAIRED", "EnergyRatios", "Ratio",
           "acc_noise", "acc_ratio", "as_dict", "attach", "batch_ratios", "cell", "compact", "energy_ratio",
           "energy_ratios", "paired_energy_ratio", "paired_task_ratio", "pairs_of", "pareto", "passes_of", "point_noise",
           "run_ratios", "scaled_noise", "text"]
