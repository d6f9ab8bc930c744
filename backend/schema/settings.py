"""The machinery behind the run schema: a setting declared once becomes a CLI option, a form field,
a parser and a validation rule.

The settings themselves are declared in :mod:`backend.schema.runconfig` (read its docstring to add one).
This module only knows how to turn one :class:`Setting` into each of its renderings:

* ``add_argument(parser, setting)`` — an argparse option (``greentui run/queue``, ``greentui prune``);
* ``Setting.from_text`` / ``Setting.to_text`` — the text a form ``Input`` shows and what it parses to;
* ``Setting.problem(value, cfg)`` — the validation rule, as a reason string or ``None``;
* :class:`SettingError` — a refused value *with the field it belongs to*, so the form can put the reason
  under that field and the CLI can print ``--flag: reason``.

Standard library only: the UI imports it (never torch or transformers).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable

from backend.errors import GreentuiError

#: How a setting is edited in the New-run form.
WIDGETS = ("text", "model", "select", "checkbox", "tasks")

Parser = Callable[[str], Any]
Check = Callable[[Any, Any], "str | None"]  # (value, whole config) -> reason, or None when fine


class SettingError(GreentuiError):
    """A value refused for one setting; ``field`` names it (``model``, ``prune_ratio``, …).

    The message is the CLI's one line (``--prune-ratio: ratio must be …``); ``reason`` is the part the
    form shows under the field.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{flag_of(field)}: {reason}")


# ---------------------------------------------------------------------------------- text parsers
# Each takes the text a user typed (CLI or form) and returns the value, or raises ValueError whose
# message is shown as is.

def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number") from None


def parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number") from None


def parse_ratio(text: str) -> float:
    """0.25, or a fraction like 2/7 (the study's ratio). Range and NaN are validation's job."""
    text = text.strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a ratio (e.g. 0.25 or 2/7)") from None


def parse_str(text: str) -> str:
    return text.strip()


def parse_list(text: str) -> list[str]:
    """A comma or space separated list."""
    return [t for t in re.split(r"[,\s]+", text.strip()) if t]


_PARAMS = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgGtT]?)\s*$")
_PARAMS_UNIT = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_params(text: str) -> int:
    """'6.4B', '350M', '1200000' -> a parameter count."""
    m = _PARAMS.match(str(text))
    if not m:
        raise GreentuiError(f"{text!r} is not a parameter count (e.g. 6.4B, 350M or 1200000)")
    value = float(m.group(1)) * _PARAMS_UNIT[m.group(2).lower()]
    if not value >= 1:
        raise GreentuiError(f"target parameter count must be positive, got {text!r}")
    return int(round(value))


FRACTIONS = ((1, 7), (2, 7), (3, 7), (1, 4), (1, 2), (3, 4), (1, 3), (2, 3))


def ratio_text(value: float | None) -> str:
    """2/7 for 0.2857…, otherwise 3 significant digits; empty for None."""
    if value is None:
        return ""
    for num, den in FRACTIONS:
        if abs(value - num / den) < 1e-6:
            return f"{num}/{den}"
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------- the setting

@dataclass(frozen=True)
class Setting:
    """One run setting: everything the CLI, the form and validation need to know about it."""

    name: str                    # the RunConfig field
    default: Any
    label: str                   # the form's label, and how messages in the UI name the field
    help: str                    # one line: CLI --help and the form's placeholder/tooltip
    group: str                   # CLI argument group and form section
    type: str = "str"            # int | float | ratio | str | bool | list
    flag: str = ""               # CLI flag ("--prune-ratio"); "" = positional argument
    aliases: tuple[str, ...] = ()
    widget: str = "text"         # one of WIDGETS
    choices: tuple[str, ...] = ()  # the form's options (select, tasks); validation decides what is valid
    optional: bool = False       # None is a value: an empty field / an absent flag
    invert: bool = False         # checkbox shows ``not value`` (no_prune is the "prune" box)
    parse: Parser | None = None  # text → value (default: by ``type``)
    format: Callable[[Any], str] | None = None  # value → the form's text (default: str / ratio_text)
    check: Check | None = None   # validation rule
    when: Callable[[Any], bool] | None = None  # validate only when this holds (e.g. pruning is on)
    unset_by: str | None = None  # CLI: when that setting is given and this one is not, this is None
    repeatable: bool = False     # CLI: the flag may be given several times (a list); the form splits text
    essential: bool = False      # the New-run form shows it at once; the others wait in their group's fold,
    #                              built when first opened (the form opens in < 0.5 s; issue #12)

    # ------------------------------------------------------------------ text in and out
    def from_text(self, text: str) -> Any:
        """What ``text`` (form field or CLI argument) means; ValueError with a reason otherwise."""
        if not text.strip() and self.optional:
            return None
        if self.parse is not None:
            return self.parse(text)
        return {"int": parse_int, "float": parse_float, "ratio": parse_ratio, "list": parse_list}.get(
            self.type, parse_str)(text)

    def to_text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.format is not None:
            return self.format(value)
        if self.type == "ratio":
            return ratio_text(value)
        if self.type == "float":
            return f"{value:g}"
        if isinstance(value, (list, tuple)):
            return ",".join(map(str, value))
        return str(value)

    # ------------------------------------------------------------------ validation
    def problem(self, value: Any, cfg: Any) -> str | None:
        """The reason ``value`` is refused in ``cfg``, or None.

        A number that is not finite (``nan``, ``inf``) is refused for every numeric setting that its own
        check let through: comparisons with NaN are all false, so ``at_least(0)`` would let it through, and a
        NaN stored in a run's JSON config makes SQLite's JSON functions fail on the whole table."""
        if self.when is not None and not self.when(cfg):
            return None
        reason = self.check(value, cfg) if self.check is not None else None
        if not reason and self.type in ("float", "ratio") and isinstance(value, float) and not math.isfinite(value):
            reason = f"must be a finite number (got {value})"
        return reason


