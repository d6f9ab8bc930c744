"""Studies: a grid of runs queued, followed and answered under one name (issue #20).

``greentui study run FILE.toml`` and the TUI's New-study form call :func:`run_study`;
``study status`` and the Study screen call :func:`study_grid`. What a study does:

1. **Checks everything before it records anything.** The file is parsed and every cell's config is
   checked by the run schema (``backend.schema.study``); then each cell as ``queue`` would check it
   (``preflight.check_run``: the model's files, layers kept, data files, target size…) — a refusal
   names the key and the cell, and nothing is recorded.
2. **Shares one vanilla baseline per model.** Cells of one model whose vanilla evaluation would be
   the same (the baseline key: model, limit, few-shot, data, device, …) share one baseline run. It is
   queued first, and its cells wait for it (``runs.after_run_id``): on a runner with several slots the
   cells then reuse it instead of each evaluating its own. A finished, reusable baseline already in
   the store is taken as it is.
3. **Is idempotent.** A cell whose run is done, queued or running is left alone; running the same
   file again queues only the cells without such a run (failed, cancelled, interrupted, or new).
4. **Fills every slot.** Locally the cells are ordinary queued runs: the runner already runs one per
   free device slot (``--cpu-slots``). On Slurm the study's runs are submitted as one job array
   (``backend.execution.executors.slurm_array``).

Light imports only: the UI process imports this module (the planner reads config.json, no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.schema.runconfig import SETTINGS, RunConfig
from backend.schema.settings import SettingError
from backend.schema.study import Cell, StudyError, StudySpec, cell_key, load, parse
from backend.store import Store
from backend.workspace import PACKAGE_DATA

#: Built-in studies: name -> what it is.
PRESETS = {
    "greenpruning": "the GreenPruning study: seven models, Taylor 2/7, layers 4/4 kept, LoRA r8/α16, seven tasks",
    "demo": "the demo model: taylor and l1 × 1/7 and 2/7, 10 items per task on the shipped sample",
}
#: In a preset's models: the workspace's copy of the shipped demo model.
DEMO_MODEL = "greentui:demo"
PRESET_DIR = PACKAGE_DATA / "studies"
#: Groups whose settings say nothing about a vanilla evaluation (a shared baseline resets them).
PRUNING_GROUPS = ("pruning", "LoRA recovery")
#: The run states of a cell that need no new run when the study is run again.
SETTLED = ("done", "queued", "running")


# ------------------------------------------------------------------------------------------ files

def preset_text(name: str, workspace: Path | None = None) -> str:
    """A built-in study's file. ``demo`` is written from the demo run's own settings
    (``runs.demo_config``: the shipped sample, 10 items, a short LoRA) on the workspace's demo model."""
    if name not in PRESETS:
        raise GreentuiError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    if name == "demo":
        from backend.schema.study import dump
        from backend.service.runs import demo_config
        demo = demo_config(DEMO_MODEL).to_dict()
        defaults = RunConfig().to_dict()
        run = {k: v for k, v in demo.items() if k not in ("model", "importance", "prune_ratio")
               and v != defaults.get(k)}
        return dump("demo", [DEMO_MODEL], {"importance": ["taylor", "l1"], "prune_ratio": [1 / 7, 2 / 7]}, run,
                    description=PRESETS["demo"])
    return _registry_preset(name)


def _registry_preset(name: str) -> str:
    """A preset file of ``backend/data/studies`` with its models from the registry of the study's
    models (``schema.study_models``: one list of the seven, as ``plan`` knows them)."""
    import sys

    from backend.schema.study import dump
    from backend.schema.study_models import STUDY_MODELS
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    doc = tomllib.loads((PRESET_DIR / f"{name}.toml").read_text())
    head = doc.get("study", {})
    return dump(head["name"], [m.hf_id for m in STUDY_MODELS], doc.get("grid", {}), doc.get("run", {}),
                description=head.get("description", ""))


def load_study(path: str | None = None, *, preset: str | None = None, workspace: Path | None = None,
               overrides: dict[str, Any] | None = None) -> StudySpec:
    """The study of a file or a preset (one of the two), checked by the schema; StudyError otherwise."""
    if (path is None) == (preset is None):
        raise GreentuiError("give a study file or --preset NAME (one of the two)")
    if preset is not None:
        return parse(preset_text(preset, workspace), source=f"preset {preset}", overrides=overrides)
    return load(str(path), overrides=overrides)


