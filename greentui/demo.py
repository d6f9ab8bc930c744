"""The demo workspace: a tiny random model and one CPU-friendly run on the bundled real items.

The model is built by ``python -m backend demo-model`` in a *subprocess* (an argument list, never a
shell): ``backend.demo`` imports torch, and the UI process must never import it. The run is recorded
with ``prepare_run`` (the same path as ``greentui queue``) and executed by the detached runner.

Everything here blocks (the subprocess takes seconds); the app calls it from a thread worker with
its own ``Store``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.errors import GreentuiError
from backend.runconfig import STUDY_TASKS, RunConfig
from backend.store import Store
from backend.workspace import PACKAGE_DATA

DEMO_DIR_NAME = "demo-model"
SAMPLE_DATA = PACKAGE_DATA / "commonsense"


def demo_model_dir(workspace: Path) -> Path:
    return workspace / DEMO_DIR_NAME


def demo_model_built(workspace: Path) -> bool:
    return (demo_model_dir(workspace) / "config.json").exists()


def build_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "backend", "demo-model", str(demo_model_dir(workspace)),
            "--register", "--runs-dir", str(workspace)]


def build_demo_model(workspace: Path, timeout: float = 600) -> Path:
    """Build (once) and register the tiny demo model; return its directory."""
    out = demo_model_dir(workspace)
    if demo_model_built(out.parent):
        return out
    proc = subprocess.run(build_command(workspace), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0 or not demo_model_built(workspace):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise GreentuiError("building the demo model failed: " + (" | ".join(tail) or f"exit {proc.returncode}"))
    return out


def demo_config(model_ref: str, **overrides) -> RunConfig:
    """The study's method (Taylor 2/7, LoRA r8/α16, seven tasks) at a size a 2-core CPU finishes fast."""
    base = dict(model=model_ref, tasks=list(STUDY_TASKS), data_dir=str(SAMPLE_DATA), limit=10,
                lora_steps=10, lora_batch_size=4, lora_cutoff_len=256, ppl_limit=2048,
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
