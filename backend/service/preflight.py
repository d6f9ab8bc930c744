"""Every check a run's inputs can answer, made before anything is recorded or loaded.

Why: a refusal that config.json and a ``stat`` can give in a second must not come after an hour of
baseline evaluation on an 8B model. ``check_run`` asks, in order: the settings (the run schema's
rules), the model (resolved and described from its files, never loaded: architecture, decoder layers
against the layers kept, head and KV shapes against the counting rule, the safetensors headers against
config.json, a target size it can reach), the files (calibration text, LoRA data and whether any
example fits the cutoff, the evaluation data), and the executor (a device or a Slurm cluster that is
there). It reads and never writes: a refusal (``SettingError`` naming the setting) leaves the store
byte for byte as it was. ``record_run`` then registers the model and records the run.

Light imports only (the UI queues through this module): config.json, safetensors headers and the
``tokenizers`` library, never torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import GreentuiError
from backend.schema.runconfig import RunConfig, layers_kept
from backend.schema.settings import SettingError
from backend.store import Store

#: Settings that name a local path: made absolute before the run is recorded (the runner's cwd differs).
PATH_SETTINGS = ("data_dir", "calib_file", "lora_data")

if TYPE_CHECKING:
    from backend.stages.models import ModelInfo


@dataclass
class Checked:
    """A run that passed every check: its config (paths absolute, the model's canonical reference),
    the model's store row when it is known, what its files say, and notes every caller shows."""

    cfg: RunConfig
    known: dict[str, Any] | None
    info: ModelInfo | None  # None for a known model that is not local
    notes: list[str] = field(default_factory=list)


def check_run(store: Store, cfg: RunConfig, *, executor: bool = True) -> Checked:
    """Check ``cfg`` against its model's files, its data files and (``executor``) its executor; raise
    ``SettingError`` naming the setting to blame. Writes nothing (see the module docstring). A study,
    which asks each executor once per placement, passes ``executor=False``."""
    cfg.validate()
    if executor:  # first: a cluster that cannot take the run makes the rest moot
        _executor(cfg, store.path.parent)
    known, info = _model(store, cfg)
    cfg.model = _canonical_ref(cfg, known, info)
    for name in PATH_SETTINGS:
        value = getattr(cfg, name)
        if value and Path(value).expanduser().exists():
            setattr(cfg, name, str(Path(value).expanduser().resolve()))
    notes: list[str] = []
    path = Path(info.path) if info is not None and info.path else None
    if path is not None:
        _weights(path)
    if not cfg.no_prune:
        _pruning(cfg, known, info, path, notes)
        if not cfg.no_lora:
            _lora(cfg, path)
    _evaluation_data(cfg)
    return Checked(cfg, known, info, notes)


def record_run(store: Store, checked: Checked, status: str, pid: int | None = None) -> int:
    """Register the model (when new), settle its trust and record the run; the run's id."""
    cfg = checked.cfg
    model_id = register_model_of(store, checked)
    kind = "baseline" if cfg.no_prune else "experiment"
    return store.runs.create(model_id, kind, cfg.to_dict(), status=status, pid=pid)


def register_model_of(store: Store, checked: Checked) -> int:
    """The checked run's model in the store (added when new) with its trust settled; the model's id."""
    from backend.stages.models import effective_trust, record_model

    cfg = checked.cfg
    known = checked.known
    if known is not None:
        model_id = int(known["id"])
    else:
        model_id = record_model(store, _described(cfg, checked.info), cfg.trust_remote_code)
    cfg.trust_remote_code = effective_trust(store, model_id, cfg.trust_remote_code)
    return model_id


# ---------------------------------------------------------------------------------- the model
def _model(store: Store, cfg: RunConfig) -> tuple[dict[str, Any] | None, ModelInfo | None]:
    """(the store's row when the model is known, its description from its files). An unknown model
    must resolve; a known one that cannot be described here (an HF id offline, a folder on a node's
    disk) is checked when it is loaded, as it always was."""
    from backend.stages.models import describe
    known = store.models.get(cfg.model)
    try:
        return known, describe(known["ref"] if known else cfg.model, cfg.trust_remote_code)
    except GreentuiError as exc:
        if known is not None:
            return known, None
        raise SettingError("model", str(exc)) from None


def _described(cfg: RunConfig, info: ModelInfo | None) -> ModelInfo:
    """The description of a model the store does not know: ``_model`` refuses an unknown model it
    cannot describe, so a missing one here is that refusal again, never a None passed on."""
    if info is None:
        raise SettingError("model", f"{cfg.model}: not in this workspace and not described from its files")
    return info


def _canonical_ref(cfg: RunConfig, known: dict[str, Any] | None, info: ModelInfo | None) -> str:
    """The model's reference as the store keeps it: the known row's, else the one its files resolve to."""
    return str(known["ref"]) if known is not None else _described(cfg, info).ref


def _weights(path: Path) -> None:
    """A local model's safetensors headers fit its config.json (layers, projection and embedding shapes)."""
    from backend.stages.models import read_config, weights_problem
    try:
        problem = weights_problem(path, read_config(path, str(path)))
    except GreentuiError as exc:
        problem = str(exc)
    if problem:
        raise SettingError("model", problem)


def _pruning(cfg: RunConfig, known: dict[str, Any] | None, info: ModelInfo | None, path: Path | None,
             notes: list[str]) -> None:
    """Architecture, layers kept, head/KV shapes under the counting rule and a reachable target, from
    config.json (a model whose config is not local is checked when it is loaded)."""
    from backend.stages.models import check_prunable
    arch = info.arch if info is not None else (known or {}).get("arch")
    try:
        check_prunable(arch, cfg.model)
    except GreentuiError as exc:
        raise SettingError("model", str(exc)) from None
    if path is None:
        return
    from backend.stages.pruning.plan import plan, read_spec, resolve_target
    from backend.stages.pruning.spec import PruneConfig
    try:
        spec, _ = read_spec(str(path))
    except GreentuiError as exc:
        raise SettingError("model", str(exc)) from None
    first, last, note = layers_kept(cfg.ignore_first, cfg.ignore_last, spec.num_layers)
    if note:
        notes.append(note)
    for i, s in enumerate(spec.layers):
        if min(s.heads, s.kv_heads, s.head_dim, s.intermediate, s.hidden) < 1 or s.heads % s.kv_heads:
            raise SettingError("model", f"config.json gives layer {i} {s.heads} query heads over {s.kv_heads} kv "
                                        f"heads of {s.head_dim} dims and {s.intermediate} MLP channels: not a "
                                        "shape a decoder layer can have")
    pcfg = PruneConfig.of(cfg)
    if cfg.target_params or cfg.target_ratio is not None:
        try:
            target = resolve_target(spec, pcfg, cfg.target_params or None, cfg.target_ratio)
        except GreentuiError as exc:
            raise SettingError("target_ratio" if cfg.target_ratio is not None else "target_params",
                               str(exc)) from None
        if target is not None:  # None only when neither target is given
            pcfg.ratio = target["ratio"]
    try:
        plan(spec, pcfg)
    except SettingError:
        raise
    except (GreentuiError, ValueError, ZeroDivisionError) as exc:
        raise SettingError("count_rule", f"the {cfg.count_rule} rule cannot prune this model's shape: {exc}") from None


def _lora(cfg: RunConfig, path: Path | None) -> None:
    """The LoRA data's records, and that one example fits the cutoff (with the model's tokenizer)."""
    from backend.stages.finetune import check_data
    from backend.stages.lora.data import cutoff_problem
    try:
        records = check_data(cfg.lora_data)
    except GreentuiError as exc:
        raise SettingError("lora_data", str(exc)) from None
    tokenizer = path / "tokenizer.json" if path is not None else None
    if tokenizer is not None and tokenizer.is_file():
        try:
            problem = cutoff_problem(cfg.lora_data, tokenizer, cfg.lora_cutoff_len, records)
        except Exception:  # noqa: BLE001 - a tokenizer.json the tokenizers library cannot read: load will say
            problem = None
        if problem:
            raise SettingError("lora_cutoff_len", problem)


# ---------------------------------------------------------------------------------- files and executor
def _evaluation_data(cfg: RunConfig) -> None:
    """Every task's file in the data dir, checked line by line (the message names file and line)."""
    if not cfg.data_dir:
        return
    from backend.schema.tasks import task_spec, validate_task_file
    for task in cfg.tasks:
        try:
            validate_task_file(Path(cfg.data_dir) / task_spec(task).file_name, task)
        except GreentuiError as exc:
            raise SettingError("data_dir", str(exc)) from None


def _executor(cfg: RunConfig, workspace: Path) -> None:
    """The executor can take the run (asked of the executor: Slurm answers and knows the partition; a
    local run's device is on this machine)."""
    from backend.service.runs import check_executor
    check_executor(cfg, workspace)