def resolve_models(spec: StudySpec, workspace: Path) -> StudySpec:
    """``greentui:demo`` becomes the workspace's copy of the demo model (copied on first use)."""
    if DEMO_MODEL not in spec.models:
        return spec
    from backend.service.runs import build_demo_model
    demo = str(build_demo_model(workspace))
    spec.models = [demo if m == DEMO_MODEL else m for m in spec.models]
    return spec


# ------------------------------------------------------------------------------------------ cells

def baseline_config(cfg: RunConfig) -> RunConfig:
    """The vanilla run a pruned cell's baseline is: the cell's evaluation and placement settings,
    pruning and LoRA at their defaults (they do not change a vanilla evaluation), ``no_prune``."""
    data = cfg.to_dict()
    for s in SETTINGS:
        if s.group in PRUNING_GROUPS:
            data[s.name] = RunConfig().to_dict()[s.name]
    data["no_prune"] = True
    return RunConfig(**data)


def _group_key(cfg: RunConfig) -> str:
    return cfg.baseline_key(cfg.model, cfg.device)


def all_cells(spec: StudySpec) -> list[Cell]:
    """The study's cells, each model's shared vanilla baseline(s) first: what a study queues."""
    from backend.schema.tasks import STUDY_TASKS
    cells = spec.check()
    out: list[Cell] = []
    for model in spec.models:
        mine = [c for c in cells if c.model == model]
        groups: dict[str, list[Cell]] = {}
        for c in mine:
            if not c.config.no_prune:
                groups.setdefault(_group_key(c.config), []).append(c)
        for members in groups.values():
            tasks = {t for c in members for t in c.config.tasks}
            base = baseline_config(members[0].config)
            base.tasks = [t for t in STUDY_TASKS if t in tasks]
            out.append(Cell(0, model, {}, base, baseline=True))
        out.extend(mine)
    return [Cell(i, c.model, c.swept, c.config, c.baseline) for i, c in enumerate(out, 1)]


# ------------------------------------------------------------------------------------------ dry run

@dataclass
class CellPlan:
    """One cell as ``--dry-run`` shows it: the planner's sizes and the time it may take."""

    cell: Cell
    params_before: int | None = None
    params_after: int | None = None
    plan_note: str = ""            # why there is no plan, or where the config came from
    seconds: float | None = None   # the estimate, None when none can be made
    state: str = "new"             # done / queued / running / failed … when the study exists
    run_id: int | None = None


@dataclass
class StudyPlan:
    spec: StudySpec
    cells: list[CellPlan]
    estimate_note: str = ""
    reference_sizes: dict[str, float] = field(default_factory=dict)  # model -> the paper's pruned size

    @property
    def to_queue(self) -> list[CellPlan]:
        return [c for c in self.cells if c.state not in SETTLED]

    @property
    def seconds(self) -> float | None:
        known = [c.seconds for c in self.to_queue if c.seconds is not None]
        return sum(known) if known else None


def _read_model_spec(model: str):
    """(planner spec, note) from the model's config.json: its own, or for one of the study's seven
    models not on this machine the one shipped with greentui (``schema.study_models``)."""
    from backend.schema.study_models import MODEL_CONFIGS
    from backend.service.runs import SHIPPED_DEMO_MODEL
    from backend.stages.pruning.plan import read_spec
    if model == DEMO_MODEL:  # a dry run copies nothing: the shipped demo model is the same model
        model = str(SHIPPED_DEMO_MODEL)
    try:
        spec, where = read_spec(model)
    except GreentuiError as exc:
        return None, str(exc)
    return spec, "shipped config" if Path(where).resolve().is_relative_to(MODEL_CONFIGS.resolve()) else ""


