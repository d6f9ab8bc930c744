"""The options of ``greentui run`` and ``greentui queue``, generated from the run schema.

Nothing about a setting is written here: ``backend.schema.runconfig.RunConfig`` declares each one once.
"""

from __future__ import annotations

import argparse

from backend.schema.runconfig import GROUP_NOTES, GROUPS, SETTINGS, RunConfig
from backend.schema.settings import add_argument, values_from_args
from backend.service.runs import apply_workspace_defaults  # noqa: F401  (the queue's workspace defaults live there)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every run setting as an option, in its group (the model is the positional argument)."""
    groups = {name: (p if name == "model" else p.add_argument_group(name, GROUP_NOTES.get(name)))
              for name in GROUPS}
    for s in SETTINGS:
        add_argument(groups[s.group], s)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated config the command line describes (``SettingError`` names a refused option)."""
    return RunConfig(**values_from_args(args, SETTINGS)).validate()
