"""What the New-run form knows before anything runs: presets, the last run's config, checks against the
chosen model's ``config.json`` and a time estimate from this machine's finished runs.

Standard library only (plus the store and the planner, which read JSON): the UI calls it on every
keystroke, and the UI never imports torch. Why a module of its own: the form and any future CLI
``--dry-run`` should give the same advice, and the rules are testable without a screen.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from backend.errors import GreentuiError
from backend.schema.runconfig import SETTING, RunConfig, layers_kept
from backend.schema.settings import SettingError

#: Preset name -> what it is, as the form's choice shows it.
PRESETS = {"study": "study recipe", "quick": "quick (demo-sized)"}
#: Above this many parameters a whole split ("limit all") or many LoRA steps take hours on a CPU.
BIG_MODEL_PARAMS = 500_000_000
MANY_LORA_STEPS = 100
#: Items per task of the shipped sample (``bundled_data_dir``): what a run with no limit evaluates offline.
BUNDLED_ITEMS = 50


def preset_config(name: str, model: str = "", workspace: Path | None = None) -> RunConfig:
    """The study recipe (the schema's defaults, under the ``workspace``'s ``greentui.toml`` [energy]
    table when given) or the demo's quick settings, for ``model``."""
    if name == "quick":
        from backend.service.runs import demo_config
        return demo_config(model)
    if name == "study":
        from backend.service.runs import workspace_run_defaults
        base = workspace_run_defaults(workspace) if workspace is not None else {}
        return RunConfig(**{**base, "model": model})
    raise GreentuiError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")


def last_config(store) -> RunConfig | None:
    """The config of the newest run the user queued: an experiment, or a baseline queued on its own —
    never the vanilla baseline the pipeline recorded for an experiment (its id is above that
    experiment's), which would start the form vanilla-only after the demo (#22 3.3). Imports and
    reference rows are not configs."""
    try:
        raw = store.runs.last_queued_config()
    except ValueError:  # a config that is not JSON
        return None
    if raw is None:
        return None
    try:
        return RunConfig.from_dict(raw)
    except (TypeError, ValueError):  # a config written by an older version that no longer parses
        return None


def run_config(store, run_id: int) -> RunConfig:
    """A recorded run's config (for "clone into form"); GreentuiError when there is none to clone."""
    run = store.runs.require(run_id)
    if run.get("kind") not in ("experiment", "baseline") or not run.get("config"):
        raise GreentuiError(f"run {run_id} is an imported result: it has no config to clone")
    return RunConfig.from_dict(run["config"])


def model_size(model_ref: str) -> tuple[int, int] | None:
    """(layers, parameters) from the model's config.json, or None when it cannot be read locally."""
    from backend.stages.pruning.plan import read_spec
    try:
        spec, _ = read_spec(model_ref)
    except (GreentuiError, KeyError, TypeError, ValueError):
        return None
    return spec.num_layers, spec.params()


def model_checks(cfg: RunConfig, size: tuple[int, int] | None) -> tuple[dict[str, str], list[str]]:
    """(field -> error, warnings) of ``cfg`` against the model's (layers, params)."""
    errors: dict[str, str] = {}
    warnings: list[str] = []
    if size is None:
        return errors, warnings
    layers, params = size
    if not cfg.no_prune:  # the one rule for the layers kept (the plan panel and run/queue say the same)
        try:
            _, _, note = layers_kept(cfg.ignore_first, cfg.ignore_last, layers)
        except SettingError as exc:
            errors[exc.field] = exc.reason
        else:
            if note:
                warnings.append(note)
    if params >= BIG_MODEL_PARAMS:
        if cfg.limit is None:
            warnings.append(f"limit is all items on a {params / 1e9:.1f} B model: evaluation can take hours")
        if not cfg.no_prune and not cfg.no_lora and (cfg.lora_steps or 0) >= MANY_LORA_STEPS:
            warnings.append(f"{cfg.lora_steps} LoRA steps on a {params / 1e9:.1f} B model: recovery can take hours")
    return errors, warnings


