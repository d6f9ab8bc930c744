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
(see ``backend.schema.settings.Setting``):

* ``label`` (form label, and how the UI names the field in messages), ``help`` (one line), ``group``
  (one of GROUPS: the CLI argument group and the form section) — required.
* the type comes from the annotation: ``int``, ``float``, ``str``, ``bool``, ``list[str]``; ``X | None``
  makes it optional (an empty form field or an absent flag is None). ``type="ratio"`` accepts 2/7.
* ``flag="--other-name"`` and ``aliases=("--alias",)`` when the flag is not ``--field-name``; a ``bool``
  flag switches away from the default (default False: ``--flag`` sets True; default True: sets False).
* ``widget``: ``text`` (default), ``select`` (give ``choices``), ``checkbox`` (bools; ``invert=True``
  shows ``not value``), ``tasks`` (multi-select), ``model``.
* ``essential=True`` puts the field in the part of the New-run form built when it opens (the study's
  main knobs: model, prune ratio, ignore first/last, LoRA steps, tasks, limit); every other field sits
  in its group's fold, composed the first time the user opens it. Keep this set small: each field
  costs the form's opening time.
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
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.schema.catalog import (
    DEFAULT_RULE,
    DEVICES,
    EXECUTOR_SETTINGS,
    EXECUTORS,
    LEGACY_RULE,
    METHODS,
    RULES,
    STAGES,
    executor_names,
    method_names,
)
from backend.schema.settings import (
    Setting,
    SettingError,
    at_least,
    in_range,
    one_of,
    parse_list,
    positive,
    ratio_text,
    register_flags,
    setting,
    settings_of,
)
from backend.schema.tasks import STUDY_TASKS, data_source

IMPORTANCES = METHODS  # the run setting is called "importance"; the values are the pruning methods
GROUPS = ("model", "pruning", "LoRA recovery", "evaluation", "energy", "machine", "executor")
#: A line under a group's heading (CLI --help and the form), where the group needs one.
GROUP_NOTES = {"executor": "where the run executes; Slurm defaults come from the workspace's greentui.toml"}


#: The study leaves its first and last 4 decoder layers whole (LLM-Pruner's block range).
STUDY_IGNORE = 4


