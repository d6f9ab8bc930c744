"""A study file: a grid of runs, written in the run schema's own words.

A study is one TOML file (and the same thing in the TUI's New-study form)::

    [study]
    name = "ratios"
    models = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B"]   # HF ids or local folders

    [grid]                 # every key is a run setting; each list is swept (cartesian product)
    importance = ["taylor", "l1"]
    prune_ratio = ["1/7", "2/7"]

    [run]                  # fixed run settings for every cell
    ignore_first = 4
    limit = 100
    tasks = ["arc_easy", "piqa"]

Why the keys are the run schema's settings (``backend.schema.runconfig.SETTINGS``) and nothing else:
one declaration gives the CLI flag, the form field and the study key, so a setting added to the
schema is a study key with no edit here, and a value is parsed and checked by the very rules that
check a run. A value may be written as TOML (``limit = 100``, ``no_lora = true``) or as the text the
CLI takes (``prune_ratio = "2/7"``, ``tasks = "all"``).

Every refusal is a :class:`StudyError` naming the key (``grid.prune_ratio``) and, for a value that
only fails in combination, the cell — raised before anything is queued. Standard library only: the
UI imports this module.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from backend.errors import GreentuiError
from backend.schema.runconfig import SETTING, SETTINGS, RunConfig
from backend.schema.settings import Setting, from_toml, ratio_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Keys of the ``[study]`` table besides the run settings, with what they mean.
STUDY_KEYS = {
    "name": "the study's handle (letters, digits, - _ .)",
    "models": "HF ids or local model folders; every cell runs on each",
    "description": "one line shown with the study",
    "accuracy_floor": "the answer's accuracy floor: a share of the vanilla average accuracy (default 0.95)",
    "array_parallelism": "Slurm: at most this many of the study's array tasks run at once",
}
TABLES = ("study", "grid", "run")
#: Settings that say *where* a cell runs, not *what* it computes: two cells that differ only in these
#: are the same cell (changing the partition does not make a finished cell unfinished).
PLACEMENT = ("executor", "partition", "gpus", "time_limit", "slurm_arg", "device")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_FLOOR = 0.95
MAX_CELLS = 10_000


class StudyError(GreentuiError):
    """A study file refused; ``key`` names where (``grid.prune_ratio``, ``study.models``), ``cell``
    the 1-based cell when the value fails only in that combination. One line."""

    def __init__(self, key: str, reason: str, cell: "Cell | None" = None) -> None:
        self.key, self.reason, self.cell = key, reason, cell
        where = f"{key} (cell {cell.index}: {cell.description})" if cell is not None else key
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a model, the swept values, and the full run config."""

    index: int                      # 1-based, in grid order (models outermost)
    model: str
    swept: dict[str, Any]           # setting name -> this cell's value of each swept setting
    config: RunConfig
    baseline: bool = False          # the vanilla run its model's cells share (no swept values)

    @property
    def label(self) -> str:
        """The swept values as a user writes them, ``taylor 2/7`` (``vanilla`` for a baseline,
        ``pruned`` when nothing is swept): short enough for a table's cell column."""
        if self.baseline:
            return "vanilla"
        if not self.swept:
            return "pruned"
        return " ".join(value_text(SETTING[name], v) for name, v in self.swept.items())

    @property
    def description(self) -> str:
        """``importance=taylor, prune_ratio=2/7``: the swept values with their keys (error messages)."""
        if self.baseline or not self.swept:
            return self.label
        return ", ".join(f"{name}={value_text(SETTING[name], v)}" for name, v in self.swept.items())

    @property
    def key(self) -> str:
        """Identity of what the cell computes (placement settings left out): a finished cell stays
        finished when the file is run again, even on another partition."""
        return cell_key(self.config)


