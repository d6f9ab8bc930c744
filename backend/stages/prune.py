"""Structured pruning: Taylor / L1 / L2 / random width pruning, and ShortGPT layer drop.

What ``ratio`` means depends on the counting rule (``count_rule``, ``pruning/counting.py``)
    Width methods (taylor, l1, l2, random) prune the attention heads and MLP channels of every layer
    not ignored; *how many* is the counting rule's (``torch-pruning``: a channel ratio, query heads
    ceil'd per kv group, MLP floored to ``round_to``, exactly as torch-pruning 1.6.1 counts;
    ``llm-pruner``: a channel ratio over whole kv groups, as LLM-Pruner counts; ``param-share``: the
    share of the layer's projection parameters to remove). *Which* ones is the importance's: heads by
    greentui's GQA-aware scorer (``pruning/heads.py``) or, under the torch-pruning rule where its
    whole-model graph builds, by torch-pruning itself (``pruning/tp_graph.py``); MLP channels by
    torch-pruning. Embeddings, norms, o_proj/down_proj outputs and lm_head are never pruned (hidden
    size untouched), so the whole-model fraction is smaller; the report gives the rule, the achieved
    prunable fraction, the whole-model fraction and torch-pruning's per-layer MLP ratio.
    ``layer-drop``: the fraction of decoder layers to remove (rounded, at least one).

Ignored layers
    ``ignore_first`` / ``ignore_last`` follow the one rule of ``backend.schema.runconfig.layers_kept``
    (the planner, the New-run form and ``run``/``queue`` apply it too): the study's 4 (the default, or
    ``None``) is clamped to ``min(4, (layers - 2) // 2)`` on a model too shallow for it, with a note;
    any other value is honoured as given, and one that leaves no prunable layer is refused.
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import time
from dataclasses import asdict

from backend.errors import GreentuiError
from backend.stages.pruning.spec import (  # noqa: F401 (re-exported)
    RATIO_MEANING,
    STUDY_IGNORE,
    STUDY_RATIO,
    SUPPORTED_ARCHITECTURES,
    Progress,
    PruneConfig,
    check_architecture,
)

log = logging.getLogger("greentui.prune")

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

    from backend.stages.model_io import decoder_layers, layer_widths, set_attention
    from backend.stages.pruning import calibration, flops, importances, memory

    t0 = time.perf_counter()
    say = progress or (lambda msg, frac: None)
    mt = check_architecture(model.config)
    n_layers = len(decoder_layers(model))
    first, last, warnings = cfg.validate(n_layers)
    for w in warnings:
        log.warning(w)
    target = solve_target(model, cfg)
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
        "count_rule": cfg.count_rule,
    }
    if target:
        report["target"] = target
    with memory.large_tensors_mapped():  # P5: freed gradients and activations go back to the system
        if importances.get(cfg.method).removes == "layers":
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


def solve_target(model, cfg: PruneConfig) -> dict | None:
    """``--target-params`` / ``--target-ratio``: solve the ratio with the planner on this model's own
    widths (so a pruned model is planned as it is) and set ``cfg.ratio``; None when no target."""
    if cfg.target_params is None and cfg.target_ratio is None:
        return None
    from backend.stages.model_io import layer_widths
    from backend.stages.pruning.plan import resolve_target, spec_from_config

    spec = spec_from_config(model.config.to_dict(), {"layers": layer_widths(model)})
    solved = resolve_target(spec, cfg, cfg.target_params, cfg.target_ratio)
    if solved is None:  # resolve_target's "no target", which the check above already answered
        return None
    cfg.ratio = solved["ratio"]
    log.info("target %s parameters: ratio %.5f gives %s", f"{solved['target_params']:,}", cfg.ratio,
             f"{solved['params_after']:,}")
    return solved


def _tp_version(tp) -> str:
    try:
        from importlib.metadata import version

        return version("torch-pruning")
    except Exception:  # noqa: BLE001
        return getattr(tp, "__version__", "unknown")


def layer_shape(layer, hidden: int):
    """The ``counting.LayerShape`` of a loaded decoder layer, read from its weights."""
    from backend.stages.pruning.counting import LayerShape

    attn, mlp_ = layer.self_attn, layer.mlp
    d = attn.head_dim
    heads = attn.o_proj.in_features // d
    fused = hasattr(attn, "qkv_proj")
    q = attn.qkv_proj if fused else attn.q_proj
    kv = ((attn.qkv_proj.out_features - heads * d) // 2 if fused else attn.k_proj.out_features) // d
    down = mlp_.down_proj
    return LayerShape(hidden=hidden, head_dim=d, heads=heads, kv_heads=kv, intermediate=down.in_features,
                      qkv_bias=q.bias is not None, o_bias=attn.o_proj.bias is not None,
                      mlp_bias=down.bias is not None, fused_mlp=hasattr(mlp_, "gate_up_proj"))


def _width_prune(model, batches, cfg: PruneConfig, targets: list[int], report: dict, say: Progress) -> None:
    import torch

    from backend.stages.model_io import decoder_layers, layer_config
    from backend.stages.pruning import counting, heads, importances, memory, mlp, taylor
    from backend.stages.pruning.scores import ReducedScores, WeightScores, library_importance

    gen = torch.Generator().manual_seed(cfg.seed)
    layers = decoder_layers(model)
    hidden = model.config.hidden_size
    shapes = {i: layer_shape(layers[i], hidden) for i in targets}
    counts = {i: counting.layer_counts(cfg.count_rule, shapes[i], cfg.ratio, cfg.round_to, cfg.prune_heads,
                                       cfg.prune_mlp) for i in targets}
    for w in dict.fromkeys(w for c in counts.values() for w in c.warnings):
        report["warnings"].append(w)

    importance = importances.get(cfg.method)
    scores: ReducedScores
    if importance.needs_gradients:  # reduced per head and channel as they arrive; no .grad is kept (P5)
        gradients = taylor.gradient_scores(model, batches, [layers[i] for i in targets], importance, cfg.device,
                                           lambda f: say("calibrating (gradients)", 0.05 + 0.4 * f))
        report["calibration"]["loss"] = round(gradients.loss, 4)
        report["calibration"]["passes"] = gradients.passes
        scores = gradients
    else:
        scores = WeightScores(importance)
    chosen = _library_choice(model, batches, cfg, importance, scores, targets, shapes, counts, report, say)
    if chosen is not None:
        gc.collect()  # torch-pruning's graph holds the modules in reference cycles
    per_layer, before, after = [], 0, 0
    for n, i in enumerate(targets):
        say(f"pruning layer {i}", 0.5 + 0.45 * n / len(targets))
        layer, s, c = layers[i], shapes[i], counts[i]
        original = [p.detach() for p in layer.parameters()]  # alive until its mapped pages are released
        attn = layer.self_attn
        fused = hasattr(attn, "qkv_proj")
        a_params, m_params = s.attention_params(), s.mlp_params()
        entry = {"layer": i, "heads_before": s.heads, "kv_heads_before": s.kv_heads,
                 "intermediate_before": s.intermediate}
        plan, keep_channels = None, None
        if cfg.prune_heads and chosen is not None:
            drop, drop_kv = set(chosen[i].removed_heads), set(chosen[i].removed_kv_heads)
            plan = heads.HeadPlan(heads=s.heads, kv_heads=s.kv_heads, keep_q=[h for h in range(s.heads) if h not in drop],
                                  keep_kv=[h for h in range(s.kv_heads) if h not in drop_kv])
        elif cfg.prune_heads:
            plan = heads.plan_heads(attn, s.heads, s.kv_heads, c.kv_heads, c.q_per_kv, importance, scores, gen)
        tp_ratio = 0.0
        if cfg.prune_mlp and c.intermediate < s.intermediate:
            tp_ratio = mlp.tp_ratio_for(s.intermediate, c.intermediate)
            if chosen is not None:
                entry["mlp_channels_removed"] = chosen[i].removed_channels
                drop = set(chosen[i].removed_channels)
                keep_channels = [j for j in range(s.intermediate) if j not in drop]
            else:
                entry["mlp_channels_removed"] = mlp.prune_mlp(layer.mlp, hidden, tp_ratio,
                                                              library_importance(importance, scores))
        elif cfg.prune_mlp:
            entry["mlp_channels_removed"] = []
        entry["tp_mlp_pruning_ratio"] = round(tp_ratio, 6)
        width = {"heads": len(plan.keep_q) if plan else s.heads, "kv_heads": len(plan.keep_kv) if plan else s.kv_heads,
                 "head_dim": s.head_dim,
                 "intermediate": len(keep_channels) if keep_channels is not None else layer.mlp.down_proj.in_features}
        layers[i] = _rebuild_layer(layer, i, layer_config(model.config, width), plan, s.head_dim, fused,
                                   keep_channels, s.intermediate)
        memory.release_mapped(original)  # the file pages of the weights the rebuilt layer replaces (P5)
        del original, layer, attn
        memory.trim_heap()
        entry.update({"heads_after": width["heads"], "kv_heads_after": width["kv_heads"],
                      "intermediate_after": width["intermediate"],
                      "heads_removed": plan.removed_q if plan else [],
                      "kv_heads_removed": plan.removed_kv if plan else []})
        new = layer_shape(layers[i], hidden)
        if (new.heads, new.kv_heads, new.intermediate) != (c.heads if cfg.prune_heads else s.heads,
                                                           c.kv_heads if cfg.prune_heads else s.kv_heads,
                                                           c.intermediate if cfg.prune_mlp else s.intermediate):
            raise GreentuiError(f"layer {i}: pruned to {new.heads}/{new.kv_heads} heads, {new.intermediate} channels; "
                                f"the {cfg.count_rule} rule says {c.heads}/{c.kv_heads}, {c.intermediate} (a bug)")
        before += (a_params if cfg.prune_heads else 0) + (m_params if cfg.prune_mlp else 0)
        after += (new.attention_params() if cfg.prune_heads else 0) + (new.mlp_params() if cfg.prune_mlp else 0)
        per_layer.append(entry)
    report["layers"] = per_layer
    report["count_rule"] = cfg.count_rule
    report["ratio_meaning"] = RATIO_MEANING[cfg.count_rule]
    report["target_ratio"] = cfg.ratio
    report["prunable_params_before"] = before
    report["prunable_params_after"] = after
    report["prunable_removed_ratio"] = round(1 - after / before, 6) if before else 0.0
    if chosen is None and cfg.prune_heads:
        report["notes"].append("attention heads are chosen by greentui's own GQA-aware step, scored with the "
                               f"{cfg.method} importance, in the counts of the {cfg.count_rule} rule; "
                               "torch-pruning prunes the MLP channels")


def _library_choice(model, batches, cfg: PruneConfig, importance, scores, targets, shapes, counts, report: dict,
                    say: Progress):
    """Under the torch-pruning rule: torch-pruning's own whole-model graph picks the heads and channels
    (``pruning/tp_graph.py``) if it builds and keeps the rule's counts; else None (greentui's path)."""
    report["selection"] = "greentui"
    if cfg.count_rule != "torch-pruning" or not cfg.use_tp_graph:
        return None
    from backend.stages.pruning import tp_graph
    from backend.stages.pruning.scores import library_importance

    say("torch-pruning dependency graph", 0.5)
    t0 = time.perf_counter()
    try:
        chosen = tp_graph.select(model, library_importance(importance, scores), cfg.ratio, cfg.round_to, targets,
                                 batches[:1, :8])
        for i in targets:
            s, c = shapes[i], counts[i]
            got_h = s.heads - len(chosen[i].removed_heads) if cfg.prune_heads else c.heads
            got_kv = s.kv_heads - len(chosen[i].removed_kv_heads) if cfg.prune_heads else c.kv_heads
            got_c = s.intermediate - len(chosen[i].removed_channels)
            if (got_h, got_kv, got_c) != (c.heads, c.kv_heads, c.intermediate if cfg.prune_mlp else got_c):
                raise tp_graph.TpGraphUnavailable(
                    f"its graph keeps {got_h}/{got_kv} heads and {got_c} channels in layer {i}, not the rule's "
                    f"{c.heads}/{c.kv_heads} and {c.intermediate}")
    except tp_graph.TpGraphUnavailable as exc:
        report["notes"].append(f"torch-pruning's whole-model graph not used ({exc}); greentui chose the heads "
                               "and channels in torch-pruning's counts")
        return None
    report["selection"] = "torch-pruning graph"
    report["tp_graph_s"] = round(time.perf_counter() - t0, 3)
    report["notes"].append("heads and MLP channels chosen by torch-pruning's own whole-model dependency graph "
                           f"({cfg.method} importance; rotary embedding traced as identity); greentui cut them")
    return chosen


def _rebuild_layer(layer, idx: int, cfg_i, plan, head_dim: int, fused: bool, keep_channels=None,
                   intermediate: int = 0):
    """A fresh decoder layer built from its own config copy, loaded with the sliced weights: every
    per-layer attribute (num_key_value_groups, head counts, intermediate size) matches the weights."""
    from backend.stages.pruning import heads, mlp

    state = {k: v.detach() for k, v in layer.state_dict().items()}
    if plan is not None:
        heads.slice_attention_state(state, "self_attn.", plan, head_dim, fused)
    if keep_channels is not None:
        mlp.slice_mlp_state(state, "mlp.", keep_channels, intermediate, hasattr(layer.mlp, "gate_up_proj"))
    p = next(layer.parameters())
    new = type(layer)(cfg_i, layer_idx=idx).to(device=p.device, dtype=p.dtype)
    new.load_state_dict(state, strict=True)
    new.train(layer.training)
    return new


def _layer_drop(model, batches, cfg: PruneConfig, targets: list[int], report: dict, say: Progress) -> None:
    from backend.stages.model_io import decoder_layers
    from backend.stages.pruning import calibration, layer_drop

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

    from backend.stages.model_io import REPORT, load_model, save_model

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GreentuiError(f"{out} exists and is not empty; choose another directory or remove it")
    cfg.check_options()
    say = progress or (lambda msg, frac: None)
    say(f"loading {model_ref}", 0.0)
    config = _read_config(model_ref)  # check what we can before loading any weights
    check_architecture(config)
    cfg.validate(config.num_hidden_layers)
    local = Path(str(model_ref)).expanduser()
    if local.is_dir():  # the safetensors headers against config.json, before reading any weight
        from backend.stages.models import read_config, weights_problem

        problem = weights_problem(local, read_config(local, str(model_ref)))
        if problem:
            raise GreentuiError(f"cannot prune {model_ref}: {problem}")
    if cfg.target_params is not None or cfg.target_ratio is not None:  # an unreachable target fails here
        from backend.stages.pruning.plan import resolve_target, spec_from_config

        manifest = Path(str(model_ref)).expanduser() / "greentui_layers.json"
        resolve_target(spec_from_config(config.to_dict(), json.loads(manifest.read_text()) if manifest.exists()
                                        else None), cfg, cfg.target_params, cfg.target_ratio)
    model, tokenizer = load_model(model_ref, device=cfg.device)
    report = prune_model(model, tokenizer, cfg, lambda m, f: say(m, 0.05 + 0.85 * f))
    report["model_ref"] = str(model_ref)
    say("saving", 0.92)
    save_model(model, tokenizer, out, report)
    report["out_dir"] = str(out)
    report["report_file"] = str(out / REPORT)
    say("done", 1.0)
    return report