def plan_study(store: Store | None, spec: StudySpec) -> StudyPlan:
    """Each cell's planned size (the planner, from config.json: no weights, no torch) and a time
    estimate from this machine's finished runs (``form_advice.rates``), nothing recorded."""
    import dataclasses

    from backend.service import form_advice
    from backend.service.runs import prune_config_of
    from backend.stages.pruning.plan import plan, resolve_target
    cells = all_cells(spec)
    specs = {m: _read_model_spec(m) for m in spec.models}
    rates = form_advice.rates(store) if store is not None else {}
    finished = form_advice.finished_runs(store) if store is not None else 0
    states = _states(store, spec.name) if store is not None else {}
    plans: list[CellPlan] = []
    for cell in cells:
        mspec, note = specs[cell.model]
        cp = CellPlan(cell, plan_note=note)
        cp.state, cp.run_id = states.get(cell.key, ("new", None))
        if mspec is not None:
            cp.params_before = cp.params_after = mspec.params()
            if not cell.config.no_prune:
                try:
                    pcfg = prune_config_of(cell.config)
                    target = resolve_target(mspec, pcfg, cell.config.target_params or None, cell.config.target_ratio)
                    if target:
                        pcfg = dataclasses.replace(pcfg, ratio=target["ratio"])
                    cp.params_after = plan(mspec, pcfg)["params_after"]
                except GreentuiError as exc:
                    raise StudyError(_where_pruning(spec), str(exc), cell) from None
            cp.seconds = form_advice.estimate_seconds(cell.config, cp.params_before, rates,
                                                      baseline_reused=not cell.baseline)[0] if rates else None
        plans.append(cp)
    note = ("" if rates else "no past runs on this machine to estimate from" if not finished else
            f"none of the {finished} finished runs recorded stage times to estimate from")
    return StudyPlan(spec, plans, note, reference_sizes=_reference_sizes(spec))


def _where_pruning(spec: StudySpec) -> str:
    for name in ("prune_ratio", "target_params", "target_ratio", "ignore_first", "ignore_last", "count_rule"):
        if name in spec.grid or name in spec.run:
            return spec.where(name)
    return "study.models"


def _reference_sizes(spec: StudySpec) -> dict[str, float]:
    """The paper's pruned size of each study model among ``spec``'s models (``schema.study_models``)."""
    from backend.schema.study_models import study_model
    out = {}
    for m in spec.models:
        known = study_model(m)
        if known is not None:
            out[m] = float(known.paper_pruned_params)
    return out


def _states(store: Store, name: str) -> dict[str, tuple[str, int | None]]:
    study = store.studies.get(name)
    if study is None:
        return {}
    return {c["key"]: (c["status"] or "new", c["run_id"]) for c in store.studies.cells(study["id"])}


# ------------------------------------------------------------------------------------------ run

@dataclass
class StudyQueued:
    """What running a study did."""

    study_id: int
    queued: list[int]               # new run ids, in queue order
    settled: dict[str, int]         # state -> cells left alone (done / queued / running)
    reused_baselines: list[int]     # finished baselines taken from the store
    runner_pid: int | None = None
    paused: bool = False