def cell_key(cfg: RunConfig) -> str:
    data = {k: v for k, v in cfg.to_dict().items() if k not in PLACEMENT}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StudySpec:
    """A parsed, checked study file."""

    name: str
    models: list[str]
    grid: dict[str, list[Any]]      # setting -> the values swept, in file order
    run: dict[str, Any]             # setting -> the fixed value
    text: str                       # the file as written (stored with the study)
    description: str = ""
    accuracy_floor: float = DEFAULT_FLOOR
    array_parallelism: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # given on the command line (executor…)
    written: dict[str, str] = field(default_factory=dict)    # setting -> the key as the file spells it
    #: the workspace's greentui.toml defaults ([energy]): under the file's [run], the grid and the flags
    defaults: dict[str, Any] = field(default_factory=dict)

    def base_config(self, model: str) -> RunConfig:
        return RunConfig(**{**self.defaults, **self.run, **self.overrides, "model": model})

    def cells(self) -> list[Cell]:
        """The pruned cells: models × the cartesian product of the grid, in file order."""
        names = list(self.grid)
        out: list[Cell] = []
        for model in self.models:
            for combo in itertools.product(*(self.grid[n] for n in names)):
                swept = dict(zip(names, combo))
                cfg = RunConfig(**{**self.defaults, **self.run, **swept, **self.overrides, "model": model})
                out.append(Cell(len(out) + 1, model, swept, cfg))
        return out

    def check(self) -> list[Cell]:
        """Every cell's config checked by the run schema; the cells, or StudyError naming key and cell."""
        cells = self.cells()
        if len(cells) > MAX_CELLS:
            raise StudyError("grid", f"{len(cells):,} cells; a study holds at most {MAX_CELLS:,}")
        for cell in cells:
            bad = cell.config.problems()
            if bad:
                name, reason = next(iter(bad.items()))
                raise StudyError(self.where(name), reason, cell if self.grid else None)
        return cells

    def where(self, name: str) -> str:
        """The file key a setting's value came from (``grid.x``, ``run.x``, ``--x`` or the default)."""
        if name in self.overrides:
            return SETTING[name].flag or name
        if name in self.grid:
            return f"grid.{self.written.get(name, name)}"
        if name in self.run:
            return f"run.{self.written.get(name, name)}"
        return f"run.{name} (default {value_text(SETTING[name], SETTING[name].default)})"

    def to_toml(self) -> str:
        """The file this spec describes (what the New-study form writes)."""
        return dump(self.name, self.models, self.grid, self.run, description=self.description,
                    accuracy_floor=self.accuracy_floor, array_parallelism=self.array_parallelism)


# ------------------------------------------------------------------------------------- values

def value_text(s: Setting, value: Any) -> str:
    """A value as the CLI and the form write it (2/7, all, true)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if s.type == "ratio" and isinstance(value, (int, float)):
        return ratio_text(value)
    text = s.to_text(value)
    return text if text else "(empty)"


def convert(s: Setting, raw: Any, key: str) -> Any:
    """A TOML value → the setting's value, by the schema's own parser (``settings.from_toml``);
    StudyError naming ``key``."""
    try:
        return from_toml(s, raw)
    except ValueError as exc:
        raise StudyError(key, str(exc)) from None


def _key_names() -> dict[str, str]:
    """Every name a study key may use for a setting → the setting: its field name, its CLI flag and the
    flag's aliases without the dashes (``prune_ratio``, ``prune-ratio``, ``method``), as the CLI
    accepts them."""
    out: dict[str, str] = {}
    for s in SETTINGS:
        for flag in (s.name, s.flag, *s.aliases):
            if flag:
                bare = flag.lstrip("-")
                out[bare] = out[bare.replace("-", "_")] = s.name
    return out


KEY_NAMES = _key_names()


def setting_for(key: str) -> str | None:
    """The setting a study key names (its field name, flag or alias), or None."""
    return KEY_NAMES.get(key)


def _unknown(key: str, name: str, known: list[str]) -> StudyError:
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {near[0]}?" if near else ""
    return StudyError(key, f"unknown key{hint} (a study key is a run setting: see greentui queue --help)")


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise StudyError(name, f"[{name}] must be a table")
    return table


# ------------------------------------------------------------------------------------- parse

def parse(text: str, *, source: str = "study file", overrides: dict[str, Any] | None = None) -> StudySpec:
    """Parse and check a study file's text; StudyError (one line, naming the key) when refused.

    ``overrides`` are run settings given on the command line (``--executor slurm --partition P``):
    they win over the file, as a flag wins over ``greentui.toml``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(source, f"not valid TOML ({exc})") from None
    for table in doc:
        if table not in TABLES:
            near = difflib.get_close_matches(table, TABLES, n=1)
            raise StudyError(table, "unknown table" + (f"; did you mean [{near[0]}]?" if near else "")
                             + " (a study has [study], [grid] and [run])")
    head, grid_raw, run_raw = _table(doc, "study"), _table(doc, "grid"), _table(doc, "run")
    for key in head:
        if key not in STUDY_KEYS:
            if key in SETTING:
                raise StudyError(f"study.{key}", "a run setting goes in [run] (fixed) or [grid] (swept)")
            raise _unknown(f"study.{key}", key, list(STUDY_KEYS))
    name = head.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise StudyError("study.name", "give the study a name of letters, digits, - _ . (at most 64), e.g. "
                         f"\"ratios\" (got {name!r})")
    models = head.get("models")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m.strip() for m in models):
        raise StudyError("study.models", "give one or more models: HF ids or local folders, e.g. "
                         "models = [\"Qwen/Qwen2.5-7B\"]")
    models = [m.strip() for m in models]
    dup = next((m for m in models if models.count(m) > 1), None)
    if dup:
        raise StudyError("study.models", f"{dup} is listed twice")
    floor = head.get("accuracy_floor", DEFAULT_FLOOR)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor <= 1:
        raise StudyError("study.accuracy_floor", f"a share of the vanilla accuracy in (0, 1], e.g. 0.95 (got {floor!r})")
    par = head.get("array_parallelism")
    if par is not None and (isinstance(par, bool) or not isinstance(par, int) or par < 1):
        raise StudyError("study.array_parallelism", f"a whole number of 1 or more (got {par!r})")
    desc = head.get("description", "")
    if not isinstance(desc, str):
        raise StudyError("study.description", "must be a text")

    known = [s.name for s in SETTINGS]
    written: dict[str, str] = {}
    run: dict[str, Any] = {}
    for key, raw in run_raw.items():
        setting = setting_for(key)
        if setting == "model":
            raise StudyError(f"run.{key}", "models are listed in [study] models")
        if setting is None:
            raise _unknown(f"run.{key}", key, known)
        if setting in run:
            raise StudyError(f"run.{key}", f"{setting} is given twice (under two of its names)")
        run[setting] = convert(SETTING[setting], raw, f"run.{key}")
        written[setting] = key
    grid: dict[str, list[Any]] = {}
    for key, raw in grid_raw.items():
        setting = setting_for(key)
        if setting == "model":
            raise StudyError(f"grid.{key}", "models are listed in [study] models (every cell runs on each)")
        if setting is None:
            raise _unknown(f"grid.{key}", key, known)
        if setting in run or setting in grid:
            raise StudyError(f"grid.{key}", "is also given in [run] or under another name; keep one")
        if not isinstance(raw, list) or not raw:
            raise StudyError(f"grid.{key}", "a swept setting is a non-empty list of values, e.g. [\"1/7\", \"2/7\"]")
        values = [convert(SETTING[setting], v, f"grid.{key}[{i + 1}]") for i, v in enumerate(raw)]
        seen: list[Any] = []
        for v in values:
            if v in seen:
                raise StudyError(f"grid.{key}", f"{value_text(SETTING[setting], v)} is listed twice")
            seen.append(v)
        grid[setting] = values
        written[setting] = key
    spec = StudySpec(name=name, models=models, grid=grid, run=run, text=text, description=desc,
                     accuracy_floor=float(floor), array_parallelism=par, overrides=dict(overrides or {}),
                     written=written)
    spec.check()
    return spec