def setting(default: Any, *, label: str, help: str, group: str, **kw: Any) -> Any:
    """A RunConfig field that is a run setting (see backend.schema.runconfig for how to add one)."""
    meta = {"setting": dict(default=default, label=label, help=help, group=group, **kw)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings of a dataclass declared with :func:`setting`, in declaration order."""
    out = []
    for f in fields(cls):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        spec = dict(spec)
        spec.setdefault("type", _type_of(f))
        spec.setdefault("optional", "None" in str(f.type))
        if "flag" not in spec:
            spec["flag"] = "--" + f.name.replace("_", "-")
        s = Setting(name=f.name, **spec)
        if s.widget not in WIDGETS:
            raise ValueError(f"setting {s.name}: unknown widget {s.widget!r}; one of {', '.join(WIDGETS)}")
        if s.widget == "select" and not s.choices:
            raise ValueError(f"setting {s.name}: a select needs choices")
        out.append(s)
    return tuple(out)


def _type_of(f: Field) -> str:
    base = str(f.type).split("|")[0].strip()
    if base.startswith("list"):
        return "list"
    return base if base in ("int", "float", "bool", "str") else "str"


_FLAGS: dict[str, str] = {}


def register_flags(settings: tuple[Setting, ...]) -> None:
    """Remember each setting's CLI flag, so an error names ``--ignore-first`` and not a field."""
    for s in settings:
        _FLAGS[s.name] = s.flag or s.name


def flag_of(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


# ---------------------------------------------------------------------------------- argparse

def argtype(parse: Parser, name: str = "value") -> Callable[[str], Any]:
    """An argparse ``type=`` from a text parser: its ValueError becomes argparse's one-line error."""
    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = name  # argparse names the type in its own messages
    return convert


def add_argument(parser: Any, s: Setting, *, flag: str | None = None, default: Any = argparse.SUPPRESS,
                 help: str | None = None, dest: str | None = None) -> None:
    """Add ``s`` to an argparse parser or group. By default an absent option leaves no attribute
    (``SUPPRESS``), so :func:`values_from_args` knows what the user gave. ``flag``/``dest``/``default``
    let a command that is not a run (``prune``, ``plan``) offer the setting under its own name."""
    text = (help or s.help).replace("%", "%%")  # argparse %-formats help strings
    aliases = s.aliases if flag is None else ()  # a command that renames the flag keeps only its name
    flag = s.flag if flag is None else flag
    if s.type == "bool":
        # a flag switches the setting away from its default (--no-prune, --no-energy)
        action = "store_false" if s.default else "store_true"
        parser.add_argument(flag, *aliases, dest=dest or s.name, action=action, default=default, help=text)
        return
    if s.default not in (None, "", []) and help is None:
        text = f"{text} (default {s.to_text(s.default)})"
    if s.choices and s.widget == "select":
        text = f"{text}; one of {', '.join(s.choices)}"

    if s.repeatable:  # --slurm-arg A --slurm-arg B: one item per flag, kept as typed
        parser.add_argument(flag, *aliases, dest=dest or s.name, action="append", default=default, help=text,
                            metavar="VALUE")
        return

    convert = argtype(s.from_text, s.type)
    if not flag:
        parser.add_argument(s.name, type=convert, help=text)
    else:
        parser.add_argument(flag, *aliases, dest=dest or s.name, type=convert, default=default, help=text,
                            metavar={"int": "N", "float": "X", "ratio": "RATIO"}.get(s.type, s.name.upper()))


def values_from_args(args: argparse.Namespace, settings: tuple[Setting, ...]) -> dict[str, Any]:
    """The settings the user gave on the command line (name → value); the others keep defaults."""
    given = {s.name: getattr(args, s.name) for s in settings if hasattr(args, s.name)}
    for s in settings:
        if s.unset_by and s.unset_by in given and s.name not in given:
            given[s.name] = None
    return given


def from_toml(s: Setting, raw: Any) -> Any:
    """A TOML value (a study file's [run] or [grid], greentui.toml's [energy] and [slurm]) → the
    setting's value: text goes through the flag's own parser, so a file accepts what ``--flag`` does;
    a number for a text setting is read as its text (``repeats = 5``), a list for a setting with a
    parser as its comma-separated text (``efficiency_batches = [8, 1]`` → [1, 8]). ValueError with
    the reason otherwise. The setting's rule (``check``) is the caller's next step."""
    if isinstance(raw, str):
        if s.type == "bool":
            raise ValueError(f"must be true or false (got {raw!r})")
        return s.from_text(raw)
    if s.type == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"must be true or false (got {raw!r})")
        return raw
    if isinstance(raw, bool):
        raise ValueError(f"must be a {_type_word(s)}, not {str(raw).lower()}")
    if s.type == "int":
        if not isinstance(raw, int):
            raise ValueError(f"must be a whole number (got {raw!r})")
        return raw
    if s.type in ("float", "ratio"):
        if not isinstance(raw, (int, float)) or (isinstance(raw, float) and math.isnan(raw)):
            raise ValueError(f"must be a number (got {raw!r})")
        return float(raw)
    if s.type == "list":
        if not isinstance(raw, list) or any(isinstance(x, (list, dict)) for x in raw):
            raise ValueError(f"must be a list of values or a text (got {raw!r})")
        if s.parse is not None and not s.repeatable:  # a repeatable flag's items are whole values each
            return s.from_text(",".join(str(x) for x in raw))
        items = [x if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x) for x in raw]
        if s.default and isinstance(s.default, list) and all(isinstance(d, str) for d in s.default):
            items = [str(x) for x in items]
        return items
    if s.type == "str" and isinstance(raw, (int, float)):
        return s.from_text(str(raw))
    raise ValueError(f"must be a text (got {raw!r})")


