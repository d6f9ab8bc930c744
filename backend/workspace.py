"""Where greentui keeps its state: the workspace (``runs/`` by default).

A workspace holds ``greentui.db`` and one folder per run. ``--runs-dir`` beats ``GREENTUI_HOME``
beats ``./runs``. Hugging Face caches stay inside the user's HF_HOME (never scattered); the
``datasets`` cache is pointed into the workspace so that offline evaluation leaves nothing behind in
the home directory.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from .errors import GreentuiError

DB_NAME = "greentui.db"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def resolve_workspace(runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the workspace folder, creating it; fail clearly if it cannot be written."""
    raw = runs_dir or os.environ.get("GREENTUI_HOME") or "runs"
    path = Path(raw).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create the runs dir {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise GreentuiError(f"the runs dir {path} is not writable; pass --runs-dir DIR or set GREENTUI_HOME")
    return path


def db_path(workspace: Path) -> Path:
    return workspace / DB_NAME


def run_dir(workspace: Path, run_id: int) -> Path:
    """Folder of one run: config, events.jsonl, log, lm-eval JSON, pruned model, adapter."""
    return workspace / f"run-{run_id:05d}"


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 1.5) -> bool:
    """True when huggingface.co resolves and accepts a TCP connection within ``timeout`` seconds.

    Checked once per process: offline machines otherwise spend ~35 s in DNS retries inside
    ``datasets``/``huggingface_hub`` before failing.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("//")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def configure_hf_environment(workspace: Path | None = None) -> bool:
    """Set HF offline variables when the hub is unreachable; keep the datasets cache in the workspace.

    Returns whether the hub is reachable. Call before importing transformers/datasets/lm_eval.
    """
    online = hub_reachable()
    if not online:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if workspace is not None:
        os.environ.setdefault("HF_DATASETS_CACHE", str(workspace / ".cache" / "datasets"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return online
