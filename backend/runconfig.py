"""THE RUN SCHEMA: every setting of a run, declared once.

``RunConfig`` below is the one place a run setting exists. Each field declared with ``setting(...)``
becomes, with no other edit: an option of ``greentui run`` and ``greentui queue`` (argparse, in its
group, with its help and default), a field of the TUI's New-run form (widget, label, placeholder,
inline error), the text parser both use, a validation rule (``RunConfig.problems()``), and a key of
the run's stored config (``to_dict``/``from_dict``; old runs without it read the default).

How to add a setting (ONE edit, here)
-------------------------------------
Add a field to ``RunConfig`` in the group it belongs to::

    repeats: int = setting(1, label="repeats", help="evaluate each variant N times (energy spread)",
                           group="evaluation", check=at_least(1))

then read ``cfg.repeats`` where the work happens (pipeline, runner). That is all: ``tests/test_schema.py``
checks that the CLI flags and the form's fields stay the same set. Keywords of ``setting()``
(see ``backend.schema.Setting``):

* ``label`` (form label, and how the UI names the field in messages), ``help`` (one line), ``group``
  (one of GROUPS: the CLI argument group and the form section) — required.
* the type comes from the annotation: ``int``, ``float``, ``str``, ``bool``, ``list[str]``; ``X | None``
  makes it optional (an empty form field or an absent flag is None). ``type="ratio"`` accepts 2/7.
* ``flag="--other-name"`` and ``aliases=("--alias",)`` when the flag is not ``--field-name``; a ``bool``
  flag switches away from the default (default False: ``--flag`` sets True; default True: sets False).
* ``widget``: ``text`` (default), ``select`` (give ``choices``), ``checkbox`` (bools; ``invert=True``
  shows ``not value``), ``tasks`` (multi-select), ``model``.
* ``check=`` a function ``(value, cfg) -> reason | None`` (helpers: ``at_least``, ``positive``,
  ``one_of``); ``when=`` a function ``(cfg) -> bool`` that limits the check (e.g. pruning on);
  ``parse=``/``format=`` for text that is not a plain int/float/str.

A refused value raises ``SettingError(field, reason)``: the CLI prints ``--flag: reason``, the form
shows the reason under that field. Pure Python, no torch: the UI imports this module.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .catalog import DEVICES, METHODS, STAGES
from .schema import (Setting, SettingError, at_least, one_of, parse_list, positive, register_flags, setting,
                     settings_of)
from .tasks.registry import STUDY_TASKS

IMPORTANCES = METHODS  # the run setting is called "importance"; the values are the pruning methods
GROUPS = ("model", "pruning", "LoRA recovery", "evaluation", "machine")


# ---------------------------------------------------------------------------------- rules
def _pruning(cfg: "RunConfig") -> bool:
    return not cfg.no_prune


def _lora(cfg: "RunConfig") -> bool:
    return not cfg.no_prune and not cfg.no_lora


def _model(value: str, cfg: "RunConfig") -> str | None:
    return None if str(value).strip() else "choose a model (HF id or local directory)"


def _ratio(value: Any, cfg: "RunConfig") -> str | None:
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0 < value < 1:
        return f"ratio must be a number strictly between 0 and 1 (got {value})"
    return None


def _lora_steps(value: int | None, cfg: "RunConfig") -> str | None:
    if value is not None and cfg.lora_epochs is not None:
        return "give LoRA steps or epochs, not both"
    if value is not None and value < 1:
        return "LoRA steps must be 1 or more"
    return None


def _tasks(value: list[str], cfg: "RunConfig") -> str | None:
    if not value:
        return "choose at least one task"
    unknown = [t for t in value if t not in STUDY_TASKS]
    if unknown:
        return f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(STUDY_TASKS)}"
    return None


def parse_tasks(text: str) -> list[str]:
    """'all', 'study' or a comma/space separated list."""
    text = text.strip()
    if text in ("all", "study"):
        return list(STUDY_TASKS)
    return parse_list(text)


def _tasks_text(value: list[str]) -> str:
    return "all" if list(value) == list(STUDY_TASKS) else ",".join(value)


def _batch_size(value: str, cfg: "RunConfig") -> str | None:
    if value != "auto" and not (str(value).isdigit() and int(value) > 0):
        return "batch size must be 'auto' or a positive integer"
    return None


def _existing_dir(value: str | None, cfg: "RunConfig") -> str | None:
    if value and not Path(value).expanduser().is_dir():
        return f"no such directory: {value}"
    return None


def _existing_file(value: str | None, cfg: "RunConfig") -> str | None:
    if value and not Path(value).expanduser().is_file():
        return f"no such file: {value}"
    return None


def _device(value: str, cfg: "RunConfig") -> str | None:
    if value not in DEVICES and not (str(value).startswith("cuda:") and str(value)[5:].isdigit()):
        return f"device must be one of {', '.join(DEVICES)} or cuda:N"
    return None


def _ppl_limit(text: str) -> int | None:
    from .schema import parse_int
    n = parse_int(text)
    return None if n == 0 else n  # 0 skips perplexity


# ---------------------------------------------------------------------------------- the schema
@dataclass
class RunConfig:
    """Everything that defines a run; defaults reproduce the GreenPruning study."""

    model: str = setting("", label="model", help="HF id, local model directory, or a model already in the "
                         "workspace", group="model", flag="", widget="model", check=_model)
    # pruning (backend.prune)
    no_prune: bool = setting(False, label="prune", help="evaluate the vanilla model only (no pruning)",
                             group="pruning", widget="checkbox", invert=True)
    importance: str = setting("taylor", label="method", help="importance criterion, or layer-drop",
                              group="pruning", aliases=("--method",), widget="select", choices=METHODS,
                              check=one_of(METHODS, "method"), when=_pruning)
    prune_ratio: float = setting(2 / 7, label="prune ratio", help="fraction of parameters to remove, e.g. 2/7 "
                                 "or 0.25", group="pruning", type="ratio", check=_ratio, when=_pruning)
    ignore_first: int = setting(4, label="ignore first", help="leading layers kept whole", group="pruning",
                                check=at_least(0), when=_pruning)
    ignore_last: int = setting(4, label="ignore last", help="trailing layers kept whole", group="pruning",
                               check=at_least(0), when=_pruning)
    round_to: int = setting(8, label="round widths to", help="keep head/channel counts multiples of this",
                            group="pruning", check=at_least(1), when=_pruning)
    calib_samples: int = setting(10, label="calibration samples", help="Taylor importance batches",
                                 group="pruning", check=at_least(1, "need"), when=_pruning)
    calib_seq_len: int = setting(64, label="calibration length", help="tokens per calibration sample",
                                 group="pruning", check=at_least(8, "need"), when=_pruning)
    calib_file: str | None = setting(None, label="calibration file", help="calibration text file; empty = the "
                                     "shipped text", group="pruning", check=_existing_file, when=_pruning)
    # LoRA recovery (backend.finetune)
    no_lora: bool = setting(False, label="LoRA recovery", help="skip LoRA recovery", group="LoRA recovery",
                            widget="checkbox", invert=True)
    lora_r: int = setting(8, label="LoRA r", help="LoRA rank", group="LoRA recovery",
                          check=at_least(1, "LoRA rank must be"), when=_lora)
    lora_alpha: int = setting(16, label="LoRA α", help="LoRA scaling", group="LoRA recovery",
                              check=positive("LoRA alpha"), when=_lora)
    lora_dropout: float = setting(0.05, label="LoRA dropout", help="dropout on the LoRA path",
                                  group="LoRA recovery", check=at_least(0), when=_lora)
    lora_steps: int | None = setting(200, label="LoRA steps", help="optimizer steps; empty when epochs are "
                                     "given", group="LoRA recovery", check=_lora_steps, when=_lora,
                                     unset_by="lora_epochs")
    lora_epochs: float | None = setting(None, label="LoRA epochs", help="passes over the data instead of "
                                        "steps; empty = use steps", group="LoRA recovery",
                                        check=positive("LoRA epochs"), when=_lora)
    lora_lr: float = setting(3e-4, label="LoRA learning rate", help="AdamW peak learning rate",
                             group="LoRA recovery", check=positive("learning rate"), when=_lora)
    lora_batch_size: int = setting(8, label="LoRA batch", help="examples per optimizer step",
                                   group="LoRA recovery", check=at_least(1), when=_lora)
    lora_cutoff_len: int = setting(256, label="LoRA cutoff", help="tokens per training example",
                                   group="LoRA recovery", check=at_least(8), when=_lora)
    lora_data: str | None = setting(None, label="LoRA data", help="alpaca JSONL/text file or HF dataset id; "
                                    "empty = the shipped CC0 instructions", group="LoRA recovery")
    # evaluation (backend.evaluate)
    tasks: list[str] = setting(list(STUDY_TASKS), label="tasks", help="comma-separated task names, or 'all' "
                               "(the study's seven)", group="evaluation", widget="tasks", choices=STUDY_TASKS,
                               parse=parse_tasks, format=_tasks_text, check=_tasks)
    limit: int | None = setting(None, label="limit", help="items per task; empty = the whole split",
                                group="evaluation", check=at_least(1, "limit must be"))
    num_fewshot: int = setting(0, label="few-shot", help="examples in the prompt", group="evaluation",
                               check=at_least(0, "few-shot count must be"))
    batch_size: str = setting("auto", label="eval batch", help="'auto' or an integer", group="evaluation",
                              check=_batch_size)
    data_dir: str | None = setting(None, label="data dir", help="local DIR/<task>.jsonl files (offline); "
                                   "empty = lm-eval's datasets", group="evaluation", check=_existing_dir)
    ppl_limit: int | None = setting(4096, label="perplexity tokens", help="WikiText-2 tokens for perplexity; "
                                    "0 skips", group="evaluation", parse=_ppl_limit,
                                    check=at_least(0, "perplexity token limit must be"))
    # machine and provenance
    device: str = setting("auto", label="device", help="where the run executes (or cuda:N)", group="machine",
                          widget="select", choices=DEVICES, check=_device)
    seed: int = setting(0, label="seed", help="random seed (calibration, LoRA, evaluation)", group="machine")
    country: str = setting("USA", label="country", help="ISO code for CodeCarbon's carbon intensity",
                           group="machine")
    measure_energy: bool = setting(True, label="measure energy", help="the energy meters (CodeCarbon, NVML) around every task; the flag turns them off",
                                   group="machine", flag="--no-energy", widget="checkbox")
    trust_remote_code: bool = setting(False, label="trust remote code", help="allow this model's own Python "
                                      "code (off by default; per model)", group="machine", widget="checkbox")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # ------------------------------------------------------------------ validation
    def problems(self) -> dict[str, str]:
        """Field → reason for every invalid value (the TUI shows them inline, the CLI raises)."""
        bad: dict[str, str] = {}
        for s in SETTINGS:
            reason = s.problem(getattr(self, s.name), self)
            if reason:
                bad[s.name] = reason
        return bad

    def validate(self) -> "RunConfig":
        """Self, or ``SettingError`` naming the first refused setting."""
        bad = self.problems()
        if bad:
            name, reason = next(iter(bad.items()))
            raise SettingError(name, reason)
        return self

    # ------------------------------------------------------------------ what the run does
    def stages(self, kind: str = "experiment") -> list[str]:
        """The pipeline's stages for this config, in order (the pipeline runs them, the UI draws them)."""
        skip = set()
        if kind == "baseline" or self.no_prune:
            skip = {"prune", "lora", "evaluate"}
        elif self.no_lora:
            skip = {"lora"}
        return [s for s in STAGES if s not in skip]

    # ------------------------------------------------------------------ identity
    def baseline_key(self, model_ref: str, device: str) -> str:
        """Vanilla results are reusable across runs that agree on these (tasks are checked apart)."""
        ident = {"model": model_ref, "limit": self.limit, "num_fewshot": self.num_fewshot,
                 "data_dir": self.data_dir, "device": device.split(":")[0], "ppl_limit": self.ppl_limit,
                 "measure_energy": self.measure_energy}
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> str:
        if self.no_prune:
            return "vanilla only"
        lora = "no LoRA" if self.no_lora else f"LoRA r{self.lora_r}/α{self.lora_alpha}"
        return f"{self.importance} {self.prune_ratio:.3g}, ignore {self.ignore_first}/{self.ignore_last}, {lora}"


#: Every run setting, in declaration order (CLI, form and validation iterate this).
SETTINGS: tuple[Setting, ...] = settings_of(RunConfig)
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}
register_flags(SETTINGS)

__all__ = ["DEVICES", "GROUPS", "IMPORTANCES", "RunConfig", "SETTING", "SETTINGS", "STUDY_TASKS", "SettingError",
           "parse_tasks"]
