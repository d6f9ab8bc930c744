"""What a pruning is asked to do, shared by the pruner (``prune.py``, torch) and the planner
(``pruning/plan.py``, standard library only): the pruning view of a run's config, the study's constants,
what a ratio means under each counting rule, and the architecture check. Standard library only.

``PruneConfig`` is not a second run config: every field that is a run setting is *derived* from
``RunConfig`` (``PruneConfig.of(cfg)``; the names are the stage's own, mapped once in ``RUN_FIELDS``) and
checked by the run schema's rules alone (``check_options`` builds the RunConfig back and asks it). Its
other fields are how this stage is driven where no run is involved (``greentui prune``'s device and
calibration dataset, ``--no-heads``/``--no-mlp``, the graph switch the tests use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from backend.errors import GreentuiError
from backend.schema.catalog import ARCHITECTURES as SUPPORTED_ARCHITECTURES  # the one list of each, in catalog
from backend.schema.catalog import METHODS  # noqa: F401 (re-exported)
from backend.schema.runconfig import SETTING, STUDY_IGNORE, layers_kept  # noqa: F401 (STUDY_IGNORE re-exported)
from backend.schema.settings import SettingError
from backend.stages.pruning import importances
from backend.stages.pruning.counting import DEFAULT_RULE, RULES  # noqa: F401 (RULES re-exported)

if TYPE_CHECKING:
    from backend.schema.runconfig import RunConfig

STUDY_RATIO = 2 / 7

Progress = Callable[[str, float], None]

#: PruneConfig field -> the RunConfig setting it is: the one place the pruning view's names are mapped.
RUN_FIELDS: dict[str, str] = {
    "method": "importance", "ratio": "prune_ratio", "ignore_first": "ignore_first", "ignore_last": "ignore_last",
    "round_to": "round_to", "calib_samples": "calib_samples", "calib_seq_len": "calib_seq_len",
    "calib_file": "calib_file", "seed": "seed", "count_rule": "count_rule", "target_params": "target_params",
    "target_ratio": "target_ratio",
}


@dataclass
class PruneConfig:
    method: str = "taylor"
    ratio: float = STUDY_RATIO
    ignore_first: int | None = None  # None: the run schema's default (the study's 4, clamped on shallow models)
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

    @classmethod
    def of(cls, run: "RunConfig", **options) -> "PruneConfig":
        """The pruning view of a run's config; ``options`` are the fields that are not run settings
        (``device``, ``prune_heads``, ``calib_dataset``…)."""
        return cls(**{name: getattr(run, setting) for name, setting in RUN_FIELDS.items()}, **options)

    def settings(self) -> dict[str, Any]:
        """The run settings this view holds, under the run schema's names (None: the schema's default).
        Values are ``Any``: each is its own setting's type, looked up by name through ``RUN_FIELDS``."""
        out = {setting: getattr(self, name) for name, setting in RUN_FIELDS.items()}
        for name in ("ignore_first", "ignore_last"):
            if out[name] is None:
                out[name] = SETTING[name].default
        return out

    def check_options(self) -> None:
        """Checks that need no model (run before loading one): the run schema's rules for the run
        settings (a ``SettingError`` naming the setting), then the options that are not run settings."""
        from backend.schema.runconfig import RunConfig

        settings = self.settings()
        problems = RunConfig(model="(pruning)", **settings).problems()
        for name in settings:  # in the view's order: the first refused setting is named
            if name in problems:
                raise SettingError(name, problems[name])
        if importances.get(self.method).removes == "width" and not (self.prune_heads or self.prune_mlp):
            raise GreentuiError("nothing to prune: both heads and MLP pruning are off")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise GreentuiError("--device cuda asked for, but no CUDA device is available")
        elif self.device != "cpu":
            raise GreentuiError(f"unknown device {self.device!r}; use cpu or cuda")

    def validate(self, num_layers: int) -> tuple[int, int, list[str]]:
        """Check the options against a model with ``num_layers`` layers; return the effective
        (ignore_first, ignore_last, warnings) by the one rule of ``runconfig.layers_kept``."""
        self.check_options()
        settings = self.settings()
        first, last, note = layers_kept(settings["ignore_first"], settings["ignore_last"], num_layers)
        return first, last, [note] if note else []


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