def run_study(workspace: Path, store: Store, spec: StudySpec, *, preset: str | None = None,
              source: str | None = None, start: bool = True, array_parallelism: int | None = None) -> StudyQueued:
    """Record the study and queue its cells without a finished or pending run (see the module
    docstring); start the runner (locally) or submit one job array (Slurm)."""
    from backend.execution.supervisor import recover_stale_runs
    from backend.service.preflight import check_run, register_model_of
    from backend.service.runs import apply_workspace_defaults, workspace_run_defaults
    spec.defaults = workspace_run_defaults(workspace)  # [energy] of greentui.toml, under the file's [run]
    if array_parallelism is not None or spec.array_parallelism is not None:
        spec.array_parallelism = array_parallelism or spec.array_parallelism

    spec = resolve_models(spec, workspace)
    cells = all_cells(spec)
    for cell in cells:
        apply_workspace_defaults(cell.config, workspace)
    _check_executors(workspace, spec, cells)
    # every check before anything is recorded (the models too): each cell as `queue` checks a run
    checked = {}
    for cell in cells:
        try:
            checked[cell.key] = check_run(store, cell.config, executor=False)
        except SettingError as exc:
            raise StudyError(spec.where(exc.field) if exc.field != "model" else "study.models", exc.reason,
                             cell) from None
    model_ids = {key: register_model_of(store, c) for key, c in checked.items()}
    recover_stale_runs(store)
    study_id = store.studies.save(spec.name, spec.text, preset=preset, source=source,
                                  array_parallelism=spec.array_parallelism)
    store.studies.set_cells(study_id, [_cell_record(c) for c in cells])
    recorded = {c["key"]: c for c in store.studies.cells(study_id)}
    settled: dict[str, int] = {}
    reused: list[int] = []
    waits: dict[str, int | str] = {}   # group key -> the baseline its cells wait for (a run, or one queued now)
    items: list[dict[str, Any]] = []
    for cell in cells:
        rec = recorded[cell.key]
        group = _group_key(cell.config)
        if rec["status"] in SETTLED:
            settled[rec["status"]] = settled.get(rec["status"], 0) + 1
            if cell.baseline and rec["status"] != "done":
                waits[group] = rec["run_id"]
            continue
        if cell.baseline:
            found = _finished_baseline(store, cell.config)
            if found is not None:
                store.studies.link(study_id, cell.key, found)
                reused.append(found)
                continue
            waits[group] = f"baseline:{cell.key}"
        items.append({"key": cell.key, "model_id": model_ids[cell.key], "config": cell.config.to_dict(),
                      "kind": "baseline" if cell.config.no_prune else "experiment",
                      "label": f"study {spec.name}: {cell.label}",
                      "after": None if cell.baseline else waits.get(group)})
    queued = store.studies.queue_cells(study_id, items) if items else []
    result = StudyQueued(study_id, queued, settled, reused, paused=store.queue.paused())
    if not start or result.paused or not queued:
        return result
    from backend.execution.executors import executor
    from backend.service.runs import start_runners
    for name in sorted({c.config.executor for c in cells} - {"local"}):
        result.runner_pid = executor(name).start_runner(workspace, store) or result.runner_pid
    if any(c.config.executor == "local" for c in cells):
        result.runner_pid = start_runners(workspace, store) or result.runner_pid
    return result


def _cell_record(cell: Cell) -> dict[str, Any]:
    return {"key": cell.key, "model": cell.model, "label": cell.label, "swept": cell.swept,
            "config": cell.config.to_dict(), "baseline": cell.baseline}


def _finished_baseline(store: Store, cfg: RunConfig) -> int | None:
    """A finished baseline in the store this study's baseline cell can be: the pipeline's reuse rule as
    far as the queue can tell it. Always: the key (model, tasks, limit, few-shot, seed), every task, and
    younger than ``baseline_max_age_days``. For a local cell also this machine's node, library versions
    and the data's digest (``queue_fingerprint``); the GPU facts and the CUDA version need torch and
    the run's device, and a Slurm cell's node is not known yet: the cells' own runs apply the whole rule
    when they start (``pipeline``), and measure a baseline of their own where this one does not pass."""
    devices = [cfg.device] if cfg.device != "auto" else ["cpu", "cuda"]
    known = queue_fingerprint(cfg) if cfg.executor == "local" else None
    for device in devices:
        found = store.results.find_baseline(cfg.baseline_key(cfg.model, device), cfg.tasks,
                                            max_age_s=cfg.baseline_max_age_days * 86400,
                                            fingerprint=known, partial=True)
        if found:
            return int(found["id"])
    return None


def queue_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """The fields of the pipeline's baseline fingerprint this process can know without torch or the
    run's device: node, CPU, library versions (package metadata), the data's digest, seed, few-shot, limit."""
    import platform

    from backend.measure.machine import cpu_model, library_versions
    from backend.schema.tasks import data_digest, resolve_tasks
    versions = library_versions()
    return {"node": platform.node(), "cpu": cpu_model(), "torch": versions.get("torch"),
            "transformers": versions.get("transformers"), "lm-eval": versions.get("lm-eval"),
            "data": data_digest(cfg.data_dir, resolve_tasks(cfg.tasks)), "seed": cfg.seed,
            "num_fewshot": cfg.num_fewshot, "limit": cfg.limit}


def _check_executors(workspace: Path, spec: StudySpec, cells: list[Cell]) -> None:
    """Each executor's queue-time checks (available here; Slurm knows the partition), once per distinct
    placement: a refusal names the key it came from, before anything is recorded."""
    from backend.service.runs import check_executor
    seen: set[str] = set()
    for cell in cells:
        placement = repr([getattr(cell.config, k) for k in ("executor", "partition", "gpus", "time_limit")])
        if placement in seen:
            continue
        seen.add(placement)
        try:
            check_executor(cell.config, workspace)
        except SettingError as exc:
            raise StudyError(spec.where(exc.field), exc.reason) from None


