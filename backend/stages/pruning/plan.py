"""Predict a pruned model from its ``config.json`` alone, in well under a second, without torch.

Why: pruning an 8B model costs GPU hours, and the three counting rules (``pruning/counting.py``) give
different sizes for the same ratio. The planner applies the very functions ``backend.stages.prune`` applies
(``counting.layer_counts`` per layer, ``PruneConfig.validate`` for the layer range) to the widths in
``config.json`` (and in ``greentui_layers.json`` when the model is itself a pruned one), and counts
parameters and FLOPs the way ``pruning/flops.py`` counts them on the weights. Tests hold the two
equal on every tiny architecture and rule.

It also solves the inverse problem: the ratio that brings the whole model closest to a target size
(``--target-params 6.4B`` or ``--target-ratio 0.8`` of the original), under the chosen rule and range.

Standard library only: the New-run form imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.schema.settings import parse_params
from backend.schema.study_models import study_model
from backend.stages.pruning import importances
from backend.stages.pruning.counting import LayerShape, layer_counts
from backend.stages.pruning.spec import SUPPORTED_ARCHITECTURES, PruneConfig

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1}
MANIFEST = "greentui_layers.json"  # backend.stages.model_io.MANIFEST (that module imports torch-side code)
# per-architecture facts config.json does not always state (transformers 5 modeling/config classes)
NORMS_PER_LAYER = {"gemma2": 4}  # input, post-attention (+ pre/post-feedforward for Gemma-2)
TIED_DEFAULT = {"gemma2": True}
#: Llama and Gemma-2 configs refuse hidden_size % num_attention_heads != 0 (``validate_architecture``),
#: so such a pruned model keeps the manifest even when its layers are uniform.
HEADS_MUST_DIVIDE_HIDDEN = ("llama", "gemma2")


@dataclass(frozen=True)
class ModelSpec:
    """The numbers of a decoder-only model that pruning and counting need."""

    model_type: str
    hidden: int
    vocab: int
    tied: bool
    dtype: str
    layers: tuple[LayerShape, ...]
    norms_per_layer: int = 2
    qk_norm: bool = False  # Qwen3: per-head-dim q_norm and k_norm in every layer

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_params(self, s: LayerShape) -> int:
        return (s.attention_params() + s.mlp_params() + self.norms_per_layer * self.hidden
                + (2 * s.head_dim if self.qk_norm else 0))

    def params(self, layers: list[LayerShape] | tuple[LayerShape, ...] | None = None) -> int:
        """Unique parameters (a tied lm_head counted once), as ``sum(p.numel() for p in model.parameters())``."""
        layers = self.layers if layers is None else layers
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.hidden + sum(self.layer_params(s) for s in layers)

    def flops_per_token(self, layers, context: int) -> int:
        """``pruning.flops.flops_per_token`` from widths: 2 per weight of every projection and of
        lm_head, plus 4 * heads * head_dim * context for QK^T and AV."""
        total = 2 * self.vocab * self.hidden
        for s in layers:
            weights = s.hidden * s.head_dim * (2 * s.heads + 2 * s.kv_heads) + 3 * s.hidden * s.intermediate
            total += 2 * weights + 4 * s.heads * s.head_dim * context
        return int(total)


def spec_from_config(cfg: dict[str, Any], manifest: dict[str, Any] | None = None) -> ModelSpec:
    """Build the spec from a config.json dict (and a greentui widths manifest, for pruned models)."""
    cfg = cfg.get("text_config") or cfg
    mt = cfg.get("model_type")
    if mt not in SUPPORTED_ARCHITECTURES:
        raise GreentuiError(f"pruning does not support architecture {mt!r}; supported: "
                            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        n_layers, inter, vocab = int(cfg["num_hidden_layers"]), int(cfg["intermediate_size"]), int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GreentuiError(f"config.json lacks a usable {exc} for a {mt} model") from exc
    # Phi-3 reads getattr(config, "head_dim", hidden // heads); Gemma2Config defaults head_dim to 256
    head_dim = int(cfg.get("head_dim") or (256 if mt == "gemma2" and "head_dim" not in cfg else hidden // heads))
    attn_bias = bool(cfg.get("attention_bias", False))
    bias = {  # which projections carry a bias, per modeling_<arch>.py
        "llama": (attn_bias, attn_bias, bool(cfg.get("mlp_bias", False))),
        "qwen2": (True, False, False),
        "qwen3": (attn_bias, attn_bias, False),
        "gemma2": (attn_bias, attn_bias, False),
    }.get(mt, (False, False, False))
    widths = [{"heads": heads, "kv_heads": kv, "head_dim": head_dim, "intermediate": inter}] * n_layers
    if manifest:
        widths = manifest.get("layers") or widths
        if len(widths) != n_layers:
            raise GreentuiError(f"{MANIFEST} lists {len(widths)} layers but config.json has {n_layers}")
    layers = tuple(LayerShape(hidden=hidden, head_dim=int(w["head_dim"]), heads=int(w["heads"]),
                              kv_heads=int(w["kv_heads"]), intermediate=int(w["intermediate"]),
                              qkv_bias=bias[0], o_bias=bias[1], mlp_bias=bias[2], fused_mlp=mt == "phi3")
                   for w in widths)
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return ModelSpec(model_type=mt, hidden=hidden, vocab=vocab,
                     tied=bool(cfg.get("tie_word_embeddings", TIED_DEFAULT.get(mt, False))),
                     dtype=dtype, layers=layers, norms_per_layer=NORMS_PER_LAYER.get(mt, 2), qk_norm=mt == "qwen3")


def model_dir(model_ref: str) -> Path:
    """The local directory holding ``config.json`` for a model directory or a cached HF id (for the
    study's seven models, the config shipped with greentui when the id is not cached). Never touches
    the network (``models.resolve`` would probe the hub for an uncached id)."""
    from backend.stages.models import HF_ID, cached_snapshot

    ref = str(model_ref).strip()
    if not ref:
        raise GreentuiError("empty model reference; give a model directory or a cached Hugging Face id")
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise GreentuiError(f"{path} has no config.json; the planner needs one (weights are not needed)")
        return path.resolve()
    if HF_ID.match(ref) and not ref.startswith((".", "/", "~")):
        snap = cached_snapshot(ref)
        if snap is None:
            shipped = study_model(ref)
            if shipped is not None and shipped.hf_id.casefold() == ref.casefold():
                return shipped.config_path  # one of the study's models: its config.json ships with greentui
            raise GreentuiError(f"{ref!r} is not in the local HF cache; the planner reads only local config.json "
                                "files (pass a directory holding one)")
        return snap
    raise GreentuiError(f"no such model directory: {path}")


def read_spec(model_ref: str) -> tuple[ModelSpec, str]:
    """(spec, directory) for a model directory (weights optional) or a cached HF id."""
    path = model_dir(model_ref)
    try:
        cfg = json.loads((path / "config.json").read_text())
        manifest = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).exists() else None
    except (OSError, json.JSONDecodeError) as exc:
        raise GreentuiError(f"cannot read the config of {path}: {exc}") from exc
    return spec_from_config(cfg, manifest), str(path)


# ------------------------------------------------------------------------------------ the plan
def plan(spec: ModelSpec, cfg: PruneConfig) -> dict[str, Any]:
    """The pruned model ``backend.stages.prune`` will produce from ``spec`` under ``cfg``, as a JSON-ready
    dict whose keys are the prune report's (``params_after``, ``layers_after``, …)."""
    cfg.check_options()
    first, last, warnings = cfg.validate(spec.num_layers)
    targets = list(range(first, spec.num_layers - last))
    after: list[LayerShape] = list(spec.layers)
    out: dict[str, Any] = {"model_type": spec.model_type, "method": cfg.method, "count_rule": cfg.count_rule,
                           "ratio": cfg.ratio, "ignore_first": first, "ignore_last": last,
                           "pruned_layers": targets, "dtype": spec.dtype}
    if importances.get(cfg.method).removes == "layers":
        n = max(1, int(cfg.ratio * spec.num_layers + 0.5))
        if n > len(targets):
            warnings.append(f"asked to drop {n} layers but only {len(targets)} are prunable; dropping {len(targets)}")
            n = len(targets)
        after = list(spec.layers[:spec.num_layers - n])  # which ones is decided by block influence
        out["layers_dropped"] = n
        prunable_before: int | None = None  # layer dropping removes whole layers, no projection widths
        prunable_after: int | None = None
        prunable_removed: float | None = None
        loads_plain = True
    else:
        before_sum = after_sum = 0
        seen_warnings: set[str] = set()
        for i in targets:
            s = spec.layers[i]
            c = layer_counts(cfg.count_rule, s, cfg.ratio, cfg.round_to, cfg.prune_heads, cfg.prune_mlp)
            for w in c.warnings:
                if w not in seen_warnings:
                    seen_warnings.add(w)
                    warnings.append(w)
            new = dataclasses.replace(s, heads=c.heads, kv_heads=c.kv_heads, intermediate=c.intermediate)
            after[i] = new
            before_sum += (s.attention_params() if cfg.prune_heads else 0) + (s.mlp_params() if cfg.prune_mlp else 0)
            after_sum += (new.attention_params() if cfg.prune_heads else 0) + (new.mlp_params() if cfg.prune_mlp else 0)
        prunable_before, prunable_after = before_sum, after_sum
        prunable_removed = round(1 - after_sum / before_sum, 6) if before_sum else None
        uniform = all(_width(s) == _width(after[0]) for s in after)
        loads_plain = uniform and not (spec.model_type in HEADS_MUST_DIVIDE_HIDDEN
                                       and spec.hidden % after[0].heads != 0)
    size = DTYPE_BYTES.get(spec.dtype)
    before_p, after_p = spec.params(), spec.params(after)
    out.update({
        "params_before": before_p, "params_after": after_p,
        "params_removed_ratio": round(1 - after_p / before_p, 6),
        "prunable_params_before": prunable_before, "prunable_params_after": prunable_after,
        "prunable_removed_ratio": prunable_removed,
        "flops_context_tokens": cfg.calib_seq_len,
        "flops_per_token_before": spec.flops_per_token(spec.layers, cfg.calib_seq_len),
        "flops_per_token_after": spec.flops_per_token(after, cfg.calib_seq_len),
        "bytes_before": before_p * size if size else None, "bytes_after": after_p * size if size else None,
        "layers_before": [_width(s) for s in spec.layers], "layers_after": [_width(s) for s in after],
        "loads_with": "from_pretrained" if loads_plain else "greentui manifest",
        "warnings": warnings,
    })
    return out


def _width(s: LayerShape) -> dict[str, int]:
    return {"heads": s.heads, "kv_heads": s.kv_heads, "head_dim": s.head_dim, "intermediate": s.intermediate}


# ------------------------------------------------------------------------------------ targets
def solve_ratio(spec: ModelSpec, cfg: PruneConfig, target_params: int) -> dict[str, Any]:
    """The pruning ratio whose plan comes closest to ``target_params`` under ``cfg``'s rule, method and
    layer range. Sizes move in steps (heads, round_to channels), so the answer says how close it got
    and the achievable sizes on either side of the target."""
    from collections import Counter

    before = spec.params()
    if target_params >= before:
        raise GreentuiError(f"target {target_params:,} parameters is not below the model's {before:,}")
    first, last, _ = cfg.validate(spec.num_layers)
    shapes = Counter(spec.layers[first:spec.num_layers - last])
    fixed = before - sum(n * spec.layer_params(s) for s, n in shapes.items())
    layers = importances.get(cfg.method).removes == "layers"

    def size(r: float) -> int:  # plan()'s params_after, without building the whole plan
        if layers:
            return plan(spec, dataclasses.replace(cfg, ratio=r))["params_after"]
        total = fixed
        for s, n in shapes.items():
            c = layer_counts(cfg.count_rule, s, r, cfg.round_to, cfg.prune_heads, cfg.prune_mlp)
            total += n * spec.layer_params(dataclasses.replace(s, heads=c.heads, kv_heads=c.kv_heads,
                                                               intermediate=c.intermediate))
        return total

    grid = [i / 1000 for i in range(1, 1000)]
    sizes = [(r, size(r)) for r in grid]
    smallest = min(s for _, s in sizes)
    if target_params < smallest:
        raise GreentuiError(f"target {target_params:,} parameters is below the smallest model this rule and "
                            f"layer range can make ({smallest:,}); prune more layers (lower --ignore-first/last)")
    # refine around the best grid point: sizes move in steps finer than the grid (one MLP channel)
    r0 = min(sizes, key=lambda rs: (abs(rs[1] - target_params), rs[0]))[0]
    sizes += [(r, size(r)) for r in (r0 + (k - 200) / 200_000 for k in range(401)) if 0 < r < 1]
    # the closest achievable size; among ratios giving it, the smallest ratio
    best_r, best_s = min(sizes, key=lambda rs: (abs(rs[1] - target_params), rs[0]))
    below = max((s for _, s in sizes if s <= target_params), default=None)
    above = min((s for _, s in sizes if s >= target_params), default=None)
    return {"ratio": best_r, "target_params": target_params, "params_after": best_s,
            "off_by": best_s - target_params, "off_by_ratio": round((best_s - target_params) / target_params, 6),
            "nearest_below": below, "nearest_above": above,
            "step": (above - below) if below is not None and above is not None else None}


def resolve_target(spec: ModelSpec, cfg: PruneConfig, target_params: str | int | None = None,
                   target_ratio: float | None = None) -> dict[str, Any] | None:
    """Turn ``--target-params`` / ``--target-ratio`` into a solved ratio (None when neither is given)."""
    if target_params is not None and target_ratio is not None:
        raise GreentuiError("give --target-params or --target-ratio, not both")
    if target_ratio is not None:
        if not isinstance(target_ratio, (int, float)) or math.isnan(target_ratio) or not 0 < target_ratio < 1:
            raise GreentuiError(f"--target-ratio must be strictly between 0 and 1 (the share of the model's "
                                f"parameters to keep), got {target_ratio!r}")
        n = int(round(spec.params() * target_ratio))
    elif target_params is None:  # neither given
        return None
    else:
        n = parse_params(target_params) if isinstance(target_params, str) else int(target_params)
    solved = solve_ratio(spec, cfg, n)
    if target_ratio is not None:
        solved["target_ratio"] = target_ratio
    return solved


# ------------------------------------------------------------------------------------ the form's panel
def brief(model_ref: str, cfg: PruneConfig, target_params: str | int | None = None,
          target_ratio: float | None = None) -> list[str]:
    """A few lines of the plan for the New-run form (read-only panel). Raises GreentuiError with a
    one-line reason when there is nothing to plan (no local config, bad option)."""
    spec, where = read_spec(model_ref)
    target = resolve_target(spec, cfg, target_params, target_ratio)
    if target:
        cfg = dataclasses.replace(cfg, ratio=target["ratio"])
    p = plan(spec, cfg)
    b, a = p["params_before"], p["params_after"]
    lines = [f"{_human(b)} → {_human(a)} parameters (−{p['params_removed_ratio']:.1%}), "
             f"FLOPs/token ×{p['flops_per_token_after'] / p['flops_per_token_before']:.3f}"
             + (f", {p['bytes_after'] / 2**30:.2f} GiB {p['dtype']}" if p.get("bytes_after") else "")]
    if target:
        lines.append(f"target {_human(target['target_params'])}: ratio {target['ratio']:.4f} "
                     f"({target['off_by']:+,} parameters)")
    if "layers_dropped" in p:
        lines.append(f"drops {p['layers_dropped']} of {spec.num_layers} layers")
    else:
        pruned = [p["layers_after"][i] for i in p["pruned_layers"]]
        kinds = sorted({(w["heads"], w["kv_heads"], w["intermediate"]) for w in pruned})
        was = spec.layers[p["pruned_layers"][0]]
        lines.append(f"layers {p['pruned_layers'][0]}-{p['pruned_layers'][-1]} ({cfg.count_rule}): "
                     + "; ".join(f"{h}/{kv} heads (was {was.heads}/{was.kv_heads}), MLP {c} (was {was.intermediate})"
                                 for h, kv, c in kinds))
    lines.append("loads with plain from_pretrained" if p["loads_with"] == "from_pretrained"
                 else "loads with greentui's per-layer manifest")
    from backend.stages.pruning import loadability
    lines.extend(loadability.lines(loadability.for_model(where, spec, cfg, p)))
    lines.extend(f"warning: {w}" for w in p["warnings"])
    return lines


def _human(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)
