"""Workspace defaults from ``greentui.toml`` in the workspace folder (optional), and their schema.

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
    [runner]
    cpu_slots = 2         # CPU runs at once (1 to 64)
    [energy]              # the energy settings of runs queued here (a flag or the form wins)
    repeats = "auto"
    ci_target = 0.02
    max_repeats = 20
    [keys]                # the workbench's keys, by binding id (? lists them)
    quit = "ctrl+q,q"

The file's schema is declared once, in ``_builtin_tables`` (plus a table for each executor a plugin
adds, named after it, whose keys that executor checks): a key that is a run setting (``slurm.partition``,
``slurm.gpus``, ``slurm.time_limit``) is the run schema's setting, checked by its own rule; the others
say their type and bound here. ``load_workspace_config`` checks the whole file when it is read, so a
bad one is refused in one line naming the file and the key (invalid UTF-8, a syntax error, nesting
too deep, an unknown table such as a typo'd ``[slrum]``, an unknown key, a wrong type, a value out of
bounds) by every command that reads it, before anything is queued. Standard library only.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from backend.errors import GreentuiError

CONFIG_NAME = "greentui.toml"
#: A workspace config is a few lines; a bigger file is not one (and would be parsed whole).
MAX_BYTES = 1 * 2**20
#: ``[runner] cpu_slots`` and ``greentui worker --cpu-slots``: each slot runs a whole model on the
#: same cores, so more slots than a large server has cores only splits the same CPU time finer.
MAX_CPU_SLOTS = 64

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# ---------------------------------------------------------------------------------- the schema
@dataclass(frozen=True)
class Key:
    """One key of a table: what its value must be (``kind`` names it in messages) and a rule."""

    kind: str                                   # "text", "whole number", "table"…
    accepts: Callable[[Any], bool]              # the type test
    check: Callable[[Any], str | None] | None = None  # the value's rule: a reason, or None
    help: str = ""


@dataclass(frozen=True)
class Table:
    """A table: its declared keys, or (``values``) any key whose value ``values`` accepts."""

    keys: dict[str, Key | "Table"]
    help: str = ""
    values: Key | None = None  # free keys (sbatch options, binding ids): each value checked by this


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool)


def run_setting(name: str, executor: str = "local") -> Key:
    """A key that is the run setting ``name``, of any type: the TOML value is read as a study file
    reads it (``settings.from_toml``: text through the flag's own parser, ``repeats = 5`` or ``"auto"``,
    ``efficiency_batches = [1, 8]``) and checked by the setting's rule for a run of ``executor``, so a
    value the file accepts is one ``--flag`` accepts, refused in the flag's words."""
    from backend.schema.runconfig import SETTING, RunConfig
    from backend.schema.settings import from_toml

    s = SETTING[name]

    def check(value: Any) -> str | None:
        try:
            parsed = from_toml(s, value)
        except ValueError as exc:
            return str(exc)
        return s.check(parsed, RunConfig(model="(workspace)", executor=executor)) if s.check else None
    kind = {"int": "whole number", "float": "number", "ratio": "number", "list": "list"}.get(s.type, "string")
    return Key(kind, lambda v: _scalar(v) or isinstance(v, list), check, s.help)


def run_setting_value(name: str, value: Any) -> Any:
    """The TOML ``value`` of run setting ``name`` as the run schema reads it (already checked)."""
    from backend.schema.runconfig import SETTING
    from backend.schema.settings import from_toml
    return from_toml(SETTING[name], value)


def energy_setting_names() -> tuple[str, ...]:
    """The run schema's energy group: the keys of ``[energy]``."""
    from backend.schema.runconfig import SETTINGS
    return tuple(s.name for s in SETTINGS if s.group == "energy")


def _cpu_slots(value: int) -> str | None:
    if not 1 <= value <= MAX_CPU_SLOTS:
        return (f"must be 1 to {MAX_CPU_SLOTS}: each slot runs a whole model on the same cores, so more slots "
                "than cores only share them finer")
    return None


def _tables() -> dict[str, Table]:
    tables = _builtin_tables()
    from backend.schema.catalog import executor_names
    for name in executor_names():  # an executor from a plugin reads (and checks) a table of its own name
        if name != "local" and name not in tables:
            tables[name] = Table({}, f"the {name} executor's defaults (it checks them)",
                                 values=Key("value", lambda v: True))
    return tables