def load(path: str, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and parse a study file; one-line error naming the file when it cannot be read."""
    from pathlib import Path
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise GreentuiError(f"no such study file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GreentuiError(f"cannot read the study file {p}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse(text, source=str(p), overrides=overrides)


# ------------------------------------------------------------------------------------- write

def toml_value(s: Setting | None, value: Any) -> Any:
    """A setting's value as the file writes it: ratios as their fraction text (2/7), others as TOML."""
    if s is not None and s.type == "ratio" and isinstance(value, float):
        text = ratio_text(value)
        return text if "/" in text else value
    return value


def dump(name: str, models: list[str], grid: dict[str, list[Any]], run: dict[str, Any], *,
         description: str = "", accuracy_floor: float = DEFAULT_FLOOR, array_parallelism: int | None = None) -> str:
    """A study file (TOML) from its parts; ``parse(dump(...))`` gives the same study."""
    import tomli_w
    head: dict[str, Any] = {"name": name, "models": list(models)}
    if description:
        head["description"] = description
    if accuracy_floor != DEFAULT_FLOOR:
        head["accuracy_floor"] = accuracy_floor
    if array_parallelism:
        head["array_parallelism"] = array_parallelism
    doc: dict[str, Any] = {"study": head}
    doc["grid"] = {k: [toml_value(SETTING.get(k), v) for v in vs] for k, vs in grid.items()}
    # TOML has no null: an optional setting left empty is written as "" (what the form's empty field means)
    doc["run"] = {k: "" if v is None else toml_value(SETTING.get(k), v) for k, v in run.items()}
    return tomli_w.dumps(doc)


__all__ = ["Cell", "DEFAULT_FLOOR", "PLACEMENT", "STUDY_KEYS", "StudyError", "StudySpec", "cell_key", "convert",
           "dump", "load", "parse", "value_text"]
