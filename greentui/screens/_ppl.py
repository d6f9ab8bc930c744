"""WikiText-2 perplexity of a run in three figures: vanilla, pruned before LoRA, pruned after LoRA.

The pipeline stores ``ppl_wikitext2`` for the baseline (variant ``vanilla``) and the experiment
(``pruned``, after LoRA), and ``ppl_wikitext2_before_lora`` right after pruning. Together they tell
what pruning cost and what LoRA recovered — on the demo model the only figures that move, since its
task accuracies sit near chance. Lower is better.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.text import Text

from backend.text import safe_text

PPL = "ppl_wikitext2"
PPL_BEFORE_LORA = "ppl_wikitext2_before_lora"


def perplexities(store, run: dict[str, Any]) -> dict[str, float]:
    """``{"vanilla": …, "pruned": …, "pruned+LoRA": …}`` for what the run (and its baseline) hold."""
    out: dict[str, float] = {}
    if run.get("parent_run_id"):
        for m in store.results.metrics(run["parent_run_id"]):
            if m["name"] == PPL and m["variant"] == "vanilla" and m["value"] is not None:
                out["vanilla"] = m["value"]
    no_lora = bool((run.get("config") or {}).get("no_lora"))
    for m in store.results.metrics(run["id"]):
        if m["value"] is None:
            continue
        if m["name"] == PPL and m["variant"] == "vanilla":
            out["vanilla"] = m["value"]
        elif m["name"] == PPL_BEFORE_LORA:
            out["pruned"] = m["value"]
        elif m["name"] == PPL and m["variant"] == "pruned":
            out["pruned" if no_lora else "pruned+LoRA"] = m["value"]
    return {k: out[k] for k in ("vanilla", "pruned", "pruned+LoRA") if k in out}


def perplexity_line(store, run: dict[str, Any]) -> Text:
    """One line, or an empty ``Text`` when the run has no perplexity yet."""
    ppl = perplexities(store, run)
    if not ppl:
        return Text()
    line = Text("WikiText-2 ppl (lower = better): ")
    for i, (name, value) in enumerate(ppl.items()):
        line.append(" · " if i else "").append(f"{name} ").append(f"{value:.1f}", "bold")
    return line


def chance_note(run: dict[str, Any]) -> Text:
    """The demo's caveat, for runs of the shipped demo model; an empty ``Text`` otherwise. (The note is
    read from a file in the model's folder: outside text, shown as written.)"""
    ref = run.get("model_ref") or (run.get("config") or {}).get("model")
    marker = Path(str(ref)) / "greentui_demo.json" if ref else None
    if marker is None:
        return Text()
    try:  # (an imported run's "ref" is any name: too long for a path, say)
        if not marker.is_file():
            return Text()
        note = json.loads(marker.read_text()).get("note") or ""
    except (OSError, ValueError, AttributeError):
        return Text()
    return Text(safe_text(note, 400), "dim")
