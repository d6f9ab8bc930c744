"""The seven commonsense tasks of the study, and local (offline) copies of lm-eval's built-in tasks.

Online, the tasks are lm-eval's own built-ins, found by name. Offline (``--data-dir DIR``, or the
small sample shipped in ``backend/data/commonsense`` when the hub is unreachable), each task gets a
generated YAML that ``include:``s the built-in task's YAML by absolute path and overrides only where
the data comes from. Prompts, answer choices, filters and metrics therefore stay lm-eval's own: the
local task differs from the built-in one in nothing but its documents.

Local tasks are named ``greentui_local_<task>`` inside lm-eval so they can never collide with (or be
mistaken for) the built-ins; results are reported under the built-in name.

Only stdlib + PyYAML are imported at module level; lm_eval is located lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backend.errors import GreentuiError
from backend.workspace import PACKAGE_DATA

LOCAL_PREFIX = "greentui_local_"
# Every local file is declared as the "test" split, whatever split it was drawn from: lm-eval only
# keeps a document out of its own few-shot examples when the few-shot split *is* the test split
# (api/task.py, ``eval_doc=doc if fewshot split == test_split``). Offline there is no training split,
# so few-shot examples come from the same file, minus the document being evaluated.
LOCAL_SPLIT = "test"


@dataclass(frozen=True)
class TaskSpec:
    """What greentui needs to know about one study task."""

    name: str                       # lm-eval's built-in task name
    yaml: str                       # the built-in YAML, relative to lm_eval/tasks
    split: str                      # the original split the built-in task evaluates
    required_fields: tuple[str, ...]  # fields of each JSONL line that the task's prompts read
    has_acc_norm: bool
    label: str = ""                 # how tables, charts and the UI name the task (ARC-c, BoolQ, …)

    @property
    def file_name(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def metric_keys(self) -> tuple[str, ...]:
        keys = ("acc", "acc_stderr")
        return keys + (("acc_norm", "acc_norm_stderr") if self.has_acc_norm else ())

    @property
    def local_name(self) -> str:
        return LOCAL_PREFIX + self.name


_ARC_FIELDS = ("question", "choices", "answerKey")

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("arc_challenge", "arc/arc_challenge.yaml", "test", _ARC_FIELDS, True, label="ARC-c"),
    TaskSpec("arc_easy", "arc/arc_easy.yaml", "test", _ARC_FIELDS, True, label="ARC-e"),
    TaskSpec("boolq", "super_glue/boolq/default.yaml", "validation", ("passage", "question", "label"), False,
             label="BoolQ"),
    TaskSpec("hellaswag", "hellaswag/hellaswag.yaml", "validation",
             ("activity_label", "ctx_a", "ctx_b", "endings", "label"), True, label="HellaSwag"),
    TaskSpec("piqa", "piqa/piqa.yaml", "validation", ("goal", "sol1", "sol2", "label"), True, label="PIQA"),
    TaskSpec("openbookqa", "openbookqa/openbookqa.yaml", "test", ("question_stem", "choices", "answerKey"), True,
             label="OBQA"),
    TaskSpec("winogrande", "winogrande/default.yaml", "validation", ("sentence", "option1", "option2", "answer"),
             False, label="WinoG"),
)}
STUDY_TASKS: tuple[str, ...] = tuple(TASKS)
#: The one naming of the tasks for people: report tables, Compare's radar and bars, Run detail.
TASK_LABELS: dict[str, str] = {name: spec.label for name, spec in TASKS.items()}


def task_label(name: str) -> str:
    """ARC-c for arc_challenge; an unknown name is shown as it is."""
    return TASK_LABELS.get(name, name)


ALIASES = ("all", "study")


def bundled_data_dir() -> Path:
    """The 50-items-per-task sample shipped with the package (see its SOURCES.md)."""
    return PACKAGE_DATA / "commonsense"


def data_source(data_dir: str | Path | None) -> str:
    """Where a run's items come from, as one comparable string: "bundled", "hub" or a resolved path.

    An empty data dir means the shipped sample whenever the hub is not reachable (that is what
    ``evaluate`` loads then), and the shipped folder typed out is the same source: both must give one
    baseline key, so a second run reuses the first's vanilla baseline instead of evaluating it again.
    """
    from backend.workspace import hub_reachable
    if data_dir in (None, ""):
        return "hub" if hub_reachable() else "bundled"
    path = Path(str(data_dir)).expanduser().resolve()
    return "bundled" if path == bundled_data_dir().resolve() else str(path)


def data_digest(data_dir: str | Path | None, tasks: list[str] | tuple[str, ...]) -> str:
    """A digest of the items a run evaluates: SHA-256 over each task's local file (name and bytes), or
    the source's name for lm-eval's hub datasets. Two baselines with the same path but edited files
    differ here, so neither is reused for the other."""
    import hashlib
    source = data_source(data_dir)
    if source == "hub":
        return "hub:" + ",".join(sorted(tasks))
    folder = bundled_data_dir() if source == "bundled" else Path(source)
    h = hashlib.sha256()
    for name in sorted(tasks):
        path = folder / TASKS[name].file_name if name in TASKS else folder / f"{name}.jsonl"
        h.update(path.name.encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<missing>")
    return h.hexdigest()[:16]


def task_spec(name: str) -> TaskSpec:
    base = name[len(LOCAL_PREFIX):] if name.startswith(LOCAL_PREFIX) else name
    try:
        return TASKS[base]
    except KeyError:
        raise GreentuiError(_unknown_message([name])) from None


def _unknown_message(unknown: list[str]) -> str:
    names = ", ".join(repr(u) for u in unknown)
    return (f"unknown task{'s' if len(unknown) > 1 else ''} {names}; valid tasks: "
            f"{', '.join(STUDY_TASKS)} (or 'all')")


def resolve_tasks(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Validate task names (a list, or one comma-separated string); 'all'/'study' mean the seven.

    Order is kept, duplicates dropped. Raises GreentuiError listing the valid names.
    """
    if names is None:
        return list(STUDY_TASKS)
    if isinstance(names, str):
        names = [names]
    items = [part.strip() for n in names for part in str(n).split(",") if part.strip()]
    if not items:
        raise GreentuiError(f"no task given; valid tasks: {', '.join(STUDY_TASKS)} (or 'all')")
    out: list[str] = []
    unknown: list[str] = []
    for item in items:
        key = item.lower()
        expanded = list(STUDY_TASKS) if key in ALIASES else [key]
        for name in expanded:
            if name not in TASKS:
                unknown.append(item)
            elif name not in out:
                out.append(name)
    if unknown:
        raise GreentuiError(_unknown_message(unknown))
    return out


