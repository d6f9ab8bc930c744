"""What a planned pruning will load with, said before any GPU time is spent (issue #21, item 3).

For the planner's result (``plan.plan``): which ``greentui export-model`` formats give a folder that
loads with no custom code (``plain``, ``padded``, ``decilm`` for vLLM) and what the padding costs, the
nearby ratios that make every layer one stock width (every layer pruned, ``k/g`` of the query heads
per kv group: multiples of 1/7 for Qwen2.5-7B's 7 heads per group), and MLP width alignment
(``--round-to`` 64/128, what GPU kernels like) with its parameter cost. Standard library only: the
New-run form's plan panel imports it; the figures come from ``plan.plan`` itself, never re-derived.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any, TypedDict

from backend.errors import GreentuiError
from backend.stages.model_export import decilm
from backend.stages.model_export.formats import decilm_problem, pad_target, plain_problem
from backend.stages.pruning import importances
from backend.stages.pruning.counting import LayerShape
from backend.stages.pruning.spec import PruneConfig

ALIGNMENTS = (64, 128)
NEARBY = 3  # uniform alternatives listed, nearest ratios first


class Loadability(TypedDict):
    """The plan's ``export`` section (JSON-ready): each format's verdict, the uniform ratios nearby and the
    MLP alignments (both empty for layer dropping, which leaves every kept layer whole)."""

    formats: dict[str, dict[str, Any]]
    uniform: list[dict[str, Any]]
    alignment: list[dict[str, Any]]


def _shapes(spec, widths: list[dict[str, int]]) -> list[LayerShape]:
    return [dataclasses.replace(s, heads=w["heads"], kv_heads=w["kv_heads"], intermediate=w["intermediate"])
            for s, w in zip(spec.layers, widths)]


def _cost(spec, p: dict[str, Any], targets: list[dict[str, int]]) -> dict[str, Any]:
    shapes = _shapes(spec, targets)
    params = spec.params(shapes)
    flops = spec.flops_per_token(shapes, p["flops_context_tokens"])
    return {"params": params, "params_added": params - p["params_after"],
            "params_ratio": round(params / p["params_after"], 6),
            "flops_ratio": round(flops / p["flops_per_token_after"], 6)}


def loadability(spec, cfg: PruneConfig, p: dict[str, Any], config: dict[str, Any] | None = None) -> Loadability:
    """The ``export`` section of a plan: formats without custom code, uniform ratios nearby, alignment.
    ``config`` (config.json) lets the DeciLM check read biases and the sliding window."""
    widths = p["layers_after"]
    mt, hidden = spec.model_type, spec.hidden
    base = spec.layers[0]
    original = {"heads": base.heads, "kv_heads": base.kv_heads, "head_dim": base.head_dim,
                "intermediate": base.intermediate}
    formats: dict[str, dict[str, Any]] = {}
    why = plain_problem(mt, hidden, widths)
    formats["plain"] = {"ok": why is None, "why": why or "every layer has one width a stock config states"}
    try:
        target = pad_target(mt, hidden, widths, original)
        formats["padded"] = {"ok": True, **_cost(spec, p, [target] * len(widths))}
    except GreentuiError as exc:
        formats["padded"] = {"ok": False, "why": str(exc)}
    cfg_dict = dict(config or {}, num_attention_heads=base.heads, hidden_size=hidden)
    why = decilm_problem(mt, cfg_dict, widths)
    formats["decilm"] = {"ok": why is None, "why": why, "verified": False}
    if why is None:
        targets, _ = decilm.layout(cfg_dict, widths)
        formats["decilm"].update(_cost(spec, p, targets))
    formats["remote-code"] = {"ok": True, "why": "any widths; loads with trust_remote_code=True"}
    out: Loadability = {"formats": formats, "uniform": [], "alignment": []}
    if importances.get(cfg.method).removes == "layers":
        return out
    if not formats["plain"]["ok"]:
        out["uniform"] = uniform_ratios(spec, cfg, p)
    out["alignment"] = alignment(spec, cfg, p)
    return out


def uniform_ratios(spec, cfg: PruneConfig, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Ratios near ``cfg.ratio`` whose plan, with every layer pruned, is one stock width: ``k/g`` for
    ``g`` query heads per kv group (whole heads leave every group), and the chosen ratio itself."""
    from backend.stages.pruning.plan import plan

    pruned = p["pruned_layers"] or [0]
    shape = spec.layers[pruned[0]]
    per = shape.heads // shape.kv_heads
    candidates = {Fraction(k, per) for k in range(1, per)} | {Fraction(cfg.ratio).limit_denominator(1000)}
    found: dict[tuple, dict[str, Any]] = {}
    for r in sorted(candidates, key=lambda f: (abs(float(f) - cfg.ratio), f)):
        alt = dataclasses.replace(cfg, ratio=float(r), ignore_first=0, ignore_last=0)
        try:
            q = plan(spec, alt)
        except GreentuiError:
            continue
        w = q["layers_after"][0]
        if plain_problem(spec.model_type, spec.hidden, q["layers_after"]) is not None:
            continue
        key = (w["heads"], w["kv_heads"])
        if key not in found:
            found[key] = {"ratio": float(r), "ratio_text": f"{r.numerator}/{r.denominator}", "heads": w["heads"],
                          "kv_heads": w["kv_heads"], "intermediate": w["intermediate"],
                          "params_after": q["params_after"]}
        if len(found) == NEARBY:
            break
    return sorted(found.values(), key=lambda e: e["ratio"])


def alignment(spec, cfg: PruneConfig, p: dict[str, Any]) -> list[dict[str, Any]]:
    """MLP widths of the pruned layers and the parameters they cost at ``--round-to`` 64 and 128."""
    from backend.stages.pruning.plan import plan

    if cfg.count_rule == "llm-pruner":
        return []  # the rule does not round (LLM-Pruner passes no round_to)
    out = []
    for k in ALIGNMENTS:
        if k == cfg.round_to:
            continue
        try:
            q = plan(spec, dataclasses.replace(cfg, round_to=k))
        except GreentuiError:
            continue
        widths = sorted({q["layers_after"][i]["intermediate"] for i in q["pruned_layers"]})
        out.append({"round_to": k, "intermediate": widths, "params_after": q["params_after"],
                    "params_delta": q["params_after"] - p["params_after"]})
    return out


def lines(section: Loadability) -> list[str]:
    """Short lines for the New-run plan panel."""
    f = section["formats"]
    out = []
    if f["plain"]["ok"]:
        out.append("exports as plain (stock transformers, no custom code)")
    else:
        pad = f["padded"]
        out.append("exports as remote-code (trust_remote_code); without custom code: "
                   + (f"padded, +{pad['params_ratio'] - 1:.1%} parameters" if pad["ok"] else "none")
                   + (", decilm (vLLM)" if f["decilm"]["ok"] else ""))
    if section["uniform"]:
        out.append("uniform (stock) with every layer pruned at ratio "
                   + ", ".join(f"{u['ratio_text']} ({u['heads']}/{u['kv_heads']} heads)" for u in section["uniform"]))
    return out


def for_model(model_dir: str, spec, cfg: PruneConfig, p: dict[str, Any]) -> Loadability:
    """``loadability`` for a model folder's plan (reads its config.json for the DeciLM check)."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return loadability(spec, cfg, p, config.get("text_config") or config if isinstance(config, dict) else {})
