"""The service layer: what a user can do to runs, one function each, for the CLI and the TUI alike.

``greentui run/queue/cancel/rm`` (``backend.commands``) and the workbench's screens call these and
nothing below them, so a rule (how a model is resolved, which paths are made absolute, when the
runner starts) holds in both. Functions raise ``GreentuiError`` (``SettingError`` when one setting is
to blame, naming it) and never print. Light imports only: the UI process imports this module; the
model description it needs reads ``config.json`` and safetensors headers, never torch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import GreentuiError
from .runconfig import RunConfig
from .schema import SettingError
from .store import Store

PATH_SETTINGS = ("data_dir", "calib_file", "lora_data")


def prepare_run(store: Store, cfg: RunConfig, status: str, pid: int | None = None) -> int:
    """Validate ``cfg``, resolve its model (registering it), make its paths absolute, record the run.

    Every refusal is a ``SettingError`` naming the setting: the model that cannot be resolved, the
    data file with a bad line.
    """
    cfg.validate()
    from .models import register_model
    try:
        known = store.get_model(cfg.model)
        model_id = known["id"] if known else register_model(store, cfg.model, cfg.trust_remote_code)
    except SettingError:
        raise
    except GreentuiError as exc:
        raise SettingError("model", str(exc)) from None
    cfg.model = store.get_model(model_id)["ref"]
    from .models import check_prunable, effective_trust
    if not cfg.no_prune:
        try:
            check_prunable(store.get_model(model_id)["arch"], cfg.model)
        except GreentuiError as exc:
            raise SettingError("model", str(exc)) from None
    cfg.trust_remote_code = effective_trust(store, model_id, cfg.trust_remote_code)
    for name in PATH_SETTINGS:
        value = getattr(cfg, name)
        if value and Path(value).expanduser().exists():
            setattr(cfg, name, str(Path(value).expanduser().resolve()))
    if cfg.data_dir:
        from .tasks.registry import task_spec, validate_task_file
        for task in cfg.tasks:  # fail before anything is queued: the message names file and line
            try:
                validate_task_file(Path(cfg.data_dir) / task_spec(task).file_name, task)
            except GreentuiError as exc:
                raise SettingError("data_dir", str(exc)) from None
    kind = "baseline" if cfg.no_prune else "experiment"
    return store.create_run(model_id, kind, cfg.to_dict(), status=status, pid=pid)


@dataclass(frozen=True)
class Queued:
    """What queueing did: the run, the runner that will take it (None: none started), a paused queue."""

    run_id: int
    runner_pid: int | None
    paused: bool


def start_runner_if_due(workspace: Path, store: Store, device: str = "auto") -> int | None:
    """Start the detached runner when runs wait, the queue is not paused and none is alive."""
    from .supervisor import start_runner
    if store.queue_paused() or not store.count_runs(statuses=["queued"]):
        return None
    return start_runner(workspace, device)


def apply_workspace_defaults(cfg: RunConfig, workspace: Path) -> RunConfig:
    """Fill the Slurm settings the user left out from the workspace's ``greentui.toml``."""
    if cfg.executor != "slurm":
        return cfg
    from .wsconfig import slurm_defaults
    d = slurm_defaults(workspace)
    cfg.partition = cfg.partition or d.get("partition")
    cfg.gpus = cfg.gpus if cfg.gpus is not None else d.get("gpus")
    cfg.time_limit = cfg.time_limit or d.get("time_limit")
    given = {a.split("=", 1)[0] for a in cfg.slurm_arg}
    cfg.slurm_arg = [*(f"{k}={v}" for k, v in (d.get("args") or {}).items() if k not in given), *cfg.slurm_arg]
    return cfg.validate()


def queue_run(workspace: Path, store: Store, cfg: RunConfig, *, start: bool = True,
              device: str = "auto") -> Queued:
    """Record ``cfg`` as a queued run and (``start``) make sure a runner drains the queue: the local
    runner, or for ``executor=slurm`` the runner that submits and follows Slurm jobs."""
    from .supervisor import recover_stale_runs, start_runner
    cfg = apply_workspace_defaults(cfg, workspace)
    if cfg.executor == "slurm":
        from .executors.slurm import partition_problem, slurm_available
        why = slurm_available()
        if why:
            raise SettingError("executor", f"slurm: {why}")
        why = cfg.partition and partition_problem(cfg.partition)
        if why:
            raise SettingError("partition", why)
    recover_stale_runs(store)
    run_id = prepare_run(store, cfg, status="queued")
    paused = store.queue_paused()
    pid = None
    if start and not paused:
        if cfg.executor == "slurm":
            from .executors.slurm import ensure_slurm_runner
            pid = ensure_slurm_runner(workspace, store)
        else:
            pid = start_runner(workspace, device)
    return Queued(run_id, pid, paused)


def resume_queue(workspace: Path, store: Store, *, start: bool = True, device: str = "auto") -> list[str]:
    """Resume a paused queue and (``start``) its runners; one line per runner started or alive."""
    from .supervisor import start_runner
    store.set_queue_paused(False)
    if not start:
        return []
    lines = [f"runner pid {start_runner(workspace, device)}"]
    from .executors.slurm import ensure_slurm_runner
    slurm_pid = ensure_slurm_runner(workspace, store)
    if slurm_pid:
        lines.append(f"Slurm runner pid {slurm_pid}")
    return lines


def cancel(store: Store, run_id: int) -> str:
    """Cancel a queued run, or ask a running one to stop; returns what happened, in a word."""
    from .supervisor import cancel_run
    return cancel_run(store, run_id)


def requeue(store: Store, run_ids: Iterable[int]) -> list[int]:
    """Queue each run again with its model, kind and config; the old runs stay as history."""
    return [store.requeue(int(i)) for i in run_ids]


def remove(workspace: Path, store: Store, run_ids: Iterable[int]) -> int:
    """Delete runs (never running ones), their results and their folders; returns how many."""
    from .workspace import run_dir
    ids = [int(i) for i in run_ids]
    for i in ids:
        store.require_run(i)
    n = store.delete_runs(ids)
    for i in ids:
        shutil.rmtree(run_dir(workspace, i), ignore_errors=True)
    return n


def parse_run_id(text: str) -> int:
    """``12`` or ``#12``; a one-line error otherwise."""
    try:
        return int(str(text).lstrip("#"))
    except ValueError:
        raise GreentuiError(f"{text!r} is not a run id (a number, see greentui ls)") from None
