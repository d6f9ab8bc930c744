"""Where an export may be written, and writing it so that a failure leaves nothing half-written.

Why: ``greentui export --format csv --out WORKSPACE/greentui.db`` wrote CSV over the store and every
run of the workspace was gone. An export never writes over a store (the workspace's ``greentui.db``
with its ``-wal``/``-shm``/``-journal``, or any other SQLite database), nor into a run folder (its
files are the run's record); an existing file is replaced only with ``--force``. Paths are compared
after resolving symlinks and by inode, so a link or a second name of the store is refused too.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from backend.errors import GreentuiError
from backend.workspace import db_path

SQLITE_MAGIC = b"SQLite format 3\x00"
_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")
_RUN_FOLDER = re.compile(r"run-\d+")


def check_export_target(out: Path, workspace: Path, *, force: bool = False) -> Path:
    """The resolved path ``out`` may be written to, or a one-line GreentuiError saying why not."""
    target = out.expanduser().resolve()
    if target.is_dir():
        raise GreentuiError(f"--out {out}: is a folder; give a file name")
    store = db_path(workspace).resolve()
    for suffix in _STORE_SUFFIXES:
        guarded = Path(f"{store}{suffix}")
        if target == guarded or (target.exists() and guarded.exists() and os.path.samefile(target, guarded)):
            raise GreentuiError(f"--out {out}: is the workspace's store{' ' + suffix[1:] if suffix else ''} "
                                "file; an export never writes over it")
    ws = workspace.resolve()
    if target.is_relative_to(ws):
        inside = target.relative_to(ws).parts
        if len(inside) > 1 and _RUN_FOLDER.fullmatch(inside[0]):
            raise GreentuiError(f"--out {out}: is inside the run folder {inside[0]}, which holds that run's "
                                "record; write the export elsewhere")
    if target.exists():
        if _is_sqlite(target):
            raise GreentuiError(f"--out {out}: is an SQLite database; an export never writes over one")
        if not force:
            raise GreentuiError(f"--out {out}: exists; pass --force to replace it")
    return target


def write_export(target: Path, text: str) -> None:
    """Write ``text`` to a new file beside ``target`` and rename it over: a full disk or a kill
    leaves the old file (or none), never half an export. The new file gets the usual permissions
    (the umask's, or the replaced file's), not a temporary file's private ones."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GreentuiError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False
