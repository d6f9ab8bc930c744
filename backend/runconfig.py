"""The configuration of one experiment, its study defaults, and its validation.

One dataclass serves the CLI (``greentui run/queue``), the TUI's New-run form and the runner, so the
three can never disagree on a default or on what is valid. Pure Python: the UI imports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import GreentuiError

STUDY_TASKS = ("arc_challenge", "arc_easy", "boolq", "hellaswag", "piqa", "openbookqa", "winogrande")
IMPORTANCES = ("taylor", "l1", "l2", "random", "layer-drop")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunConfig:
    """Everything that defines a run; defaults reproduce the GreenPruning study."""

    model: str = ""
    # pruning (backend.prune)
    no_prune: bool = False
    importance: str = "taylor"
    prune_ratio: float = 2 / 7
    ignore_first: int = 4
    ignore_last: int = 4
    round_to: int = 8
    calib_samples: int = 10
    calib_seq_len: int = 64
    calib_file: str | None = None
    # LoRA recovery (backend.finetune)
    no_lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_steps: int | None = 200
    lora_epochs: float | None = None
    lora_lr: float = 3e-4
    lora_batch_size: int = 8
    lora_cutoff_len: int = 256
    lora_data: str | None = None
    # evaluation (backend.evaluate)
    tasks: list[str] = field(default_factory=lambda: list(STUDY_TASKS))
    limit: int | None = None
    num_fewshot: int = 0
    batch_size: str = "auto"
    data_dir: str | None = None
    ppl_limit: int | None = 4096
    # machine and provenance
    device: str = "auto"
    seed: int = 0
    country: str = "USA"
    measure_energy: bool = True
    trust_remote_code: bool = False
    # energy you can trust (issue #11)
    repeats: int = 1                      # time/energy passes per task (accuracy once)
    efficiency_batches: list[int] = field(default_factory=list)   # e.g. [1, 8, 32]; empty = no stage
    efficiency_seq_len: int = 128
    cooldown: bool = False                # wait for the GPU to cool between measured windows
    # where it executes (backend.executors): the runner's machine, or one Slurm job per run
    executor: str = "local"
    partition: str | None = None
    gpus: int | None = None
    time_limit: str | None = None
    slurm_arg: list[str] = field(default_factory=list)

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
        if not self.model.strip():
            bad["model"] = "choose a model (HF id or local directory)"
        if not self.no_prune:
            if self.importance not in IMPORTANCES:
                bad["importance"] = f"unknown method {self.importance!r}; one of {', '.join(IMPORTANCES)}"
            r = self.prune_ratio
            if not isinstance(r, (int, float)) or math.isnan(r) or not 0 < r < 1:
                bad["prune_ratio"] = f"ratio must be a number strictly between 0 and 1 (got {r})"
            for name in ("ignore_first", "ignore_last"):
                if getattr(self, name) < 0:
                    bad[name] = "must be 0 or more"
            if self.round_to < 1:
                bad["round_to"] = "must be 1 or more"
            if self.calib_samples < 1 or self.calib_seq_len < 8:
                bad["calib_samples"] = "need at least 1 sample of at least 8 tokens"
        if not self.no_lora and not self.no_prune:
            if self.lora_r < 1:
                bad["lora_r"] = "LoRA rank must be 1 or more"
            if self.lora_alpha <= 0:
                bad["lora_alpha"] = "LoRA alpha must be positive"
            if self.lora_steps is not None and self.lora_epochs is not None:
                bad["lora_steps"] = "give LoRA steps or epochs, not both"
            elif self.lora_steps is not None and self.lora_steps < 1:
                bad["lora_steps"] = "LoRA steps must be 1 or more"
            elif self.lora_epochs is not None and self.lora_epochs <= 0:
                bad["lora_epochs"] = "LoRA epochs must be positive"
            if not self.lora_lr > 0:
                bad["lora_lr"] = "learning rate must be positive"
        if not self.tasks:
            bad["tasks"] = "choose at least one task"
        else:
            unknown = [t for t in self.tasks if t not in STUDY_TASKS]
            if unknown:
                bad["tasks"] = f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(STUDY_TASKS)}"
        if self.limit is not None and self.limit < 1:
            bad["limit"] = "limit must be 1 or more items per task (omit it for the whole split)"
        if self.num_fewshot < 0:
            bad["num_fewshot"] = "few-shot count must be 0 or more"
        if self.batch_size != "auto" and not (str(self.batch_size).isdigit() and int(self.batch_size) > 0):
            bad["batch_size"] = "batch size must be 'auto' or a positive integer"
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            bad["device"] = f"device must be one of {', '.join(DEVICES)} or cuda:N"
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            bad["repeats"] = "repeats must be a whole number of 1 or more"
        elif self.repeats > 100:
            bad["repeats"] = "repeats above 100 multiply the run's time; use at most 100"
        if any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in self.efficiency_batches or []):
            bad["efficiency_batches"] = "batch sizes must be whole numbers of 1 or more, e.g. 1,8,32"
        if not isinstance(self.efficiency_seq_len, int) or self.efficiency_seq_len < 8:
            bad["efficiency_seq_len"] = "sequence length must be 8 tokens or more"
        if self.ppl_limit is not None and self.ppl_limit < 0:
            bad["ppl_limit"] = "perplexity token limit must be 0 (skip) or more"
        bad.update(executor_problems(self))
        return bad

    def validate(self) -> "RunConfig":
        bad = self.problems()
        if bad:
            name, reason = next(iter(bad.items()))
            raise GreentuiError(f"--{name.replace('_', '-')}: {reason}")
        return self

    # ------------------------------------------------------------------ identity
    def baseline_key(self, model_ref: str, device: str) -> str:
        """Vanilla results are reusable across runs that agree on these (tasks are checked apart)."""
        ident = {"model": model_ref, "limit": self.limit, "num_fewshot": self.num_fewshot,
                 "data_dir": self.data_dir, "device": device.split(":")[0], "ppl_limit": self.ppl_limit,
                 "measure_energy": self.measure_energy}
        if self.repeats != 1:  # a baseline reused for energy noise needs as many passes
            ident["repeats"] = self.repeats
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> str:
        if self.no_prune:
            return "vanilla only"
        lora = "no LoRA" if self.no_lora else f"LoRA r{self.lora_r}/α{self.lora_alpha}"
        return f"{self.importance} {self.prune_ratio:.3g}, ignore {self.ignore_first}/{self.ignore_last}, {lora}"


def parse_batches(text: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]; '' → [] (no efficiency stage). Raises GreentuiError naming the item."""
    out: list[int] = []
    for item in (x.strip() for x in re.split(r"[,\s]+", text.strip()) if x.strip()):
        if not item.isdigit() or int(item) < 1:
            raise GreentuiError(f"--efficiency-batches: {item!r} is not a batch size (e.g. 1,8,32)")
        out.append(int(item))
    return sorted(set(out))