def validate_task_file(path: Path, name: str) -> int:
    """Check that ``path`` holds one JSON object per line with the task's fields; return the count.

    Errors name the file and the 1-based line number.
    """
    spec = task_spec(name)
    if not path.is_file():
        raise GreentuiError(f"{path} is missing: the data dir must hold {spec.file_name} for task "
                            f"{spec.name} (fields: {', '.join(spec.required_fields)})")
    count = 0
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise GreentuiError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise GreentuiError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column "
                                        f"{exc.colno})") from None
                if not isinstance(doc, dict):
                    raise GreentuiError(f"{path}:{lineno}: expected a JSON object, got "
                                        f"{type(doc).__name__}")
                missing = [f for f in spec.required_fields if f not in doc]
                if missing:
                    raise GreentuiError(f"{path}:{lineno}: missing field(s) {', '.join(missing)} "
                                        f"required by {spec.name}")
                if "choices" in spec.required_fields and not (
                        isinstance(doc["choices"], dict) and {"text", "label"} <= set(doc["choices"])):
                    raise GreentuiError(f"{path}:{lineno}: 'choices' must be an object with 'text' "
                                        "and 'label' lists")
                count += 1
        except UnicodeDecodeError as exc:
            raise GreentuiError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if count == 0:
        raise GreentuiError(f"{path} holds no items")
    return count
