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

from backend.errors import GreentuiError

DB_NAME = "greentui.db"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
#: The folder that holds the ``backend`` package: the working directory of every process greentui
#: starts (``python -m backend ...``), so a source checkout runs its own code, not an installed copy.
CODE_ROOT = Path(__file__).resolve().parent.parent


def workspace_path(runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the workspace is (``--runs-dir``, else $GREENTUI_HOME, else ./runs), without creating it:
    what a command reads before it may record anything (the workspace's ``greentui.toml``)."""
    raw = runs_dir or os.environ.get("GREENTUI_HOME") or "runs"
    if "\x00" in str(raw):
        raise GreentuiError("the runs dir contains a NUL character")
    return Path(raw).expanduser().resolve()


def resolve_workspace(runs_dir: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """Return the workspace folder, creating it; fail clearly if it cannot be written.

    ``create=False`` is for the commands that only read (``ls``, ``show``, ``export``, ``doctor``):
    a workspace that does not exist yet (a typo in ``--runs-dir``) is reported, never created, and
    neither is its store.
    """
    path = workspace_path(runs_dir)
    if not create:
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise GreentuiError(f"no greentui workspace at {path}: it {what} (check --runs-dir or "
                                "GREENTUI_HOME; commands that record runs create it)")
        if not (path / DB_NAME).exists():
            raise GreentuiError(f"no greentui workspace at {path}: it has no {DB_NAME} (check --runs-dir or "
                                "GREENTUI_HOME; commands that record runs create it)")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create the runs dir {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise GreentuiError(f"the runs dir {path} is not writable; pass --runs-dir DIR or set GREENTUI_HOME")
    reserve_space(path)
    return path


def db_path(workspace: Path) -> Path:
    return workspace / DB_NAME


def run_dir(workspace: Path, run_id: int) -> Path:
    """Folder of one run: config, events.jsonl, log, lm-eval JSON, pruned model, adapter."""
    return workspace / f"run-{run_id:05d}"


def ensure_real_folder(folder: Path) -> Path:
    """Create ``folder`` (a run folder) or accept it when it is a real directory; refuse a symlink.

    Why: a link planted where a run's folder will be (``run-00007 -> /somewhere``) made the run write
    its config, events, pruned model and lm-eval output into the link's target. greentui writes only
    into a directory, never through a link (checked on the folder itself, after creating it too).
    """
    if folder.is_symlink():
        raise GreentuiError(f"the run folder {folder} is a symbolic link (to {os.readlink(folder)}); greentui "
                            "writes only into a folder it created — remove the link")
    try:
        folder.mkdir(exist_ok=True)
    except FileExistsError:
        raise GreentuiError(f"the run folder {folder} exists and is not a folder; move it aside") from None
    except OSError as exc:
        raise GreentuiError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from exc
    if folder.is_symlink() or not folder.is_dir():
        raise GreentuiError(f"the run folder {folder} is not a real folder; move it aside")
    return folder


def ensure_run_dir(workspace: Path, run_id: int) -> Path:
    """The run's folder, created or checked by ``ensure_real_folder``."""
    return ensure_real_folder(run_dir(workspace, run_id))


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


RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 2 * 2**20


def reserve_space(workspace: Path) -> None:
    """Keep ``RESERVE_BYTES`` of disk in the workspace (a file of real blocks) for the error path.

    A run that fills the disk must still be recorded as failed; SQLite needs a few pages for that.
    ``release_space`` frees the reserve when a write of the error path hits a full disk. Best
    effort: a reserve that cannot be made is made at the next run.
    """
    path = workspace / RESERVE_NAME
    try:
        if path.exists() and path.stat().st_size >= RESERVE_BYTES:
            return
        with path.open("wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        try:
            path.unlink()
        except OSError:
            pass


def release_space(workspace: Path) -> None:
    try:
        (workspace / RESERVE_NAME).unlink()
    except OSError:
        pass
