"""How far a run's energy figures can be trusted, and the figures derived from them.

Per task and variant: Wh as mean ± 95 % CI and CV over the ``--repeats`` passes, energy above idle
(idle power × duration subtracted), J/token and J per correct answer (correct = acc × n). Per run: a
quality badge — meter kind (the energy-meter registry says what each recorded meter is), shortest
window, idle baseline, repeats CV, GPU temperature drift, whether another run shared the device, and
how much other work the machine ran during the windows (recorded per window since issue #18) — so
one glance says how far the numbers go. Pure Python over
the store (the TUI, ``show``, ``export`` all use it), so no two places compute a figure differently.

Averages over tasks are means of the per-task figures, like the study's Avg columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from backend.measure.energy import registry
from backend.measure.stats import Spread, spread, within_noise
from backend.store import Store

J_PER_KWH = 3.6e6


@dataclass
class TaskEnergy:
    """The energy figures of one task of one variant of one run."""

    task: str
    wh: float | None                 # the mean over passes (task_results.energy_kwh × 1000)
    wh_spread: Spread | None         # over the passes
    seconds: float | None
    seconds_spread: Spread | None
    above_idle_wh: float | None      # wh − idle W × seconds / 3600
    j_per_token: float | None
    j_per_correct: float | None
    tokens: int | None
    correct: float | None
    repeats: int
    meter: str | None


def idle_watts(store: Store, run_id: int) -> tuple[float | None, dict[str, Any]]:
    """The idle power sampled before the run (W) and its record, or (None, {})."""
    import json

    for m in store.results.metrics(run_id):
        if m["name"] == "idle_power_w":
            detail = json.loads(m["detail"]) if m.get("detail") else {}
            return m["value"], detail
    return None, {}


def task_energy(store: Store, run_id: int, variant: str) -> dict[str, TaskEnergy]:
    """Task → its energy figures, for the tasks the run holds in this variant."""
    idle_w, _ = idle_watts(store, run_id)
    passes: dict[str, list[dict[str, Any]]] = {}
    for p in store.results.energy_repeats(run_id, variant):
        passes.setdefault(p["task"], []).append(p)
    out: dict[str, TaskEnergy] = {}
    rows = store.results.task_results(run_id, variant)
    if not rows and passes:
        rows = _rows_of_paired_windows(store, run_id, variant, passes)
    for r in rows:
        t = r["task"]
        ps = passes.get(t, [])
        wh_values = [None if p["energy_kwh"] is None else p["energy_kwh"] * 1000 for p in ps]
        wh = None if r["energy_kwh"] is None else r["energy_kwh"] * 1000
        wsp = spread(wh_values) if ps else (spread([wh]) if wh is not None else None)
        ssp = spread([p["seconds"] for p in ps]) if ps else spread([r["seconds"]])
        joules = None if wh is None else wh * 3600
        above = None
        if wh is not None and idle_w is not None and r["seconds"] is not None:
            above = wh - idle_w * r["seconds"] / 3600
        correct = r["acc"] * r["n_samples"] if r["acc"] is not None and r["n_samples"] else None
        out[t] = TaskEnergy(
            task=t, wh=wh, wh_spread=wsp, seconds=r["seconds"], seconds_spread=ssp, above_idle_wh=above,
            j_per_token=joules / r["tokens"] if joules is not None and r["tokens"] else None,
            j_per_correct=joules / correct if joules is not None and correct else None,
            tokens=r["tokens"], correct=correct, repeats=max(len(ps), 1), meter=r["meter"])
    return out


def _rows_of_paired_windows(store: Store, run_id: int, variant: str,
                            passes: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A task row per task for a variant this run measured only in its paired windows: the vanilla
    model's energy under the paired protocol, whose accuracy is its baseline run's (evaluated once).
    Energy and seconds are the windows' means (as the pruned row's are); the accuracy, items and tokens
    come from the baseline run's row of the task, else from the windows (same requests)."""
    run = store.runs.get(run_id) or {}
    parent = run.get("parent_run_id")
    accuracy = {r["task"]: r for r in store.results.task_results(parent, variant)} if parent else {}
    rows = []
    for task, ps in passes.items():
        energy = [p["energy_kwh"] for p in ps]
        seconds = [p["seconds"] for p in ps]
        acc = accuracy.get(task, {})
        rows.append({"task": task, "energy_kwh": None if any(e is None for e in energy) else mean(energy),
                     "seconds": None if any(x is None for x in seconds) else mean(seconds),
                     "acc": acc.get("acc"), "n_samples": acc.get("n_samples"),
                     "tokens": acc.get("tokens") or ps[0].get("tokens"), "meter": ps[0].get("meter")})
    return rows


