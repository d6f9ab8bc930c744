"""Results JSON written by ``lm_eval --output_path`` become runs, so outside numbers sit beside ours.

Only the study's seven tasks are taken (others are listed and skipped). Energy is kept when the file
carries it (``results[task]["energy_kwh"|"energy_wh"]`` or a top-level ``energy`` map of task →
{kwh|wh, meter}); otherwise it stays missing (None), never zero.

Why a typed parser: an import is outside input. Every file is read within a size and nesting bound,
then validated as a whole against the shape below (pydantic models, strict numbers: ``true`` is not
an accuracy) *before* anything is written; the first problem is one line naming the file and the
field (``results.arc_easy.acc,none``). All files of one import are then recorded in one
transaction, so a refusal or a failure (a full disk) leaves nothing behind — no half import, and no
run left ``running``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from backend.errors import GreentuiError
from backend.schema.runconfig import STUDY_TASKS
from backend.store import Store

MAX_BYTES = 64 * 2**20   # lm-eval results files are kilobytes; per-sample logs are separate files
MAX_DEPTH = 32           # lm-eval nests 4-5 levels (config → model_args → …)

Number = Union[StrictInt, StrictFloat]  # strict: a JSON true/false or "0.5" is not a number here
Fraction = Annotated[Number, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class TaskResult(_Model):
    """One entry of ``results``: lm-eval's ``metric,filter`` keys (plain names accepted too)."""

    acc: Fraction | None = Field(None, alias="acc,none")
    acc_plain: Fraction | None = Field(None, alias="acc")
    acc_stderr: Number | Literal["N/A"] | None = Field(None, alias="acc_stderr,none")
    acc_norm: Fraction | None = Field(None, alias="acc_norm,none")
    acc_norm_stderr: Number | Literal["N/A"] | None = Field(None, alias="acc_norm_stderr,none")
    energy_kwh: Annotated[Number, Field(ge=0)] | None = None
    energy_wh: Annotated[Number, Field(ge=0)] | None = None
    meter: StrictStr | None = None

    def accuracy(self) -> float | None:
        v = self.acc if self.acc is not None else self.acc_plain
        return None if v is None else float(v)


class EnergyEntry(_Model):
    kwh: Annotated[Number, Field(ge=0)] | None = None
    wh: Annotated[Number, Field(ge=0)] | None = None
    meter: StrictStr | None = None


class SampleCounts(_Model):
    effective: Annotated[StrictInt, Field(ge=0)] | None = None
    original: Annotated[StrictInt, Field(ge=0)] | None = None


class ResultsFile(_Model):
    """The parts of an lm-eval results file greentui reads; everything else is ignored."""

    results: dict[str, Any]
    energy: dict[str, EnergyEntry] = {}
    n_samples: dict[str, SampleCounts] = Field({}, alias="n-samples")
    config: dict[str, Any] | None = None
    model_name: StrictStr | None = None


