"""The options of ``greentui run``, ``queue``, ``prune`` and ``plan``, generated from the run schema.

Nothing about a setting is written here: ``backend.schema.runconfig.RunConfig`` declares each one once,
so a setting has one flag name (and the same aliases, e.g. ``--ratio`` for ``--prune-ratio``) on every
command that takes it, and every command checks it with the same rule.
"""

from __future__ import annotations

import argparse

from backend.schema.runconfig import GROUP_NOTES, GROUPS, SETTING, SETTINGS, RunConfig
from backend.schema.settings import add_argument, values_from_args
from backend.service.runs import apply_workspace_defaults  # noqa: F401  (the queue's workspace defaults live there)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every run setting as an option, in its group (the model is the positional argument)."""
    groups = {name: (p if name == "model" else p.add_argument_group(name, GROUP_NOTES.get(name)))
              for name in GROUPS}
    for s in SETTINGS:
        add_argument(groups[s.group], s)


#: The pruning settings ``greentui prune`` and ``greentui plan`` take (``plan`` needs no calibration).
PRUNING_SETTINGS = ("importance", "prune_ratio", "count_rule", "ignore_first", "ignore_last", "round_to",
                    "target_params", "target_ratio")


def add_settings(p: argparse.ArgumentParser, names: tuple[str, ...], group: str | None = None) -> None:
    """Some run settings as options of a command that is not a run (``prune``, ``plan``): the same
    flags, aliases, parsers, help and defaults as ``greentui run``, in an argument group."""
    target = p.add_argument_group(group) if group else p
    for name in names:
        add_argument(target, SETTING[name])


def config_from_args(args: argparse.Namespace, *, workspace_defaults: bool = False) -> RunConfig:
    """The validated config the command line describes (``SettingError`` names a refused option).

    ``workspace_defaults``: a command that records a run (``run``, ``queue``) starts from the
    workspace's ``greentui.toml`` ``[energy]`` table, read before anything is created; a flag wins."""
    base: dict = {}
    if workspace_defaults:
        from backend.service.runs import workspace_run_defaults
        from backend.workspace import workspace_path
        base = workspace_run_defaults(workspace_path(getattr(args, "runs_dir", None)))
    return RunConfig(**{**base, **values_from_args(args, SETTINGS)}).validate()