def layers_kept(ignore_first: int, ignore_last: int, num_layers: int) -> tuple[int, int, str | None]:
    """THE rule for the layers kept whole, for a model of ``num_layers`` decoder layers: the pruner, the
    planner (``greentui plan``, the New-run plan panel), the form's field check and ``run``/``queue``
    all call this one function, so each says the same thing.

    * The study's 4 (the default) on a model too shallow for it is clamped to ``min(4, (layers - 2) // 2)``,
      so that at least two layers are pruned; the note returned says so, and every caller shows it.
    * Any other value is honoured as given; one that leaves no layer to prune is refused
      (``SettingError`` naming the setting), as is a model whose config.json has no decoder layer.

    Returns (ignore_first, ignore_last, note or None).
    """
    if num_layers < 1:
        raise SettingError("model", f"config.json says the model has {num_layers} decoder layers: there is "
                                    "nothing to prune")
    note = None
    first, last = ignore_first, ignore_last
    if STUDY_IGNORE in (first, last):
        cap = max(0, min(STUDY_IGNORE, (num_layers - 2) // 2))
        if cap < STUDY_IGNORE:
            first = cap if first == STUDY_IGNORE else first
            last = cap if last == STUDY_IGNORE else last
            note = (f"the model has {num_layers} layers: the study's ignore first/last of {STUDY_IGNORE} is "
                    f"clamped to {cap} so that layers are left to prune")
    if first + last >= num_layers:
        field = "ignore_first" if first >= last else "ignore_last"
        raise SettingError(field, f"ignore first {first} + ignore last {last} leave none of the model's "
                                  f"{num_layers} layers: nothing would be left to prune")
    return first, last, note


# ---------------------------------------------------------------------------------- rules
def _pruning(cfg: "RunConfig") -> bool:
    return not cfg.no_prune


def _lora(cfg: "RunConfig") -> bool:
    return not cfg.no_prune and not cfg.no_lora


def _target_params(value: Any, cfg: "RunConfig") -> str | None:
    if value in (None, ""):
        return None
    if cfg.target_ratio is not None:
        return "give a target size or a target share, not both"
    from backend.schema.settings import parse_params
    try:
        parse_params(str(value))
    except GreentuiError as exc:
        return str(exc)
    return None


def _target_ratio(value: Any, cfg: "RunConfig") -> str | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0 < value < 1:
        return f"target share must be strictly between 0 and 1 (the share of parameters to keep), got {value}"
    return None


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


#: How much of a text file its check reads (enough to tell text from binary, not the whole corpus).
TEXT_SAMPLE_BYTES = 64 * 1024


def _text_file(value: str | None, cfg: "RunConfig") -> str | None:
    """A file that exists, is a regular file (not /dev/zero or a FIFO), holds something, and is UTF-8
    text: what the calibration reads, checked on its first 64 KiB before anything is queued."""
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        return f"no such file: {value}"
    if not path.is_file():
        return f"{value} is not a regular file"
    try:
        with path.open("rb") as fh:
            sample = fh.read(TEXT_SAMPLE_BYTES)
    except OSError as exc:
        return f"cannot read {value}: {exc.strerror or exc}"
    import codecs
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < TEXT_SAMPLE_BYTES)
    except UnicodeDecodeError as exc:
        return f"{value} is not UTF-8 text (byte {exc.start} is {sample[exc.start:exc.start + 1]!r})"
    if "\x00" in text:
        return f"{value} is not text (it holds NUL bytes)"
    if not text.strip():
        return f"{value} is empty" if not sample else f"{value} holds only white space"
    return None


def _device(value: str, cfg: "RunConfig") -> str | None:
    if value not in DEVICES and not (str(value).startswith("cuda:") and str(value)[5:].isdigit()):
        return f"device must be one of {', '.join(DEVICES)} or cuda:N"
    return None


def parse_batches(text: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]; '' → [] (no efficiency stage). ValueError naming the item."""
    out: list[int] = []
    for item in parse_list(text):
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a batch size (e.g. 1,8,32)")
        out.append(int(item))
    return sorted(set(out))


#: How vanilla and pruned energy are compared (issue #18). ``paired``: both measured in this run, per
#: task, interleaved A B B A with a warm-up before each window; ``blocked``: the same pairs in
#: alternating blocks (one model on the device at a time) with a drift probe at each block edge — what
#: ``paired`` becomes when the two models do not fit together; ``sequential``: the study's design (each
#: model measured once, in sequence: the vanilla energy is its baseline run's).
ENERGY_DESIGNS = ("paired", "blocked", "sequential")
AUTO = "auto"


def parse_repeats(text: str) -> int | str:
    """'auto' (repeat until the ratio's CI is narrow, or a cap) or a whole number."""
    text = text.strip().lower()
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither 'auto' nor a whole number") from None


def _repeats(value: Any, cfg: "RunConfig") -> str | None:
    if value == AUTO:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return "repeats must be 'auto' or a whole number of 1 or more"
    if value > 100:
        return "repeats above 100 multiply the run's time; use at most 100"
    return None


def _batches(value: Any, cfg: "RunConfig") -> str | None:
    if any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in value or []):
        return "batch sizes must be whole numbers of 1 or more, e.g. 1,8,32"
    return None


def _efficiency_seq_len(value: Any, cfg: "RunConfig") -> str | None:
    if not isinstance(value, int) or value < 8:
        return "sequence length must be 8 tokens or more"
    return None


TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
SLURM_ARG = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*=.+$")
# sbatch options greentui sets itself (logs, job name, signals): a --slurm-arg may not replace them.
RESERVED_SLURM_ARGS = ("output", "error", "job-name", "job_name", "signal", "open-mode", "wrap", "array")


def _importance(value: Any, cfg: "RunConfig") -> str | None:
    names = method_names()  # the registry's, with installed plugins' (greentui.importances)
    return None if value in names else f"unknown method {value!r}; one of {', '.join(names)}"


def _executor(value: Any, cfg: "RunConfig") -> str | None:
    names = executor_names()
    if value not in names:
        return f"unknown executor {value!r}; one of {', '.join(names)}"
    # settings that only another executor reads (the catalog's EXECUTOR_SETTINGS) are refused by name
    mine = EXECUTOR_SETTINGS.get(value, ())
    stray = {name: owner for owner, names_ in EXECUTOR_SETTINGS.items() if owner != value
             for name in names_ if name not in mine and getattr(cfg, name, None)}
    if stray:
        from backend.schema.settings import flag_of
        owners = " or ".join(sorted(set(stray.values())))
        verb = "needs" if len(stray) == 1 else "need"
        return f"{', '.join(flag_of(n) for n in stray)} {verb} --executor {owners}"
    return None


def _gpus(value: Any, cfg: "RunConfig") -> str | None:
    if value is not None and (not isinstance(value, int) or value < 0):
        return f"GPU count must be 0 or more (got {value})"
    return None


def _time_limit(value: Any, cfg: "RunConfig") -> str | None:
    if value is not None and not TIME_LIMIT.match(str(value)):
        return f"time limit must be HH:MM:SS or D-HH:MM:SS (got {value!r})"
    return None


def _partition(value: Any, cfg: "RunConfig") -> str | None:
    if value is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", str(value)):
        return f"not a partition name: {value!r}"
    return None


def _slurm_args(value: Any, cfg: "RunConfig") -> str | None:
    for arg in value or []:
        if not SLURM_ARG.match(str(arg)):
            return f"Slurm option must be KEY=VALUE (got {arg!r})"
        if arg.split("=", 1)[0].lower() in RESERVED_SLURM_ARGS:
            return f"Slurm option {arg.split('=', 1)[0]} is set by greentui itself"
    return None


def _ppl_tokens(value: Any, cfg: "RunConfig") -> str | None:
    if value not in (None, 0) and value < 2:  # 0 (or empty) skips perplexity
        return "perplexity tokens must be 2 or more (0 skips perplexity)"
    return None


COUNTRY = re.compile(r"^[A-Z]{3}$")


def _country(value: Any, cfg: "RunConfig") -> str | None:
    if not COUNTRY.match(str(value)):
        return f"country must be an ISO 3166 alpha-3 code such as USA, FRA or DEU (got {value!r})"
    return None


def _ppl_limit(text: str) -> int | None:
    from backend.schema.settings import parse_int
    n = parse_int(text)
    return None if n == 0 else n  # 0 skips perplexity


# ---------------------------------------------------------------------------------- the schema
@dataclass
class RunConfig:
    """Everything that defines a run; defaults reproduce the GreenPruning study."""

    model: str = setting("", label="model", help="HF id, local model directory, or a model already in the "
                         "workspace", group="model", flag="", widget="model", check=_model, essential=True)
    # pruning (backend.stages.prune)
    no_prune: bool = setting(False, label="prune", help="evaluate the vanilla model only (no pruning)",
                             group="pruning", widget="checkbox", invert=True, essential=True)
    importance: str = setting("taylor", label="method", help="importance criterion, or layer-drop",
                              group="pruning", aliases=("--method",), widget="select", choices=METHODS,
                              check=_importance, when=_pruning, essential=True)
    prune_ratio: float = setting(2 / 7, label="prune ratio", help="fraction of parameters to remove, e.g. 2/7 "
                                 "or 0.25", group="pruning", type="ratio", aliases=("--ratio",), check=_ratio,
                                 when=_pruning, essential=True)
    ignore_first: int = setting(STUDY_IGNORE, label="ignore first", help="leading layers kept whole (the "
                                "study's 4 is clamped on shallow models)", group="pruning", check=at_least(0),
                                when=_pruning, essential=True)
    ignore_last: int = setting(STUDY_IGNORE, label="ignore last", help="trailing layers kept whole (the study's 4 "
                               "is clamped on shallow models)", group="pruning", check=at_least(0), when=_pruning,
                               essential=True)
    round_to: int = setting(8, label="round widths to", help="keep head/channel counts multiples of this",
                            group="pruning", check=at_least(1), when=_pruning)
    calib_samples: int = setting(10, label="calibration samples", help="Taylor importance batches",
                                 group="pruning", check=at_least(1, "need"), when=_pruning)
    calib_seq_len: int = setting(64, label="calibration length", help="tokens per calibration sample",
                                 group="pruning", check=at_least(8, "need"), when=_pruning)
    calib_file: str | None = setting(None, label="calibration file", help="calibration text file; empty = the "
                                     "shipped text", group="pruning", check=_text_file, when=_pruning)
    count_rule: str = setting(DEFAULT_RULE, label="count rule", help="how the ratio becomes head/channel counts: "
                              "torch-pruning (the study's library), llm-pruner (whole kv groups) or param-share",
                              group="pruning", widget="select", choices=RULES, check=one_of(RULES, "count rule"),
                              when=_pruning)
    target_params: str | None = setting(None, label="target size", help="solve the ratio for this whole-model "
                                        "size, e.g. 6.4B or 350M (overrides the ratio); empty = use the ratio",
                                        group="pruning", check=_target_params, when=_pruning)
    target_ratio: float | None = setting(None, label="target share", help="solve the ratio for this share of "
                                         "the original model's parameters, e.g. 0.8; empty = use the ratio",
                                         group="pruning", type="ratio", check=_target_ratio, when=_pruning)
    # LoRA recovery (backend.stages.finetune)
    no_lora: bool = setting(False, label="LoRA recovery", help="skip LoRA recovery", group="LoRA recovery",
                            widget="checkbox", invert=True, essential=True)
    lora_r: int = setting(8, label="LoRA r", help="LoRA rank", group="LoRA recovery",
                          check=at_least(1, "LoRA rank must be"), when=_lora)
    lora_alpha: int = setting(16, label="LoRA α", help="LoRA scaling", group="LoRA recovery",
                              check=positive("LoRA alpha"), when=_lora)
    lora_dropout: float = setting(0.05, label="LoRA dropout", help="dropout on the LoRA path",
                                  group="LoRA recovery", check=in_range(0, 1, "LoRA dropout", high_open=True),
                                  when=_lora)
    lora_steps: int | None = setting(200, label="LoRA steps", help="optimizer steps; empty when epochs are "
                                     "given", group="LoRA recovery", check=_lora_steps, when=_lora,
                                     unset_by="lora_epochs", essential=True)
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
    # evaluation (backend.stages.evaluate)
    tasks: list[str] = setting(list(STUDY_TASKS), label="tasks", help="comma-separated task names, or 'all' "
                               "(the study's seven)", group="evaluation", widget="tasks", choices=STUDY_TASKS,
                               parse=parse_tasks, format=_tasks_text, check=_tasks, essential=True)
    limit: int | None = setting(None, label="limit", help="items per task; empty = the whole split",
                                group="evaluation", check=at_least(1, "limit must be"), essential=True)
    num_fewshot: int = setting(0, label="few-shot", help="examples in the prompt", group="evaluation",
                               check=at_least(0, "few-shot count must be"))
    batch_size: str = setting("auto", label="eval batch", help="'auto' or an integer", group="evaluation",
                              check=_batch_size)
    data_dir: str | None = setting(None, label="data dir", help="local DIR/<task>.jsonl files (offline); "
                                   "empty = the bundled sample offline, else lm-eval's datasets", group="evaluation", check=_existing_dir)
    ppl_limit: int | None = setting(4096, label="perplexity tokens", help="WikiText-2 tokens for perplexity; "
                                    "0 skips", group="evaluation", parse=_ppl_limit,
                                    check=_ppl_tokens)
    # machine and provenance
    device: str = setting("auto", label="device", help="where the run executes (or cuda:N)", group="machine",
                          widget="select", choices=DEVICES, check=_device)
    seed: int = setting(0, label="seed", help="random seed (calibration, LoRA, evaluation)", group="machine",
                       check=in_range(0, 2**32 - 1, "seed"))
    country: str = setting("USA", label="country", help="ISO 3166 alpha-3 code for CodeCarbon's carbon "
                           "intensity", group="machine", check=_country)
    measure_energy: bool = setting(True, label="measure energy", help="the energy meters (CodeCarbon, NVML) around every task; the flag turns them off",
                                   group="machine", flag="--no-energy", widget="checkbox")
    trust_remote_code: bool = setting(False, label="trust remote code", help="allow this model's own Python "
                                      "code (off by default; per model)", group="machine", widget="checkbox")
    # energy you can trust (issue #11)
    energy_design: str = setting("paired", label="energy design", help="paired: vanilla and pruned energy "
                                 "measured in this run, interleaved A B B A, each window warmed up (blocked when "
                                 "both models do not fit); blocked: alternating blocks with a drift probe; "
                                 "sequential: the study's design (each model once, in sequence)", group="energy",
                                 widget="select", choices=ENERGY_DESIGNS,
                                 check=one_of(ENERGY_DESIGNS, "energy design"))
    repeats: int | str = setting(AUTO, label="repeats", help="measured windows per task and model: 'auto' repeats "
                                 "the paired windows until the energy ratio's 95% CI is within the CI target "
                                 "(or a cap); N fixes N (accuracy once)", group="energy", type="str",
                                 parse=parse_repeats, check=_repeats)
    ci_target: float = setting(0.03, label="CI target", help="--repeats auto stops once the energy ratio's 95% "
                               "CI half-width is within this fraction (0.03 = ±3%)", group="energy",
                               check=in_range(0.001, 0.5, "CI target"))
    max_repeats: int = setting(10, label="max repeats", help="--repeats auto: at most this many paired windows "
                               "per task", group="energy", check=in_range(3, 100, "max repeats"))
    repeats_budget_s: float = setting(600.0, label="repeats time budget (s)", help="--repeats auto: stop adding "
                                      "paired windows once the run has spent this many seconds on them",
                                      group="energy", check=in_range(1, 86400, "time budget"))
    energy_sample: int | None = setting(None, label="energy sample", help="requests per measured window (the "
                                        "same first N for both models; Wh scaled to the task); empty = all",
                                        group="energy", check=at_least(1, "energy sample must be"))
    window_s: float = setting(1.0, label="window seconds", help="shortest measured window: the window's "
                              "requests are repeated until it lasts this long", group="energy",
                              check=in_range(0.05, 600, "window seconds"))
    baseline_max_age_days: float = setting(7.0, label="baseline max age (days)", help="reuse a vanilla "
                                           "baseline only when it is younger than this (and comparable)",
                                           group="energy", check=in_range(0, 3650, "baseline age"))
    efficiency_batches: list[int] = setting([], label="efficiency batches", help="efficiency stage: tokens/s "
                                            "and J/token of vanilla and pruned at these batch sizes, e.g. 1,8,32; "
                                            "empty = no stage", group="energy", parse=parse_batches,
                                            check=_batches)
    efficiency_seq_len: int = setting(128, label="efficiency seq len", help="tokens per sequence in the "
                                      "efficiency stage", group="energy", check=_efficiency_seq_len)
    cooldown: bool = setting(False, label="GPU cooldown", help="between measured windows wait until the GPU is "
                             "within 2 °C of its pre-run temperature (at most 60 s; needs NVML)", group="energy",
                             widget="checkbox")
    # where it executes (backend.execution.executors): the runner's machine, or one Slurm job per run
    executor: str = setting("local", label="executor", help="local (this machine's runner) or slurm (one job "
                            "per run, via submitit)", group="executor", widget="select", choices=EXECUTORS,
                            check=_executor)
    partition: str | None = setting(None, label="partition", help="Slurm partition", group="executor",
                                    check=_partition)
    gpus: int | None = setting(None, label="GPUs", help="GPUs for the run", group="executor", check=_gpus)
    time_limit: str | None = setting(None, label="time limit", help="Slurm time limit, HH:MM:SS",
                                     group="executor", check=_time_limit)
    slurm_arg: list[str] = setting([], label="Slurm options", help="any sbatch option as KEY=VALUE (repeatable; "
                                   "space-separated in the form), e.g. account=proj qos=normal",
                                   group="executor", repeatable=True, parse=str.split, format=" ".join,
                                   check=_slurm_args)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """A stored config back; a pruning config recorded before ``count_rule`` existed reads
        ``LEGACY_RULE`` (how it was counted), not today's default."""
        known = {f.name for f in fields(cls)}
        data = dict(data)
        if "count_rule" not in data and "prune_ratio" in data:
            data["count_rule"] = LEGACY_RULE  # runs recorded before the rule existed were counted this way
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

    # ------------------------------------------------------------------ energy protocol (issue #18)
    def paired_energy(self) -> bool:
        """Whether this run measures vanilla and pruned energy itself, in pairs (paired or blocked)."""
        return not self.no_prune and self.measure_energy and self.energy_design != "sequential"

    def fixed_repeats(self) -> int | None:
        """N for ``--repeats N``; None for ``auto``."""
        return None if self.repeats == AUTO else int(self.repeats)

    def vanilla_passes(self) -> int:
        """Measured passes of a sequential evaluation (the baseline's, or the pruned model's under the
        sequential design): N for ``--repeats N``; ``auto`` is 1 there (its repeats are paired windows),
        and a paired run's accuracy evaluation is one pass (its energy comes from the paired windows)."""
        if self.paired_energy():
            return 1
        return self.fixed_repeats() or 1

    # ------------------------------------------------------------------ identity
    def baseline_key(self, model_ref: str, device: str) -> str:
        """Vanilla results are reusable across runs that agree on these (tasks are checked apart)."""
        ident = {"model": model_ref, "limit": self.limit, "num_fewshot": self.num_fewshot,
                 "data_dir": data_source(self.data_dir), "device": device.split(":")[0], "ppl_limit": self.ppl_limit,
                 "measure_energy": self.measure_energy}
        if self.seed != 0:  # few-shot sampling and lm-eval's seeds (0: keys recorded before #18 stay valid)
            ident["seed"] = self.seed
        if self.vanilla_passes() != 1:  # a baseline reused for energy noise needs as many passes
            ident["repeats"] = self.vanilla_passes()
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> str:
        if self.no_prune:
            return "vanilla only"
        lora = "no LoRA" if self.no_lora else f"LoRA r{self.lora_r}/α{self.lora_alpha}"
        size = (f"to {self.target_params}" if self.target_params else
                f"to {self.target_ratio:.3g}× size" if self.target_ratio else ratio_text(self.prune_ratio))
        return (f"{self.importance} {size} ({self.count_rule}), ignore {self.ignore_first}/{self.ignore_last}, "
                f"{lora}")


#: Every run setting, in declaration order (CLI, form and validation iterate this).
SETTINGS: tuple[Setting, ...] = settings_of(RunConfig)
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}
register_flags(SETTINGS)

__all__ = ["AUTO", "DEVICES", "ENERGY_DESIGNS", "EXECUTORS", "GROUP_NOTES", "GROUPS", "IMPORTANCES", "RunConfig", "SETTING", "SETTINGS",
           "STUDY_IGNORE", "STUDY_TASKS", "SettingError", "layers_kept", "parse_batches", "parse_repeats",
           "parse_tasks"]
