"""The model card (README.md) of an exported model: what it is, how to load it, how it was pruned, and
the run's accuracy and energy tables (``backend.results.report``, the tables ``greentui export`` writes).

Text from outside (model references, run labels) is data: escaped for Markdown with the exports' one
escape function (``backend.results.tables``), control characters shown as escapes, and only a
reference that is a plain Hugging Face id goes into the YAML header.
Parameter and FLOP ratios are exact counts from the weights; they carry no uncertainty, and the card
says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from backend.results.tables import escape_markdown as md_text
from backend.schema.settings import ratio_text
from backend.store import Store

HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _model_name(ref: Any) -> str:
    """An HF id as it is; a local path by its folder name."""
    text = str(ref)
    return text if HF_ID.match(text) else Path(text).name or text


def _ratio(a: int | None, b: int | None) -> str:
    return f"{a / b:.3f}×" if a and b else "—"


def _int(n: int | None) -> str:
    return f"{n:,}" if isinstance(n, int) else "—"


def model_card(report: dict[str, Any], store: Store | None, run: dict[str, Any] | None) -> str:
    src = report.get("source") or {}
    base = src.get("model")
    name = md_text(_model_name(base or src.get("dir") or "a model"))
    fmt = report["format"]
    lines: list[str] = ["---", "library_name: transformers", "tags:", "- pruned", "- greentui"]
    if isinstance(base, str) and HF_ID.match(base):
        lines.append(f"base_model: {base}")
    ratio = report.get("ratio")
    ratio = ratio_text(ratio) if isinstance(ratio, (int, float)) else None
    lines += ["---", "", f"# {name}, structurally pruned ({md_text(report.get('method') or '?')}"
              + (f" {ratio}" if ratio else "") + ")", "",
              f"Exported by greentui {report['greentui_version']} as **{fmt}**: {md_text(report['format_reason'])}.",
              ""]
    trust = ", trust_remote_code=True" if report.get("trust_remote_code") else ""
    lines += ["## Load it", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline",
              f"model = AutoModelForCausalLM.from_pretrained(MODEL_DIR{trust})",
              f"tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR{trust})",
              f"generate = pipeline(\"text-generation\", model=MODEL_DIR{trust})", "```", "",
              "```bash", f"lm_eval --model hf --model_args pretrained=MODEL_DIR{',trust_remote_code=True' if trust else ''} "
              "--tasks arc_easy", "```", ""]
    if fmt == "remote-code":
        lines += ["The decoder layers differ in width. `modeling_greentui_pruned.py` (transformers and torch only) "
                  "builds each layer as the architecture's own layer class at its widths (`layer_widths` in "
                  "config.json" + (", also as transformers' `per_layer_config`" if report.get("per_layer_config") else "")
                  + ").", ""]
    if fmt == "decilm":
        lines += ["NVIDIA's DeciLM layout (`block_configs`) for vLLM's `DeciLMForCausalLM`. **Not verified with "
                  "vLLM**: vLLM needs a GPU, which the machine that exported this had not; transformers loads it "
                  "through `modeling_decilm.py`, which derives every layer's width from `block_configs` with "
                  "DeciLM's rule, and its logits were checked.", ""]
    lines += ["## Pruning", "", "| | |", "|---|---|"]
    rows = [("method", report.get("method")), ("ratio", ratio), ("counting rule", report.get("count_rule")),
            ("layers kept whole", _kept(report))]
    lora = report.get("lora") or {}
    rows.append(("LoRA", "merged into the weights" if lora.get("merged") else
                 ("not merged: adapter/ (peft)" if lora.get("adapter") else "none")))
    for k, v in rows:
        if v is not None:
            lines.append(f"| {k} | {md_text(v)} |")
    p, f = report["parameters"], report["flops_per_token"]
    lines.append(f"| parameters | {_int(p.get('unpruned'))} unpruned → {_int(p['pruned'])} pruned"
                 + (f" → {_int(p['exported'])} exported" if p["exported"] != p["pruned"] else "") + " |")
    lines.append(f"| parameters vs unpruned | {_ratio(p['exported'], p.get('unpruned'))} (exact count, no uncertainty) |")
    lines.append(f"| FLOPs/token @{f['context_tokens']} | {_int(f['pruned'])} pruned"
                 + (f" → {_int(f['exported'])} exported" if f["exported"] != f["pruned"] else "") + " |")
    if report.get("padding"):
        pad = report["padding"]
        lines.append(f"| zero padding costs | +{_int(pad['params_added'])} parameters ({pad['params_ratio']:.3f}×), "
                     f"FLOPs/token {pad['flops_ratio']:.3f}× against the pruned model (exact counts) |")
    lines.append(f"| weights | safetensors, {md_text(report['dtype'])} |")
    for note in report.get("notes") or []:
        lines += ["", f"Note: {md_text(note)}."]
    check = report.get("verification")
    lines += ["", "## Checked", ""]
    if check:
        same = "bit-identical" if check.get("bit_identical") else f"max |Δ| {check.get('max_abs_diff', 0):.3g}"
        lines.append(f"Loaded in a fresh interpreter with transformers only (`{md_text(check.get('class'))}`): its "
                     f"logits on a fixed text against greentui's own loader of the "
                     f"{'LoRA-merged ' if lora.get('merged') else ''}model: {same}.")
    else:
        lines.append("Not checked (exported with --no-verify).")
    if store is not None and run is not None:
        from backend.results.report import render

        lines += ["", f"## Accuracy and energy (greentui run {run['id']})", ""]
        if not lora.get("merged") and lora.get("adapter"):
            lines += ["These are the LoRA-recovered model's figures; this folder holds the model before LoRA "
                      "(merge adapter/ to get it).", ""]
        lines.append(render(store, "md", [run["id"]]))
    return "\n".join(lines).rstrip() + "\n"


def _kept(report: dict[str, Any]) -> str | None:
    first, last = report.get("ignore_first"), report.get("ignore_last")
    if first is None and last is None:
        return None
    return f"first {first}, last {last}"