def _type_word(s: Setting) -> str:
    return {"int": "whole number", "float": "number", "ratio": "number or fraction like 2/7",
            "list": "list", "str": "text"}.get(s.type, "value")


# ---------------------------------------------------------------------------------- common rules

def at_least(n: float, what: str = "must be") -> Check:
    """A check: the value is None (when optional) or >= n."""
    def check(value: Any, cfg: Any) -> str | None:
        if value is not None and value < n:
            return f"{what} {n:g} or more"
        return None
    return check


def at_most(n: float, what: str = "must be") -> Check:
    """A check: the value is None (when optional) or <= n."""
    def check(value: Any, cfg: Any) -> str | None:
        if value is not None and value > n:
            return f"{what} {n:g} or less"
        return None
    return check


def in_range(low: float, high: float, what: str, *, high_open: bool = False) -> Check:
    """A check: ``low <= value <= high`` (``< high`` with ``high_open``); None passes (optional)."""
    def check(value: Any, cfg: Any) -> str | None:
        if value is None:
            return None
        if value < low or value > high or (high_open and value == high):
            top = f"below {_num(high)}" if high_open else f"at most {_num(high)}"
            return f"{what} must be {_num(low)} or more and {top} (got {_num(value)})"
        return None
    return check


def _num(x: float) -> str:
    """4294967295 as it is, 0.05 as 0.05 (``:g`` would write 4.29497e+09)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def all_of(*checks: Check) -> Check:
    """A check that applies ``checks`` in order and reports the first reason."""
    def check(value: Any, cfg: Any) -> str | None:
        for c in checks:
            reason = c(value, cfg)
            if reason:
                return reason
        return None
    return check


def positive(what: str) -> Check:
    def check(value: Any, cfg: Any) -> str | None:
        if value is not None and not (isinstance(value, (int, float)) and value > 0 and not math.isnan(value)):
            return f"{what} must be positive"
        return None
    return check


def one_of(options: tuple[str, ...], what: str) -> Check:
    def check(value: Any, cfg: Any) -> str | None:
        if value not in options:
            return f"unknown {what} {value!r}; one of {', '.join(options)}"
        return None
    return check


def fraction_strictly_between_0_and_1(value: Any, cfg: Any) -> str | None:
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0 < value < 1:
        return f"ratio must be a number strictly between 0 and 1 (got {value})"
    return None


__all__ = ["Setting", "SettingError", "WIDGETS", "add_argument", "all_of", "argtype", "at_least", "at_most",
           "flag_of", "in_range", "one_of",
           "parse_float", "parse_int", "parse_list", "parse_ratio", "positive", "ratio_text", "register_flags",
           "setting", "settings_of", "values_from_args"]
