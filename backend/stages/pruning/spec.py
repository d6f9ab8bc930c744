"""What a pruning is asked to do, shared by the pruner (``prune.py``, torch) and the planner
(``pruning/plan.py``, standard library only): the options, the study's constants, what a ratio
means under each counting rule, and the architecture check. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from backend.errors import GreentuiError
from backend.schema.catalog import ARCHITECTURES as SUPPORTED_ARCHITECTURES  # the one list of each, in catalog
from backend.schema.catalog import METHODS
from backend.stages.pruning.counting import DEFAULT_RULE, RULES

STUDY_RATIO = 2 / 7
STUDY_IGNORE = 4

Progress = Callable[[str, float], None]


@dataclass
class PruneConfig:
    method: str = "taylor"
    ratio: float = STUDY_RATIO
    ignore_first: int | None = None  # None: study default 4, clamped on shallow models
    ignore_last: int | None = None
    round_to: int = 8
    calib_samples: int = 10
    calib_seq_len: int = 64
    calib_file: str | None = None
    calib_dataset: str | None = None
    device: str = "cpu"
    seed: int = 0
    prune_heads: bool = True
    prune_mlp: bool = True
    count_rule: str = DEFAULT_RULE
    use_tp_graph: bool = True  # torch-pruning rule: let torch-pruning's own graph choose, where it builds
    target_params: str | int | None = None  # solve ``ratio`` for this whole-model size (e.g. "6.4B")
    target_ratio: float | None = None  # ... or for this share of the original whole model (e.g. 0.8)

    def check_options(self) -> None:
        """Checks that need no model (run before loading one)."""
        if self.method not in METHODS:
            raise GreentuiError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.count_rule not in RULES:
            raise GreentuiError(f"--count-rule: unknown counting rule {self.count_rule!r}; choose one of "
                                f"{', '.join(RULES)}")
        r = self.ratio
        if not isinstance(r, (int, float)) or math.isnan(r) or not 0 < r < 1:
            raise GreentuiError(f"pruning ratio must be a number strictly between 0 and 1, got {r!r}")
        for name in ("round_to", "calib_samples", "calib_seq_len"):
            if int(getattr(self, name)) < 1:
                raise GreentuiError(f"{name.replace('_', '-')} must be at least 1")
        if self.method != "layer-drop" and not (self.prune_heads or self.prune_mlp):
            raise GreentuiError("nothing to prune: both heads and MLP pruning are off")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise GreentuiError("--device cuda asked for, but no CUDA device is available")
        elif self.device != "cpu":
            raise GreentuiError(f"unknown device {self.device!r}; use cpu or cuda")

    def validate(self, num_layers: int) -> tuple[int, int, list[str]]:
        """Check the options against a model with ``num_layers`` layers; return the effective
        (ignore_first, ignore_last, warnings)."""
        self.check_options()
        warnings: list[str] = []
        first, last = self.ignore_first, self.ignore_last
        for name, v in (("ignore-first", first), ("ignore-last", last)):
            if v is not None and v < 0:
                raise GreentuiError(f"--{name} must be >= 0, got {v}")
        default_first, default_last = first in (None, STUDY_IGNORE), last in (None, STUDY_IGNORE)
        if default_first or default_last:
            cap = max(0, min(STUDY_IGNORE, (num_layers - 2) // 2))
            if cap < STUDY_IGNORE:
                warnings.append(f"model has {num_layers} layers: the study's ignore-first/last of "
                                f"{STUDY_IGNORE} is clamped to {cap} so that layers are left to prune")
            first = cap if default_first else first
            last = cap if default_last else last
        if first + last >= num_layers:
            raise GreentuiError(f"ignore-first ({first}) + ignore-last ({last}) must be less than the "
                                f"model's {num_layers} layers: nothing would be left to prune")
        return first, last, warnings


def check_architecture(config) -> str:
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_ARCHITECTURES:
        raise GreentuiError(f"pruning does not support architecture {mt!r}; supported: "
                            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    return mt


RATIO_MEANING = {
    "torch-pruning": "torch-pruning 1.6.1's channel ratio: ceil(r*H) query heads spread as ceil over the kv groups "
                     "(kv heads kept), MLP keeps int(C*(1-r)) rounded down to round_to",
    "llm-pruner": "LLM-Pruner's channel ratio: whole kv groups (floor of r*KV*head_dim channels) with their query "
                  "heads, MLP keeps int(C*(1-r)) (no rounding)",
    "param-share": "fraction of the attention+MLP projection parameters of the pruned layers to remove (heads in "
                   "kv-group steps, MLP channels by torch-pruning)",
}