def plan_brief(cfg: RunConfig) -> list[str]:
    """The plan panel's lines for ``cfg``: what its pruning settings make of its model, from config.json
    (the planner behind ``greentui plan``, on the pruning view of the config); never raises for a bad
    value, it says why there is no plan in the words the field's check and the CLI use."""
    from backend.stages.pruning.plan import brief
    from backend.stages.pruning.spec import PruneConfig
    try:
        return brief(cfg.model, PruneConfig.of(cfg), cfg.target_params or None, cfg.target_ratio)
    except SettingError as exc:
        label = SETTING[exc.field].label if exc.field in SETTING else exc.field
        return [f"no plan: {label}: {exc.reason}"]
    except (GreentuiError, TypeError, ValueError) as exc:  # a half-typed value the form has not validated yet
        return [f"no plan: {exc}"]


def _items(cfg: RunConfig) -> int | None:
    """Items evaluated per task, when known without the data (a limit, or the shipped sample)."""
    from backend.schema.tasks import data_source
    if cfg.limit:
        return cfg.limit
    return BUNDLED_ITEMS if data_source(cfg.data_dir) == "bundled" else None


def rates(store) -> dict[str, float]:
    """Seconds per (item * parameter) of evaluation, per (LoRA step * parameter), and per parameter for
    the other stages, as medians over this machine's finished runs' ``stage_end`` events."""
    samples: dict[str, list[float]] = {"eval": [], "lora": [], "fixed": []}
    for run in store.runs.recent_finished(50):
        params = run["params_before"]
        try:
            cfg = RunConfig.from_dict(run["config"])
        except (TypeError, ValueError):
            continue
        items = _items(cfg)
        for event in store.events.list(run["id"], kinds=["stage_end"]):
            p = event["payload"]
            stage, seconds = p.get("stage"), float(p.get("seconds") or 0.0)
            if stage in ("baseline", "evaluate"):
                if items and cfg.tasks and seconds > 0.05:  # a reused baseline takes ~0 s: not a rate
                    samples["eval"].append(seconds / (items * len(cfg.tasks) * params))
            elif stage == "lora":
                if cfg.lora_steps:
                    samples["lora"].append(seconds / (cfg.lora_steps * params))
            elif stage:
                samples["fixed"].append(seconds / params)
    return {k: statistics.median(v) for k, v in samples.items() if v}


def estimate_seconds(cfg: RunConfig, params: int, r: dict[str, float], *,
                     baseline_reused: bool = False) -> tuple[float, list[str]]:
    """(seconds, what could not be estimated) for a run of ``cfg`` on a model of ``params`` parameters,
    from the ``rates`` of this machine's past runs (the form's line and a study's dry run, whose cells
    reuse their model's shared baseline: ``baseline_reused``)."""
    items = _items(cfg)
    passes = 1 if cfg.no_prune or baseline_reused else 2  # vanilla + pruned, unless the vanilla is reused
    seconds = r.get("fixed", 0.0) * params * len(cfg.stages("baseline" if cfg.no_prune else "experiment"))
    parts = []
    if "eval" in r and items:
        seconds += r["eval"] * params * items * len(cfg.tasks) * passes
    else:
        parts.append("evaluation not estimated" + ("" if items else " (limit all)"))
    if not cfg.no_prune and not cfg.no_lora:
        if "lora" in r and cfg.lora_steps:
            seconds += r["lora"] * params * cfg.lora_steps
        else:
            parts.append("LoRA not estimated")
    return seconds, parts


def estimate(cfg: RunConfig, params: int | None, r: dict[str, float], runs: int) -> str:
    """One line for the form: the run's expected time from ``rates`` of ``runs`` past runs, scaled by
    the chosen model's parameter count (the form reads the rates once, then estimates per keystroke)."""
    if not r:
        return ("time estimate: no past runs to estimate from" if not runs else
                f"time estimate: none of the {runs} finished runs recorded stage times to estimate from")
    if not params:
        return "time estimate: needs the model's size (its config.json is not readable here)"
    seconds, parts = estimate_seconds(cfg, params, r)
    text = f"time estimate: ~{duration(seconds)} on this machine (from {runs} finished runs)"
    return text + (f"; {', '.join(parts)}" if parts else "")


def finished_runs(store) -> int:
    return store.runs.finished_count()


def duration(seconds: float) -> str:
    """90 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