EXECUTORS = ("local", "slurm")
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
SLURM_ARG = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*=.+$")
# sbatch options greentui sets itself (logs, job name, signals): a --slurm-arg may not replace them.
RESERVED_SLURM_ARGS = ("output", "error", "job-name", "job_name", "signal", "open-mode", "wrap", "array")


def executor_problems(cfg: "RunConfig") -> dict[str, str]:
    """Field → reason for the executor settings (``--executor``, ``--gpus`` and the Slurm options)."""
    bad: dict[str, str] = {}
    if cfg.executor not in EXECUTORS:
        bad["executor"] = f"unknown executor {cfg.executor!r}; one of {', '.join(EXECUTORS)}"
    if cfg.gpus is not None and (not isinstance(cfg.gpus, int) or cfg.gpus < 0):
        bad["gpus"] = f"GPU count must be 0 or more (got {cfg.gpus})"
    if cfg.time_limit is not None and not TIME_LIMIT.match(str(cfg.time_limit)):
        bad["time_limit"] = f"time limit must be HH:MM:SS or D-HH:MM:SS (got {cfg.time_limit!r})"
    if cfg.partition is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", str(cfg.partition)):
        bad["partition"] = f"not a partition name: {cfg.partition!r}"
    for arg in cfg.slurm_arg or []:
        if not SLURM_ARG.match(str(arg)):
            bad["slurm_arg"] = f"Slurm option must be KEY=VALUE (got {arg!r})"
            break
        if arg.split("=", 1)[0].lower() in RESERVED_SLURM_ARGS:
            bad["slurm_arg"] = f"Slurm option {arg.split('=', 1)[0]} is set by greentui itself"
            break
    if cfg.executor == "local" and (cfg.partition or cfg.time_limit or cfg.slurm_arg):
        bad["executor"] = "Slurm options (partition, time limit, --slurm-arg) need --executor slurm"
    return bad


def parse_tasks(text: str) -> list[str]:
    """'all', 'study' or a comma/space separated list."""
    text = text.strip()
    if text in ("all", "study", ""):
        return list(STUDY_TASKS) if text else []
    return [t for t in re.split(r"[,\s]+", text) if t]

