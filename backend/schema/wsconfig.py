"""Workspace defaults from ``greentui.toml`` in the workspace folder (optional).

A file beside the database so that everyone who queues into a workspace on a cluster gets the same
partition, account and time limit without typing them. Command-line values win over the file; the
values a run was queued with are stored in its config, so editing the file never changes a queued
run. Example::

    [slurm]
    partition = "gpu"
    gpus = 1
    time_limit = "04:00:00"
    [slurm.args]          # any sbatch option, as --KEY=VALUE
    account = "myproject"
    qos = "normal"
    [keys]                # the workbench's keys, by binding id (? lists them)
    quit = "ctrl+q,q"
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError

CONFIG_NAME = "greentui.toml"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def load_workspace_config(workspace: Path) -> dict[str, Any]:
    """The parsed ``greentui.toml`` of ``workspace`` ({} when there is none); one-line error if bad."""
    path = Path(workspace) / CONFIG_NAME
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GreentuiError(f"{path}: {exc}") from exc


def slurm_defaults(workspace: Path) -> dict[str, Any]:
    """The ``[slurm]`` table (partition, gpus, time_limit, args) with its types checked."""
    table = load_workspace_config(workspace).get("slurm", {})
    where = Path(workspace) / CONFIG_NAME
    if not isinstance(table, dict):
        raise GreentuiError(f"{where}: [slurm] must be a table")
    known = {"partition": str, "gpus": int, "time_limit": str, "args": dict}
    for key, value in table.items():
        if key not in known:
            raise GreentuiError(f"{where}: unknown key slurm.{key} (known: {', '.join(known)})")
        if not isinstance(value, known[key]) or isinstance(value, bool):
            raise GreentuiError(f"{where}: slurm.{key} must be a {known[key].__name__}")
    return table


def workspace_keymap(workspace: Path) -> dict[str, Any]:
    """The ``[keys]`` table (binding id → keys, e.g. ``quit = "ctrl+q,q"``); {} when there is none.

    Only its shape is checked here; the UI checks the ids and key names (``greentui.keymap``)."""
    path = Path(workspace) / CONFIG_NAME
    if not path.exists():
        return {}
    table = load_workspace_config(workspace).get("keys", {})
    if not isinstance(table, dict):
        raise GreentuiError(f"{path}: [keys] must be a table of binding id = \"keys\" (e.g. quit = \"ctrl+q,q\")")
    return table
