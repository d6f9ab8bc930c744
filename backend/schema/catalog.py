"""The fixed vocabularies of greentui, each in one place: pruning methods, architectures, devices, stages.

The study's tasks and their display labels live with the task registry (``backend.schema.tasks``:
``STUDY_TASKS``, ``task_label``). Standard library only: the UI imports this module.
"""

from __future__ import annotations

from backend.plugins import entry_point_names

#: Pruning methods (``backend.stages.prune``): width pruning by importance, or ShortGPT-style layer drop.
#: The built-in ones; each is an entry of the importance registry (``backend.stages.pruning.importances``:
#: what it removes, what it needs, its scorer), and registering one adds its name here; :func:`method_names`
#: adds the names of installed plugins (entry points of ``IMPORTANCE_ENTRY_POINTS``) without importing them.
METHODS: list[str] = ["taylor", "l1", "l2", "random", "layer-drop"]
IMPORTANCE_ENTRY_POINTS = "greentui.importances"
_importances_listed = False
#: Model types greentui can build (demo), prune and evaluate end to end (see backend.stages.prune for the traps).
ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2")
#: Device choices offered for a run; ``cuda:N`` is accepted as well.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: The pipeline's stages in execution order (``backend.execution.pipeline`` emits them; the UI draws them);
#: ``RunConfig.stages()`` says which of them one run goes through (perplexity is part of evaluate).
STAGES: tuple[str, ...] = ("load", "baseline", "prune", "lora", "evaluate")
#: The executors a run may ask for (``RunConfig.executor``): the built-in ones; registering one
#: (``backend.execution.executors.registry``) adds its name, and :func:`executor_names` adds the names
#: of installed plugins (entry points of ``EXECUTOR_ENTRY_POINTS``) without importing them.
EXECUTORS: list[str] = ["local", "slurm"]
#: Run settings that one executor alone reads (another executor refuses them); registration adds a plugin's.
EXECUTOR_SETTINGS: dict[str, tuple[str, ...]] = {"slurm": ("partition", "time_limit", "slurm_arg")}
EXECUTOR_ENTRY_POINTS = "greentui.executors"
_plugins_listed = False
#: Counting rules: how many heads and channels a pruning ratio removes (``stages/pruning/counting.py``).
RULES: tuple[str, ...] = ("torch-pruning", "llm-pruner", "param-share")
#: The study used torch-pruning's MetaPruner with Taylor importance; its counting is what gives the
#: study's Llama-3.1-8B size (6.4 B), so "the study's recipe" counts as torch-pruning does.
DEFAULT_RULE = "torch-pruning"
#: The rule greentui counted with before the choice existed: runs recorded without a rule used it.
LEGACY_RULE = "param-share"
#: ``greentui export-model --format``: how a pruned model leaves greentui (``backend.stages.model_export``).
#: auto = plain when every layer has one width a stock config can state, else remote-code.
EXPORT_FORMATS: tuple[str, ...] = ("auto", "plain", "remote-code", "padded", "decilm")
#: ``greentui export-model --dtype``: the exported weights' precision (default: the source's own).
EXPORT_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp32")
#: How long the demo run takes, in the one phrase the README, the Demo key's tooltip, the empty Runs
#: screen, the demo's toast and ``greentui demo --help`` quote. Measured with bench/demo_time.py
#: (bench/RESULTS.md): 22.8 s and 29.4 s wall on a quiet 2-core machine before the paired energy
#: protocol; with it 79.9 s wall and 94 s CPU at load 3.5-4 on 2 cores (~47 s idle, estimated from the
#: CPU time, not yet measured on an idle machine).
DEMO_DURATION = "about 35 s on an idle 2-core CPU, several minutes on a busy machine"


def executor_names() -> list[str]:
    """Every executor name a run may ask for: the registered ones and the installed plugins' (their
    entry points are read once, by name only: nothing is imported)."""
    global _plugins_listed
    if not _plugins_listed:
        _plugins_listed = True
        EXECUTORS.extend(n for n in entry_point_names(EXECUTOR_ENTRY_POINTS) if n not in EXECUTORS)
    return EXECUTORS


def method_names() -> list[str]:
    """Every pruning method a run may ask for: the registered ones and the installed plugins' (their
    entry points are read once, by name only: nothing is imported)."""
    global _importances_listed
    if not _importances_listed:
        _importances_listed = True
        METHODS.extend(n for n in entry_point_names(IMPORTANCE_ENTRY_POINTS) if n not in METHODS)
    return METHODS
