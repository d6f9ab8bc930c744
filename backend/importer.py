"""Results JSON written by ``lm_eval --output_path`` become runs, so outside numbers sit beside ours.

Only the study's seven tasks are taken (others are listed and skipped). Energy is kept when the file
carries it (``results[task]["energy_kwh"|"energy_wh"]`` or a top-level ``energy`` map of task →
{kwh|wh}); otherwise it stays missing (None), never zero. The whole file is validated before anything
is written, and its runs are recorded in one transaction each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import GreentuiError
from .runconfig import STUDY_TASKS
from .store import Store


def _metric(res: dict[str, Any], name: str) -> float | None:
    for key in (f"{name},none", name):
        v = res.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _model_name(doc: dict[str, Any], path: Path) -> str:
    if doc.get("model_name"):
        return str(doc["model_name"])
    cfg = doc.get("config") or {}
    args = cfg.get("model_args")
    if isinstance(args, str):
        for part in args.split(","):
            if part.strip().startswith("pretrained="):
                return part.split("=", 1)[1].strip()
    if isinstance(args, dict) and args.get("pretrained"):
        return str(args["pretrained"])
    return path.stem


def parse_lm_eval_json(path: Path) -> dict[str, Any]:
    """Validate one file; return {"model", "rows": [...], "skipped": [...], "config"}."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise GreentuiError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GreentuiError(f"{path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise GreentuiError(f"{path} is not an lm-eval results file (no 'results' object)")
    energy = doc.get("energy") if isinstance(doc.get("energy"), dict) else {}
    n_samples = doc.get("n-samples") or {}
    rows, skipped = [], []
    for task, res in doc["results"].items():
        if task not in STUDY_TASKS:
            skipped.append(task)
            continue
        acc = _metric(res, "acc")
        if acc is None or not 0 <= acc <= 1:
            raise GreentuiError(f"{path}: task {task} has no valid 'acc,none' value")
        kwh = _metric(res, "energy_kwh")
        if kwh is None and _metric(res, "energy_wh") is not None:
            kwh = _metric(res, "energy_wh") / 1000
        e = energy.get(task) if isinstance(energy.get(task), dict) else {}
        if kwh is None and isinstance(e.get("kwh"), (int, float)):
            kwh = float(e["kwh"])
        if kwh is None and isinstance(e.get("wh"), (int, float)):
            kwh = float(e["wh"]) / 1000
        n = (n_samples.get(task) or {}).get("effective") if isinstance(n_samples.get(task), dict) else None
        rows.append({"task": task, "acc": acc, "acc_stderr": _metric(res, "acc_stderr"),
                     "acc_norm": _metric(res, "acc_norm"), "acc_norm_stderr": _metric(res, "acc_norm_stderr"),
                     "n_samples": n, "energy_kwh": kwh,
                     "meter": (e.get("meter") or res.get("meter") or "imported") if kwh is not None else None,
                     "provenance": {"imported_from": str(path.resolve())}})
    if not rows:
        raise GreentuiError(f"{path} holds none of the study's tasks ({', '.join(STUDY_TASKS)}); "
                            f"found {', '.join(doc['results']) or 'no tasks'}")
    return {"model": _model_name(doc, path), "rows": rows, "skipped": skipped, "config": doc.get("config") or {}}


def import_files(store: Store, paths: list[Path], variant: str = "vanilla",
                 baseline: int | None = None) -> list[int]:
    """Parse every file first (all or nothing), then record one run per file."""
    parsed = [(p, parse_lm_eval_json(p)) for p in paths]
    if baseline is not None:
        store.require_run(baseline)
    run_ids = []
    for path, doc in parsed:
        model_id = store.upsert_model(doc["model"], name=doc["model"], source="import")
        run_id = store.create_run(model_id, "import", {"imported_from": str(path.resolve()),
                                                       "lm_eval_config": doc["config"], "variant": variant},
                                  status="running", parent_run_id=baseline,
                                  label=f"import {path.name}")
        store.save_task_results(run_id, [dict(r, variant=variant) for r in doc["rows"]])
        store.finish_run(run_id, "done")
        run_ids.append(run_id)
    return run_ids