def _builtin_tables() -> dict[str, Table]:
    return {
        "slurm": Table({
            "partition": run_setting("partition", "slurm"),
            "gpus": run_setting("gpus", "slurm"),
            "time_limit": run_setting("time_limit", "slurm"),
            "args": Table({}, "any sbatch option as KEY = VALUE",
                          values=Key("string or a number (sbatch --KEY=VALUE)", _scalar)),
        }, "defaults of runs queued with --executor slurm"),
        "runner": Table({"cpu_slots": Key("whole number", _whole, _cpu_slots, "CPU runs at once")},
                        "the runners this workspace starts"),
        "keys": Table({}, "the workbench's keys by binding id (the UI checks the ids and key names)",
                      values=Key("string such as \"ctrl+q,q\"", _text)),
        "energy": Table({name: run_setting(name) for name in energy_setting_names()},
                        "defaults of the energy settings of runs queued into this workspace (CLI, form, "
                        "studies); a flag, a form field or a study's [run] wins"),
    }


# ---------------------------------------------------------------------------------- reading
def load_workspace_config(workspace: Path) -> dict[str, Any]:
    """The parsed and checked ``greentui.toml`` of ``workspace`` ({} when there is none); a one-line
    ``GreentuiError`` naming the file (and the key) otherwise."""
    path = Path(workspace) / CONFIG_NAME
    try:
        if not path.exists():
            return {}
        if not path.is_file():
            raise GreentuiError(f"{path}: not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise GreentuiError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise GreentuiError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; a workspace config is a few lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise GreentuiError(f"{path}: not UTF-8 text (line {line}, byte {raw[exc.start:exc.start + 1]!r}); "
                            "TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GreentuiError(f"{path}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise GreentuiError(f"{path}: nested too deeply to be a workspace config") from None
    check_config(data, path)
    return data


def check_config(data: dict[str, Any], where: Path | str = CONFIG_NAME) -> None:
    """Check parsed TOML against ``TABLES``: one-line ``GreentuiError`` naming the first bad key."""
    _check_table(data, Table(_tables()), "", where)  # type: ignore[arg-type]


def _check_table(data: Any, table: Table, prefix: str, where: Path | str) -> None:
    name = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise GreentuiError(f"{where}: [{name}] must be a table, not {_type_name(data)} ({_shown(data)})")
    for key, value in data.items():
        full = prefix + key
        spec = table.keys.get(key)
        if spec is None and table.values is not None:
            spec = table.values
        if spec is None:
            known = sorted(table.keys)
            near = difflib.get_close_matches(key, known, n=1)
            what = "table" if isinstance(value, dict) else "key"
            shown = f"[{full}]" if what == "table" else full
            hint = f"; did you mean {f'[{prefix}{near[0]}]' if what == 'table' else prefix + near[0]}?" if near else ""
            raise GreentuiError(f"{where}: unknown {what} {shown} (known: {', '.join(prefix + k for k in known)})"
                                f"{hint}")
        if isinstance(spec, Table):
            _check_table(value, spec, full + ".", where)
            continue
        if not spec.accepts(value):
            raise GreentuiError(f"{where}: {full} must be {_article(spec.kind)}, not {_type_name(value)} "
                                f"({_shown(value)})")
        reason = spec.check(value) if spec.check else None
        if reason:
            raise GreentuiError(f"{where}: {full} = {_shown(value)}: {reason}")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a whole number", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), _article(type(value).__name__))


def _article(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def slurm_defaults(workspace: Path) -> dict[str, Any]:
    """The ``[slurm]`` table (partition, gpus, time_limit, args), checked; {} when there is none."""
    table = dict(load_workspace_config(workspace).get("slurm", {}))
    for name in ("partition", "gpus", "time_limit"):  # as the run schema reads them (gpus = "2" is 2)
        if name in table:
            table[name] = run_setting_value(name, table[name])
    return table


def runner_defaults(workspace: Path) -> dict[str, Any]:
    """The ``[runner]`` table (cpu_slots), checked; {} when there is none."""
    return load_workspace_config(workspace).get("runner", {})


def energy_defaults(workspace: Path) -> dict[str, Any]:
    """The ``[energy]`` table as run settings (name → the value its flag would give), checked; {} when
    there is none."""
    return {name: run_setting_value(name, value)
            for name, value in load_workspace_config(workspace).get("energy", {}).items()}


def workspace_keymap(workspace: Path) -> dict[str, Any]:
    """The ``[keys]`` table (binding id → keys, e.g. ``quit = "ctrl+q,q"``), every value a string; {} when
    there is none. The UI checks the ids and key names (``greentui.keymap``)."""
    return load_workspace_config(workspace).get("keys", {})


def check_cpu_slots(value: int, flag: str = "--cpu-slots") -> int:
    """The worker's ``--cpu-slots``: the toml key's rule, with the flag's name."""
    reason = _cpu_slots(value)
    if reason:
        raise GreentuiError(f"{flag} {value}: {reason}")
    return value
