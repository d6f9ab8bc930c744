"""The service layer: what a user can do to runs, one function each, for the CLI and the TUI alike.

``greentui run/queue/cancel/rm`` (``backend.cli.commands``) and the workbench's screens call these and
nothing below them, so a rule (how a model is resolved, which paths are made absolute, when the
runner starts) holds in both. Functions raise ``GreentuiError`` (``SettingError`` when one setting is
to blame, naming it) and never print. Light imports only: the UI process imports this module; the
model description it needs reads ``config.json`` and safetensors headers, never torch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from backend.errors import GreentuiError
from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import CODE_ROOT, PACKAGE_DATA


def prepare_run(store: Store, cfg: RunConfig, status: str, pid: int | None = None) -> int:
    """Check ``cfg`` before anything is recorded (``preflight.check_run``: settings, the model's files,
    data files, executor), then register its model and record the run; the run's id.

    Every refusal is a ``SettingError`` naming the setting, and leaves the store as it was.
    """
    from backend.service.preflight import check_run, record_run
    return record_run(store, check_run(store, cfg), status, pid)


def check_run(store: Store, cfg: RunConfig) -> int:
    """Everything ``prepare_run`` checks (``preflight.check_run``), then the model registered: its id.
    ``cfg`` is left as the run would be recorded (the model's canonical ref, absolute paths). A study
    checks every cell with ``preflight.check_run`` first and registers after."""
    from backend.service.preflight import check_run as check
    from backend.service.preflight import register_model_of
    return register_model_of(store, check(store, cfg))


def prune_config_of(cfg: RunConfig):
    """The pruning view of a run's config (``PruneConfig.of``: the one mapping, the run schema's rules)."""
    from backend.stages.pruning.spec import PruneConfig
    return PruneConfig.of(cfg)


@dataclass(frozen=True)
class Queued:
    """What queueing did: the run, the runner that will take it (None: none started), a paused queue,
    and the notes of its checks (e.g. the study's ignore 4/4 clamped on a shallow model)."""

    run_id: int
    runner_pid: int | None
    paused: bool
    notes: tuple[str, ...] = ()


def start_runner_if_due(workspace: Path, store: Store, device: str = "auto") -> int | None:
    """Start the detached local runner when local runs wait, the queue is not paused and none is alive."""
    from backend.execution.executors import executor
    return executor("local").start_runner(workspace, store, device=device)


def apply_workspace_defaults(cfg: RunConfig, workspace: Path) -> RunConfig:
    """Fill what the user left out from the workspace's ``greentui.toml``, as the run's executor
    reads it (Slurm: ``[slurm]``'s partition, GPUs, time limit and sbatch options). The whole file is
    checked for every run queued, whatever its executor: the runner reads it when it starts, and a file
    it cannot read must refuse the run here, not leave it queued behind a runner that died."""
    from backend.execution.executors import executor
    from backend.schema.wsconfig import load_workspace_config
    load_workspace_config(workspace)
    return executor(cfg.executor).apply_defaults(cfg, workspace).validate()


def check_executor(cfg: RunConfig, workspace: Path) -> None:
    """The executor's queue-time checks (is it available here; does Slurm know the partition; is a
    local run's device on this machine): a ``SettingError`` naming the setting, before anything is
    recorded."""
    from backend.execution.executors import executor
    executor(cfg.executor).check(cfg, workspace)


def queue_run(workspace: Path, store: Store, cfg: RunConfig, *, start: bool = True,
              device: str = "auto") -> Queued:
    """Record ``cfg`` as a queued run and (``start``) make sure its executor's runner drains the queue:
    the local runner, or the runner that submits and follows a scheduler's jobs. Every check the inputs
    can answer is made first (``preflight.check_run``): a refusal records nothing."""
    from backend.execution.executors import executor
    from backend.execution.supervisor import recover_stale_runs
    from backend.service.preflight import check_run, record_run
    checked = check_run(store, apply_workspace_defaults(cfg, workspace))
    cfg = checked.cfg
    recover_stale_runs(store)
    run_id = record_run(store, checked, status="queued")
    paused = store.queue.paused()
    pid = None
    if start and not paused:
        pid = executor(cfg.executor).start_runner(workspace, store, device=device)
    return Queued(run_id, pid, paused, tuple(checked.notes))


def resume_queue(workspace: Path, store: Store, *, start: bool = True, device: str = "auto") -> list[str]:
    """Resume a paused queue and (``start``) its runners; one line per runner started or alive."""
    store.queue.set_paused(False)
    if not start:
        return []
    from backend.execution.executors import executor
    lines = [f"runner pid {start_local_runner(workspace, device)}"]
    for name, pid in _start_other_runners(workspace, store, device).items():
        lines.append(f"{executor(name).job_label or name} runner pid {pid}")
    return lines


def start_local_runner(workspace: Path, device: str = "auto") -> int:
    """The local runner, whether runs wait or not (``greentui resume``); its pid."""
    from backend.execution.supervisor import start_runner
    return start_runner(workspace, device)


def _start_other_runners(workspace: Path, store: Store, device: str) -> dict[str, int]:
    """Every non-local executor with work gets its runner (started, or the live one); name → pid."""
    from backend.execution.executors import executor
    out: dict[str, int] = {}
    for name in store.jobs.executors_with_work(store.queue.paused()):
        if name == "local":
            continue
        try:
            chosen = executor(name)
        except GreentuiError:  # runs of an executor no longer installed: nothing here can follow them
            continue
        pid = chosen.start_runner(workspace, store, device=device)
        if pid:
            out[name] = pid
    return out


def cancel(store: Store, run_id: int) -> str:
    """Cancel a queued run, or ask a running one to stop; returns what happened, in a word."""
    from backend.execution.supervisor import cancel_run
    return cancel_run(store, run_id)


def requeue(store: Store, run_ids: Iterable[int]) -> list[int]:
    """Queue each run again with its model, kind and config; the old runs stay as history."""
    return [store.queue.requeue(int(i)) for i in run_ids]


def remove(workspace: Path, store: Store, run_ids: Iterable[int]) -> tuple[int, list[str]]:
    """Delete runs (never running ones), their results and their folders.

    Returns (runs deleted, folders that could not be removed, each with its reason).
    """
    from backend.workspace import run_dir
    ids = [int(i) for i in run_ids]
    for i in ids:
        store.runs.require(i)
    n = store.runs.delete(ids)
    kept = []
    for i in ids:
        folder = run_dir(workspace, i)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            kept.append(f"{folder} ({exc.strerror or exc})")
    return n, kept


def parse_run_id(text: str) -> int:
    """``12`` or ``#12``; a one-line error otherwise."""
    try:
        return int(str(text).lstrip("#"))
    except ValueError:
        raise GreentuiError(f"{text!r} is not a run id (a number, see greentui ls)") from None


def start_runners(workspace: Path, store: Store, device: str = "auto") -> int | None:
    """Follow open scheduler jobs (even while paused: pausing stops submissions only), submit what
    waits, and start the local runner when local runs wait and the queue is not paused; the local
    runner's pid, or None."""
    _start_other_runners(workspace, store, device)
    return start_runner_if_due(workspace, store, device)


# ---------------------------------------------------------------------------------- the demo
# The demo model ships with the package (``backend/data/demo-model``: ~1 M parameters trained once by
# ``backend/stages/demo_train.py`` on the shipped text, safetensors + tokenizer, ~4.5 MB). It has learned some
# English, so WikiText-2 perplexity tells the study's story within a minute on a CPU: vanilla <
# pruned+LoRA < pruned. Accuracy on the seven tasks stays near chance at this size, and the screens say
# so. The demo copies the files into the workspace (plain file copies: no torch in the UI process).
# Without the shipped files (a trimmed install) it builds a random model with ``python -m backend
# demo-model`` in a *subprocess* (an argument list, never a shell).
DEMO_DIR_NAME = "demo-model"
DEMO_BUILD_TIMEOUT_S = 600.0
SHIPPED_DEMO_MODEL: Path = PACKAGE_DATA / "demo-model"


def demo_model_dir(workspace: Path) -> Path:
    return Path(workspace) / DEMO_DIR_NAME


def demo_model_built(workspace: Path) -> bool:
    return (demo_model_dir(workspace) / "config.json").exists()


def is_demo_model(ref: str | None) -> bool:
    """True for a model directory made by the demo (its marker file is present)."""
    return bool(ref) and (Path(str(ref)) / "greentui_demo.json").exists()


def demo_build_command(workspace: Path) -> list[str]:
    """``python -m backend demo-model`` as an argument list: torch is imported by that process only."""
    import sys
    return [sys.executable, "-m", "backend", "demo-model", str(demo_model_dir(workspace)),
            "--register", "--runs-dir", str(workspace)]


def build_demo_model(workspace: Path, timeout: float = DEMO_BUILD_TIMEOUT_S,
                     shipped: Path | None = SHIPPED_DEMO_MODEL) -> Path:
    """Copy (once) the shipped trained demo model into the workspace, or build a random one in a
    subprocess when ``shipped`` is missing; return its directory.

    Raises ``GreentuiError`` when the build fails and ``subprocess.TimeoutExpired`` when it takes
    longer than ``timeout`` seconds (the TUI's worker handler shows either as a notification).
    """
    import shutil
    import subprocess
    out = demo_model_dir(workspace)
    if demo_model_built(workspace):
        return out
    if shipped is not None and (shipped / "config.json").exists():
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(shipped, tmp)
        tmp.rename(out)  # config.json appears with the weights, never before them
        return out
    proc = subprocess.run(demo_build_command(workspace), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=str(CODE_ROOT))
    if proc.returncode != 0 or not demo_model_built(workspace):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise GreentuiError("building the demo model failed: " + (" | ".join(tail) or f"exit {proc.returncode}"))
    return out


#: The demo's energy (issue #18): the paired protocol (the default) with 3 pairs of 0.25 s windows per
#: task — an interval from 3 pairs, within the demo's 60 s on an idle 2-core machine. On a ~1 M model the
#: ratio is near 1 and its interval wide: the truthful answer at this size, which the screens say.
DEMO_PAIRS = 3
DEMO_WINDOW_S = 0.25


def demo_config(model_ref: str, **overrides) -> RunConfig:
    """The study's method (Taylor 2/7, LoRA r8/α16, seven tasks) at a size a 2-core CPU finishes fast.

    Every layer is prunable (ignore 0/0): the 6-layer demo model's middle layers alone carry too little
    for Taylor 2/7 to move WikiText-2 perplexity (+2 %), all six lose ~9 %. LoRA: 20 steps of 4
    instructions at 1e-3 (higher than the study's 3e-4; a ~1 M model and 20 steps need it) recover part
    of that in seconds. Evaluation: 10 items of each task from the shipped sample.

    Energy: the paired protocol with ``DEMO_PAIRS`` pairs of ``DEMO_WINDOW_S`` windows per task.
    Everything else is the run schema's default — the perplexity tokens above all: a run queued from
    the form after the demo (which starts from this config) and one queued with ``greentui queue
    --limit 10`` share one vanilla baseline instead of two that disagree (#22 3.2).
    """
    from backend.schema.tasks import bundled_data_dir
    base: dict[str, Any] = dict(model=model_ref, data_dir=str(bundled_data_dir()), limit=10, lora_steps=20,
                                lora_batch_size=4, lora_lr=1e-3, ignore_first=0, ignore_last=0, repeats=DEMO_PAIRS,
                                window_s=DEMO_WINDOW_S)
    base.update(overrides)
    return RunConfig(**base)


def queue_demo(workspace: Path, store: Store, *, start: bool = True, device: str = "auto",
               timeout: float = DEMO_BUILD_TIMEOUT_S, shipped: Path | None = SHIPPED_DEMO_MODEL,
               **overrides) -> int:
    """Copy or build the demo model if needed, queue the demo run, start the runner; return the run id."""
    from backend.stages.models import register_model
    out = build_demo_model(workspace, timeout=timeout, shipped=shipped)
    if store.models.get(str(out)) is None:
        register_model(store, str(out))
    run_id = prepare_run(store, demo_config(str(out), **overrides), status="queued")
    store.runs.update(run_id, label="demo")
    if start:
        start_runners(workspace, store, device)
    return run_id
