"""The demo workspace: a tiny *trained* model and one CPU-friendly run on the bundled real items.

The demo model ships with the package (``backend/data/demo-model``: ~1 M parameters trained once by
``backend/demo_train.py`` on the shipped text, safetensors + tokenizer, ~4.5 MB). It has learned some
English, so WikiText-2 perplexity tells the study's story within a minute on a CPU: vanilla <
pruned+LoRA < pruned. Accuracy on the seven tasks stays near chance at this size, and the screens say
so. The demo copies the files into the workspace (plain file copies: no torch in the UI process).
Without the shipped files (a trimmed install) it falls back to building a random model with
``python -m backend demo-model`` in a *subprocess* (an argument list, never a shell).

The run is recorded with ``prepare_run`` (the same path as ``greentui queue``) and executed by the
detached runner. The app calls this from a thread worker with its own ``Store``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from backend.errors import GreentuiError
from backend.runconfig import STUDY_TASKS, RunConfig
from backend.store import Store
from backend.workspace import PACKAGE_DATA

DEMO_DIR_NAME = "demo-model"
SAMPLE_DATA = PACKAGE_DATA / "commonsense"
SHIPPED_MODEL = PACKAGE_DATA / "demo-model"


def demo_model_dir(workspace: Path) -> Path:
    return workspace / DEMO_DIR_NAME


def demo_model_built(workspace: Path) -> bool:
    return (demo_model_dir(workspace) / "config.json").exists()


def build_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "backend", "demo-model", str(demo_model_dir(workspace)),
            "--register", "--runs-dir", str(workspace)]


def is_demo_model(ref: str | None) -> bool:
    """True for a model directory made by the demo (its marker file is present)."""
    return bool(ref) and (Path(str(ref)) / "greentui_demo.json").exists()


def build_demo_model(workspace: Path, timeout: float = 600) -> Path:
    """Copy (once) the shipped trained demo model into the workspace; return its directory."""
    out = demo_model_dir(workspace)
    if demo_model_built(out.parent):
        return out
    if (SHIPPED_MODEL / "config.json").exists():
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(SHIPPED_MODEL, tmp)
        tmp.rename(out)  # config.json appears with the weights, never before them
        return out
    proc = subprocess.run(build_command(workspace), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0 or not demo_model_built(workspace):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise GreentuiError("building the demo model failed: " + (" | ".join(tail) or f"exit {proc.returncode}"))
    return out


def demo_config(model_ref: str, **overrides) -> RunConfig:
    """The study's method (Taylor 2/7, LoRA r8/α16, seven tasks) at a size a 2-core CPU finishes fast.

    LoRA: 30 steps of 4 instructions at a higher rate than the study's 3e-4 (a ~1 M model and 30 steps
    need it) recover part of what pruning cost on WikiText-2 in a few seconds.
    """
    base = dict(model=model_ref, tasks=list(STUDY_TASKS), data_dir=str(SAMPLE_DATA), limit=10,
                lora_steps=30, lora_batch_size=4, lora_cutoff_len=256, lora_lr=2e-3, ppl_limit=2048,
                ignore_first=1, ignore_last=1)
    base.update(overrides)
    return RunConfig(**base)


def queue_demo(workspace: Path, store: Store, *, start: bool = True, **overrides) -> int:
    """Build the demo model if needed, queue the demo run, start the runner; return the run id."""
    from backend.runs import prepare_run
    from backend.models import register_model

    out = build_demo_model(workspace)
    known = store.get_model(str(out))
    if known is None:
        register_model(store, str(out))
    cfg = demo_config(str(out), **overrides).validate()
    run_id = prepare_run(store, cfg, status="queued")
    store.update_run(run_id, label="demo")
    if start and not store.queue_paused():
        from backend.supervisor import start_runner
        start_runner(workspace)
    return run_id