# ------------------------------------------------------------------------------------------ status

@dataclass
class CellState:
    """One cell of ``study status`` / the Study screen: state, stage and the result so far."""

    index: int
    model: str
    label: str
    baseline: bool
    key: str
    run_id: int | None
    status: str                     # the run's status, or "not queued"
    stage: str | None
    error: str | None
    tasks_done: int
    tasks_planned: int
    avg_acc: float | None
    avg_wh: float | None
    waits_for: int | None           # the baseline run a queued cell waits for
    config: dict[str, Any]
    swept: dict[str, Any]


def study_grid(store: Store, name: str) -> tuple[dict[str, Any], list[CellState]]:
    """The study's row and each cell's state, stage and result so far (the pruned variant for a
    cell, the vanilla one for a baseline)."""
    from statistics import mean
    study = store.studies.require(name)
    out: list[CellState] = []
    for c in store.studies.cells(study["id"]):
        variant = "vanilla" if c["baseline"] else "pruned"
        results = store.results.task_results(c["run_id"], variant) if c["run_id"] else []
        accs = [r["acc"] for r in results if r["acc"] is not None]
        whs = [r["energy_kwh"] * 1000 for r in results if r["energy_kwh"] is not None]
        waits = c["after_run_id"] if c["status"] == "queued" else None
        if waits is not None:
            base = store.runs.get(waits)
            waits = waits if base and base["status"] in ("queued", "running") else None
        out.append(CellState(
            index=c["position"], model=c["model"], label=c["label"] or "", baseline=bool(c["baseline"]),
            key=c["key"], run_id=c["run_id"], status=c["status"] or "not queued", stage=c["stage"],
            error=c["error"], tasks_done=len(results), tasks_planned=len(c["config"].get("tasks") or []),
            avg_acc=mean(accs) if accs else None, avg_wh=mean(whs) if whs else None, waits_for=waits,
            config=c["config"], swept=c["swept"]))
    return study, out


def study_names(store: Store) -> list[dict[str, Any]]:
    return store.studies.list()


def study_file(workspace: Path, name: str) -> Path:
    """Where the New-study form writes a study's file: ``<workspace>/studies/<name>.toml``."""
    return Path(workspace) / "studies" / f"{name}.toml"


def save_study_file(workspace: Path, store: Store, text: str, *, start: bool = True) -> tuple[Path, StudyQueued]:
    """The New-study form's Enter: check the text as ``study run`` would, write it to the study's file
    and run it. Nothing is written or queued when the text is refused."""
    spec = parse(text, source="the New-study form")
    path = study_file(workspace, spec.name)
    done = run_study(workspace, store, spec, source=str(path), start=start)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, done


REPORT_TIMEOUT_S = 600.0


def report_dir(workspace: Path, name: str) -> Path:
    """Where the TUI writes a study's report: ``<workspace>/studies/<name>/report``."""
    return Path(workspace) / "studies" / name / "report"


def write_report_subprocess(workspace: Path, name: str, out: Path | None = None,
                            timeout: float = REPORT_TIMEOUT_S) -> Path:
    """``greentui study report NAME --out DIR`` in its own process (an argument list, never a shell):
    the figures import matplotlib, which the UI process never does. The folder, or GreentuiError with
    the command's last error line."""
    import subprocess
    import sys

    from backend.workspace import CODE_ROOT
    out = out or report_dir(workspace, name)
    proc = subprocess.run([sys.executable, "-m", "backend", "--runs-dir", str(workspace), "study", "report", name,
                           "--out", str(out)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=str(CODE_ROOT))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise GreentuiError(tail[-1].removeprefix("greentui: error: ") if tail else
                            f"study report exited {proc.returncode}")
    return out


__all__ = ["CellPlan", "CellState", "DEMO_MODEL", "PRESETS", "StudyPlan", "StudyQueued", "all_cells",
           "baseline_config", "load_study", "plan_study", "preset_text", "run_study", "study_grid", "cell_key"]