def _json_type(v: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _first_problem(exc: ValidationError, prefix: str = "") -> str:
    """The first validation error as ``field.path: what was expected (got what)``."""
    err = exc.errors()[0]
    loc = ".".join([p for p in [prefix] if p] + [str(p) for p in err["loc"] if not str(p).startswith(
        ("function-", "int", "float", "literal[", "constrained-"))])
    msg = err["msg"]
    if err["type"] in ("int_type", "float_type", "int_parsing", "float_parsing"):
        msg = "expected a number"
    elif err["type"] == "literal_error":
        msg = "expected a number or \"N/A\""
    return f"{loc}: {msg} (got {_json_type(err.get('input'))})" if loc else msg


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, without building the document (no recursion)."""
    brackets = re.sub(r'[^\[\]{}]', "", re.sub(r'"(?:[^"\\]|\\.)*"', '""', text))
    depth = deepest = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_json(path: Path) -> Any:
    """The file's JSON, within MAX_BYTES and MAX_DEPTH; one-line errors for everything else."""
    if path.is_dir():
        raise GreentuiError(f"{path} is a directory; give the lm-eval results JSON file(s) inside it "
                            "(results_*.json)")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise GreentuiError(f"{path} is {size / 2**20:.0f} MB, more than an lm-eval results file "
                                f"(limit {MAX_BYTES // 2**20} MB); per-sample logs are not imported")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GreentuiError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise GreentuiError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise GreentuiError(f"cannot read {path}: {exc.strerror or exc}") from None
    depth = _nesting_depth(text)
    if depth > MAX_DEPTH:
        raise GreentuiError(f"{path} nests {depth} levels deep (an lm-eval results file nests a few; "
                            f"limit {MAX_DEPTH})")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise GreentuiError(f"{path} is not JSON ({exc})") from None
    except RecursionError:
        raise GreentuiError(f"{path} nests too deeply to be an lm-eval results file") from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _model_name(doc: ResultsFile, path: Path) -> str:
    if doc.model_name and doc.model_name.strip():
        return " ".join(doc.model_name.split())
    args = (doc.config or {}).get("model_args")
    if isinstance(args, str):
        for part in args.split(","):
            if part.strip().startswith("pretrained="):
                return part.split("=", 1)[1].strip()
    if isinstance(args, dict) and isinstance(args.get("pretrained"), str) and args["pretrained"].strip():
        return args["pretrained"].strip()
    return path.stem


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def parse_lm_eval_json(path: Path) -> dict[str, Any]:
    """Validate one file; return {"model", "rows": [...], "skipped": [...], "config"}."""
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict):
        raise GreentuiError(f"{path} is not an lm-eval results file (no 'results' object)")
    try:
        doc = ResultsFile.model_validate(raw)
    except ValidationError as exc:
        raise GreentuiError(f"{path}: {_first_problem(exc)}") from None
    tasks: dict[str, TaskResult] = {}
    for task, value in doc.results.items():
        if task not in STUDY_TASKS:
            continue
        if not isinstance(value, dict):
            raise GreentuiError(f"{path}: results.{task}: expected an object of metrics (got {_json_type(value)})")
        try:
            tasks[task] = TaskResult.model_validate(value)
        except ValidationError as exc:
            raise GreentuiError(f"{path}: {_first_problem(exc, f'results.{task}')}") from None
    rows, skipped = [], [t for t in doc.results if t not in STUDY_TASKS]
    for task, res in tasks.items():
        acc = res.accuracy()
        if acc is None:
            raise GreentuiError(f"{path}: results.{task} has no 'acc,none' accuracy")
        e = doc.energy.get(task)
        kwh = _num(res.energy_kwh)
        if kwh is None and res.energy_wh is not None:
            kwh = float(res.energy_wh) / 1000
        if kwh is None and e is not None and e.kwh is not None:
            kwh = float(e.kwh)
        if kwh is None and e is not None and e.wh is not None:
            kwh = float(e.wh) / 1000
        counts = doc.n_samples.get(task)
        rows.append({"task": task, "acc": acc, "acc_stderr": _num(res.acc_stderr),
                     "acc_norm": _num(res.acc_norm), "acc_norm_stderr": _num(res.acc_norm_stderr),
                     "n_samples": counts.effective if counts else None, "energy_kwh": kwh,
                     "meter": ((e.meter if e else None) or res.meter or "imported") if kwh is not None else None,
                     "provenance": {"imported_from": str(path.resolve())}})
    if not rows:
        found = ", ".join(list(doc.results)[:10]) or "no tasks"
        raise GreentuiError(f"{path} holds none of the study's tasks ({', '.join(STUDY_TASKS)}); found {found}")
    return {"model": _model_name(doc, path), "rows": rows, "skipped": skipped, "config": doc.config or {}}


def import_files(store: Store, paths: list[Path], variant: str = "vanilla",
                 baseline: int | None = None) -> list[int]:
    """Parse and validate every file first, then record all of them in one transaction."""
    parsed = [(p, parse_lm_eval_json(p)) for p in paths]
    if baseline is not None:
        store.runs.require(baseline)
    return store.results.record_imports([
        {"model": doc["model"], "label": f"import {path.name}", "parent_run_id": baseline,
         "config": {"imported_from": str(path.resolve()), "lm_eval_config": doc["config"], "variant": variant},
         "rows": [dict(r, variant=variant) for r in doc["rows"]]}
        for path, doc in parsed])
