"""Structured pruning: Taylor / L1 / L2 / random width pruning, and ShortGPT layer drop.

What ``ratio`` means
    Width methods (taylor, l1, l2, random): the fraction of the *prunable parameters* to remove,
    where the prunable parameters are the attention and MLP projection weights (q/k/v/o or qkv/o,
    gate/up/down or gate_up/down) of the layers not ignored. In each such layer the head step
    (``pruning/heads.py``) removes whole heads, in kv-group-aware steps, closest to ``ratio`` of the
    attention weights; then the MLP is pruned by torch-pruning with the per-layer ``pruning_ratio``
    that brings the layer's total removal to ``ratio`` (rounded by ``round_to``). Embeddings, norms,
    o_proj/down_proj outputs and lm_head are never pruned (hidden size untouched), so the
    whole-model fraction is smaller; the report gives the target, the achieved prunable fraction,
    the whole-model fraction and torch-pruning's per-layer MLP ratio.
    ``layer-drop``: the fraction of decoder layers to remove (rounded, at least one).

Ignored layers
    ``ignore_first`` / ``ignore_last`` left as ``None`` or set to the study's 4 mean "the study
    default": on shallow models it is clamped to ``min(4, (layers - 2) // 2)`` (at least two layers
    are pruned; a warning says so). Any other value is honoured as given, and leaving no prunable
    layer (``ignore_first + ignore_last >= layers``) is an error.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import asdict, dataclass
from typing import Callable

from .errors import GreentuiError

log = logging.getLogger("greentui.prune")

METHODS = ("taylor", "l1", "l2", "random", "layer-drop")
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2")
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

    def check_options(self) -> None:
        """Checks that need no model (run before loading one)."""
        if self.method not in METHODS:
            raise GreentuiError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
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


def _peak_memory_mb(device: str) -> dict:
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        import torch

        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def prune_model(model, tokenizer, cfg: PruneConfig, progress: Progress | None = None) -> dict:
    """Prune ``model`` in place and return the report (a JSON-ready dict)."""
    import torch
    import torch_pruning as tp

    from .model_io import decoder_layers, layer_widths, set_attention
    from .pruning import calibration, flops

    t0 = time.perf_counter()
    say = progress or (lambda msg, frac: None)
    mt = check_architecture(model.config)
    n_layers = len(decoder_layers(model))
    first, last, warnings = cfg.validate(n_layers)
    for w in warnings:
        log.warning(w)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model.to(cfg.device)
    original_attention = set_attention(model, "eager")  # calibration backward through plain ops
    torch.manual_seed(cfg.seed)

    widths_before = layer_widths(model)
    params_before = flops.count_params(model)
    flops_before = flops.flops_per_token(model, cfg.calib_seq_len)
    targets = list(range(first, n_layers - last))

    say("reading calibration text", 0.02)
    text, source = calibration.calibration_text(cfg.calib_file, cfg.calib_dataset)
    batches = calibration.calibration_batches(tokenizer, text, cfg.calib_samples, cfg.calib_seq_len, cfg.seed)

    report: dict = {
        "method": cfg.method, "model_type": mt, "config": asdict(cfg),
        "ignore_first": first, "ignore_last": last, "pruned_layers": targets,
        "calibration": {"source": source, "samples": cfg.calib_samples, "seq_len": cfg.calib_seq_len},
        "warnings": warnings, "notes": [],
        "torch_pruning_version": _tp_version(tp), "torch_version": torch.__version__,
    }
    if cfg.method == "layer-drop":
        _layer_drop(model, batches, cfg, targets, report, say)
    else:
        _width_prune(model, batches, cfg, targets, report, say)
    model.zero_grad(set_to_none=True)
    set_attention(model, original_attention)  # evaluate pruned with the same kernel as vanilla
    model.eval()

    widths_after = layer_widths(model)
    params_after = flops.count_params(model)
    flops_per_token = flops.flops_per_token(model, cfg.calib_seq_len)
    report.update({
        "params_before": params_before, "params_after": params_after,
        "params_removed_ratio": round(1 - params_after / params_before, 6),
        "flops_context_tokens": cfg.calib_seq_len,
        "flops_per_token_before": flops_before, "flops_per_token_after": flops_per_token,
        "layers_before": widths_before, "layers_after": widths_after,
        "wall_time_s": round(time.perf_counter() - t0, 3), "device": cfg.device,
        **_peak_memory_mb(cfg.device),
    })
    say("done", 1.0)
    return report


def _tp_version(tp) -> str:
    try:
        from importlib.metadata import version

        return version("torch-pruning")
    except Exception:  # noqa: BLE001
        return getattr(tp, "__version__", "unknown")


def _width_prune(model, batches, cfg: PruneConfig, targets: list[int], report: dict, say: Progress) -> None:
    import torch

    from .model_io import decoder_layers, layer_config
    from .pruning import calibration, flops, heads, mlp

    if cfg.method == "taylor":
        # Gradients only on the projections that are scored (a list held no longer than the call:
        # a replaced layer must free its weights and gradients at once).
        loss = calibration.accumulate_gradients(
            model, batches, cfg.device, lambda f: say("calibrating (gradients)", 0.05 + 0.45 * f),
            params=calibration.scored_parameters([decoder_layers(model)[i] for i in targets]))
        report["calibration"]["loss"] = round(loss, 4)
    gen = torch.Generator().manual_seed(cfg.seed)
    layers = decoder_layers(model)
    hidden = model.config.hidden_size
    per_layer, before, after = [], 0, 0
    for n, i in enumerate(targets):
        say(f"pruning layer {i}", 0.5 + 0.45 * n / len(targets))
        layer = layers[i]
        attn = layer.self_attn
        H = attn.o_proj.in_features // attn.head_dim
        fused = hasattr(attn, "qkv_proj")
        KV = ((attn.qkv_proj.out_features - H * attn.head_dim) // 2 if fused else attn.k_proj.out_features) // attn.head_dim
        inter = layer.mlp.down_proj.in_features
        a_params, m_params = flops.layer_prunable_params(layer)
        entry = {"layer": i, "heads_before": H, "kv_heads_before": KV, "intermediate_before": inter}
        plan, a_removed = None, 0
        if cfg.prune_heads:
            kv_keep, q_keep = heads.choose_counts(hidden, attn.head_dim, H, KV, cfg.ratio)
            plan = heads.plan_heads(attn, H, KV, kv_keep, q_keep, cfg.method, gen)
            bias = heads.has_qkv_bias(attn)
            a_removed = heads.attention_params(hidden, attn.head_dim, H, KV, bias) - heads.attention_params(
                hidden, attn.head_dim, len(plan.keep_q), len(plan.keep_kv), bias)
        tp_ratio = 0.0
        if cfg.prune_mlp:
            total = a_params + m_params if cfg.prune_heads else m_params
            want = min(0.95, max(0.0, (cfg.ratio * total - a_removed) / m_params))
            keep = mlp.keep_channels(inter, want, cfg.round_to)
            if keep < inter:
                tp_ratio = mlp.tp_ratio_for(inter, keep)
                entry["mlp_channels_removed"] = mlp.prune_mlp(layer.mlp, hidden, tp_ratio, cfg.method)
        entry["tp_mlp_pruning_ratio"] = round(tp_ratio, 6)
        width = {"heads": len(plan.keep_q) if plan else H, "kv_heads": len(plan.keep_kv) if plan else KV,
                 "head_dim": attn.head_dim, "intermediate": layer.mlp.down_proj.in_features}
        layers[i] = _rebuild_layer(layer, i, layer_config(model.config, width), plan, attn.head_dim, fused)
        entry.update({"heads_after": width["heads"], "kv_heads_after": width["kv_heads"],
                      "intermediate_after": width["intermediate"],
                      "heads_removed": plan.removed_q if plan else [],
                      "kv_heads_removed": plan.removed_kv if plan else []})
        a2, m2 = flops.layer_prunable_params(layers[i])
        before += (a_params if cfg.prune_heads else 0) + (m_params if cfg.prune_mlp else 0)
        after += (a2 if cfg.prune_heads else 0) + (m2 if cfg.prune_mlp else 0)
        per_layer.append(entry)
    report["layers"] = per_layer
    report["ratio_meaning"] = ("fraction of the attention+MLP projection parameters of the pruned layers "
                               "to remove (heads in kv-group steps, MLP channels by torch-pruning)")
    report["target_ratio"] = cfg.ratio
    report["prunable_params_before"] = before
    report["prunable_params_after"] = after
    report["prunable_removed_ratio"] = round(1 - after / before, 6) if before else 0.0
    if cfg.prune_heads:
        report["notes"].append("attention heads are pruned by greentui's own GQA-aware step (whole kv "
                               "groups and the same number of query heads per group), scored with the "
                               f"{cfg.method} importance; torch-pruning prunes the MLP channels")


def _rebuild_layer(layer, idx: int, cfg_i, plan, head_dim: int, fused: bool):
    """A fresh decoder layer built from its own config copy, loaded with the sliced weights: every
    per-layer attribute (num_key_value_groups, head counts, intermediate size) matches the weights."""
    from .pruning import heads

    state = {k: v.detach() for k, v in layer.state_dict().items()}
    if plan is not None:
        heads.slice_attention_state(state, "self_attn.", plan, head_dim, fused)
    p = next(layer.parameters())
    new = type(layer)(cfg_i, layer_idx=idx).to(device=p.device, dtype=p.dtype)
    new.load_state_dict(state, strict=True)
    new.train(layer.training)
    return new


def _layer_drop(model, batches, cfg: PruneConfig, targets: list[int], report: dict, say: Progress) -> None:
    from .model_io import decoder_layers
    from .pruning import calibration, layer_drop

    layers = decoder_layers(model)
    n_layers = len(layers)
    bi = calibration.block_influence(model, layers, batches, cfg.device,
                                     lambda f: say("measuring block influence", 0.05 + 0.8 * f))
    n = max(1, int(cfg.ratio * n_layers + 0.5))
    if n > len(targets):
        report["warnings"].append(f"asked to drop {n} layers but only {len(targets)} are prunable; dropping "
                                  f"{len(targets)}")
        n = len(targets)
    remove = sorted(sorted(targets, key=lambda i: bi[i])[:n])
    say(f"removing layers {remove}", 0.9)
    layer_drop.drop_layers(model, remove)
    report.update({"block_influence": [round(b, 6) for b in bi], "removed_layers": remove,
                   "target_ratio": cfg.ratio,
                   "ratio_meaning": "fraction of decoder layers to remove (rounded, at least one)",
                   "layers": []})


def _read_config(model_ref: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_ref))
    except (OSError, ValueError) as exc:
        raise GreentuiError(f"cannot load model {model_ref}: {str(exc).splitlines()[0]}") from exc


def prune_to_dir(model_ref: str, out_dir, cfg: PruneConfig, progress: Progress | None = None) -> dict:
    """Load ``model_ref``, prune it, save it (with tokenizer and report) to ``out_dir``."""
    from pathlib import Path

    from .model_io import REPORT, load_model, save_model

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GreentuiError(f"{out} exists and is not empty; choose another directory or remove it")
    cfg.check_options()
    say = progress or (lambda msg, frac: None)
    say(f"loading {model_ref}", 0.0)
    config = _read_config(model_ref)  # check what we can before loading any weights
    check_architecture(config)
    cfg.validate(config.num_hidden_layers)
    model, tokenizer = load_model(model_ref, device=cfg.device)
    report = prune_model(model, tokenizer, cfg, lambda m, f: say(m, 0.05 + 0.85 * f))
    report["model_ref"] = str(model_ref)
    say("saving", 0.92)
    save_model(model, tokenizer, out, report)
    report["out_dir"] = str(out)
    report["report_file"] = str(out / REPORT)
    say("done", 1.0)
    return report
