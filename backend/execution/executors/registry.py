"""Which executors exist: the built-in ones (local, slurm) and those installed packages add.

A package adds an executor with an entry point of the ``greentui.executors`` group naming an
:class:`~backend.execution.executors.base.Executor` subclass (or an instance, or a function returning
one)::

    [project.entry-points."greentui.executors"]
    k8s = "greentui_k8s:KubernetesExecutor"

It is loaded the first time the registry is asked for the executors, and its name joins the
catalog's ``EXECUTORS`` (what ``--executor`` and the New-run form offer); the catalog lists installed
plugins' names before they are loaded, so a run can be validated without importing them. A plugin
that fails to load does not break the others: asking for it by name says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.errors import GreentuiError
from backend.execution.executors.base import Executor, run_executor
from backend.plugins import load_entry_points
from backend.schema import catalog

ENTRY_POINT_GROUP = catalog.EXECUTOR_ENTRY_POINTS

_REGISTRY: dict[str, Executor] = {}
_BROKEN: dict[str, str] = {}
_loaded = False
_builtins_loaded = False


def register(executor: Executor | type[Executor] | Callable[[], Executor]) -> Executor:
    """Add an executor (an instance, its class or a factory); its name joins the catalog. Returns it."""
    made: Any = executor() if callable(executor) and not isinstance(executor, Executor) else executor
    if not isinstance(made, Executor):
        raise TypeError(f"{executor!r} is not a greentui Executor")
    name = made.name
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"executor name {name!r}: letters, digits, - and _ only")
    _REGISTRY[name] = made
    _BROKEN.pop(name, None)
    if name not in catalog.EXECUTORS:
        catalog.EXECUTORS.append(name)
    if made.settings:
        catalog.EXECUTOR_SETTINGS[name] = tuple(made.settings)
    return made


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from backend.execution.executors.local import LocalExecutor
    from backend.execution.executors.slurm import SlurmExecutor
    register(LocalExecutor)
    register(SlurmExecutor)


def _load() -> None:
    """The built-in executors, then every installed plugin's (once per process). Reading the entry
    points costs ~0.1 s (importlib.metadata): a lookup of a built-in name does not pay it."""
    global _loaded
    _load_builtins()
    if _loaded:
        return
    _loaded = True
    _BROKEN.update(load_entry_points(ENTRY_POINT_GROUP, _REGISTRY, register))


def executors() -> list[Executor]:
    """Every executor that loaded, built-in ones first."""
    _load()
    return list(_REGISTRY.values())


def executor(name: str) -> Executor:
    """The executor called ``name``; a one-line error naming the known ones otherwise."""
    _load_builtins()
    found = _REGISTRY.get(name)
    if found is None:
        _load()
        found = _REGISTRY.get(name)
    if found is not None:
        return found
    if name in _BROKEN:
        raise GreentuiError(f"executor {name!r} could not be loaded ({_BROKEN[name]})")
    raise GreentuiError(f"unknown executor {name!r}; one of {', '.join(_REGISTRY)}")


def executor_of(run: dict[str, Any]) -> Executor:
    """The executor a run asked for: the one its row says executes it, else its config's."""
    return executor(str(run.get("executor") or run_executor(run)))