def _avg(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return mean(vals) if vals else None


def averages(per_task: dict[str, TaskEnergy]) -> dict[str, float | None]:
    """Means over tasks of Wh, Wh above idle, J/token and J per correct answer."""
    te = list(per_task.values())
    return {"wh": _avg([t.wh for t in te]), "above_idle_wh": _avg([t.above_idle_wh for t in te]),
            "j_per_token": _avg([t.j_per_token for t in te]),
            "j_per_correct": _avg([t.j_per_correct for t in te]),
            "max_cv": max((t.wh_spread.cv for t in te if t.wh_spread and t.wh_spread.cv is not None),
                          default=None)}


def energy_noise(pruned: dict[str, TaskEnergy], vanilla: dict[str, TaskEnergy]) -> list[dict[str, Any]]:
    """Per task: ΔWh pruned − vanilla, the noise band (2·√(se_p² + se_v²), as for accuracy), and the
    verdict; tasks without ≥ 2 passes on both sides get ``verdict = "needs --repeats ≥ 2"``."""
    out = []
    for t, p in pruned.items():
        v = vanilla.get(t)
        if v is None or p.wh is None or v.wh is None:
            continue
        verdict = within_noise(p.wh_spread, v.wh_spread)
        if verdict is None:
            out.append({"task": t, "delta_wh": p.wh - v.wh, "band_wh": None, "within_noise": None,
                        "verdict": "needs --repeats ≥ 2"})
        else:
            delta, band, noise = verdict
            out.append({"task": t, "delta_wh": delta, "band_wh": band, "within_noise": noise,
                        "verdict": "within noise" if noise else "beyond noise"})
    return out


# ------------------------------------------------------------------------------------ badge

@dataclass
class Badge:
    """One run's measurement quality at a glance."""

    meter: str                       # "counter (NVML)", "counter (RAPL)", "estimate", "none", ...
    shortest_window_s: float | None
    idle_w: float | None
    idle_source: str | None
    repeats: int
    max_cv: float | None
    temp_drift_c: float | None
    shared_device: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    other_load_cores: float | None = None   # the most other work beside a window (cores), if recorded
    mean_other_load_cores: float | None = None
    cores: int | None = None

    def load_text(self) -> str | None:
        """``other load ≤1.4 cores (mean 0.6) of 2``: what the machine did beside the run's windows."""
        if self.other_load_cores is None:
            return None
        of = f" of {self.cores}" if self.cores else ""
        return f"other load ≤{self.other_load_cores:.1f} cores (mean {self.mean_other_load_cores:.1f}){of}"

    def label(self) -> str:
        win = "—" if self.shortest_window_s is None else f"{self.shortest_window_s:.1f} s"
        idle = "none" if self.idle_w is None else f"{self.idle_w:.1f} W ({self.idle_source})"
        cv = f"n={self.repeats}" if self.max_cv is None else f"≤{self.max_cv * 100:.1f} % (n={self.repeats})"
        drift = "n/a (no NVML)" if self.temp_drift_c is None else f"{self.temp_drift_c:+.0f} °C"
        shared = ("shared with run " + ", ".join(f"#{i}" for i in self.shared_device)
                  if self.shared_device else "alone on device")
        load = self.load_text()
        return (f"meter {self.meter} · shortest window {win} · idle {idle} · repeats CV {cv} · "
                f"temp drift {drift} · {shared}" + (f" · {load}" if load else ""))

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return dict(asdict(self), label=self.label())


def _meter_kind(meters: list[str | None]) -> str:
    """One word for the run's meters, from what the registry says each recorded meter is: a counter
    (with its label) only when every figure came from one."""
    ms = [m for m in meters if m]
    if not ms:
        return "none"
    if all(m.startswith("published") for m in ms):
        return "published (reference)"
    infos = [registry.describe(m) for m in ms]
    counters = sorted({i.label for i in infos if not i.is_estimate})
    if counters and len(counters) == 1 and all(not i.is_estimate for i in infos):
        return f"counter ({counters[0]})"
    if counters and all(not i.is_estimate for i in infos):
        return f"counter ({', '.join(counters)})"
    if counters:
        return f"counter ({', '.join(counters)}) and estimate"
    return "estimate"


def _machine_load(passes: list[dict[str, Any]]) -> tuple[float | None, float | None, int | None]:
    """The most and the mean other load (cores) recorded beside the windows, and the core count."""
    loads, cores = [], None
    for p in passes:
        load = (p["detail"].get("provenance") or {}).get("machine_load") or {}
        if load.get("other_cores") is not None:
            loads.append(float(load["other_cores"]))
            cores = load.get("cores") or cores
    if not loads:
        return None, None, None
    return max(loads), mean(loads), cores


def quality_badge(store: Store, run_id: int) -> Badge:
    """The badge of a run over every variant it holds (a baseline run: vanilla; experiment: pruned)."""
    run = store.runs.require(run_id)
    results = store.results.task_results(run_id)
    passes = store.results.energy_repeats(run_id)
    idle_w, idle = idle_watts(store, run_id)
    windows = [p["seconds"] for p in passes if p["seconds"] is not None] or \
        [r["seconds"] for r in results if r["seconds"] is not None]
    cvs = []
    for variant in {r["variant"] for r in results}:
        a = averages(task_energy(store, run_id, variant))
        if a["max_cv"] is not None:
            cvs.append(a["max_cv"])
    drifts = []
    notes: list[str] = []
    for p in passes:
        state = (p["detail"].get("provenance") or {}).get("gpu_state") or {}
        start, end = state.get("start") or [], state.get("end") or []
        for s, e in zip(start, end):
            if s.get("temperature_c") is not None and e.get("temperature_c") is not None:
                drifts.append(e["temperature_c"] - s["temperature_c"])
        short = (p["detail"].get("provenance") or {}).get("short_window")
        if short and "short window" not in " ".join(notes):
            notes.append("short window: " + short)
    repeats = max((p["repeat"] for p in passes), default=1 if results else 0)
    worst_load, mean_load, cores = _machine_load(passes)
    return Badge(meter=_meter_kind([r["meter"] for r in results]),
                 shortest_window_s=min(windows) if windows else None,
                 idle_w=idle_w, idle_source=idle.get("source"), repeats=repeats,
                 max_cv=max(cvs) if cvs else None,
                 temp_drift_c=max(drifts, key=abs) if drifts else None,
                 shared_device=_overlapping_runs(store, run), notes=notes,
                 other_load_cores=worst_load, mean_other_load_cores=mean_load, cores=cores)


def _overlapping_runs(store: Store, run: dict[str, Any]) -> list[int]:
    if not run.get("started_at") or not run.get("device") or run["kind"] in ("import", "reference"):
        return []
    return store.runs.overlapping(run["id"])
