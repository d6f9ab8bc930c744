"""Taylor pruning scores each head and channel as its gradients arrive (P5, issue #22): no weight
gradient outlives its layer's calibration pass, and the heads and channels chosen are exactly those
that torch-pruning's own GroupTaylorImportance chooses from the whole summed gradients (the way
greentui chose them before the gradient hooks)."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from backend.stages import prune
from backend.stages.model_io import decoder_layers, load_model, set_attention
from backend.stages.prune import PruneConfig, prune_model
from backend.stages.pruning import calibration, counting, heads, importances, taylor, tp_graph
from backend.stages.pruning import mlp as mlp_pruning

CFG = dict(ratio=0.3, ignore_first=1, ignore_last=1, calib_samples=3, calib_seq_len=32)


class _GradRows:
    """greentui's head scorer reading ``.grad`` directly, as it did before the hooks."""

    def __init__(self, elements):
        self.e = elements

    def rows(self, w):
        return self.e(w, w.grad).sum(1)

    def cols(self, w):
        return self.e(w, w.grad).sum(0)

    def elements(self, b):
        return self.e(b, b.grad)


def reference_choice(model_dir, cfg: PruneConfig, selection: str, library=None, mlp: bool = True) -> dict:
    """The heads, kv heads and MLP channels of every pruned layer, chosen from whole ``.grad`` tensors
    summed over the calibration samples (every scored projection's gradient alive at once); without
    ``mlp``, the heads and kv heads alone (greentui's head scorer)."""
    imp = importances.get(cfg.method)
    library = library or tp.importance.GroupTaylorImportance()
    model, tok = load_model(model_dir)
    set_attention(model, "eager")
    torch.manual_seed(cfg.seed)
    layers = decoder_layers(model)
    first, last, _ = cfg.validate(len(layers))
    targets = list(range(first, len(layers) - last))
    text, _ = calibration.calibration_text(None, None)
    batches = calibration.calibration_batches(tok, text, cfg.calib_samples, cfg.calib_seq_len, cfg.seed)
    calibration.accumulate_gradients(model, batches, "cpu",
                                     params=calibration.scored_parameters([layers[i] for i in targets]))
    if selection == "torch-pruning graph":
        chosen = tp_graph.select(model, library, cfg.ratio, cfg.round_to, targets, batches[:1, :8])
        return {i: (chosen[i].removed_heads, chosen[i].removed_kv_heads, chosen[i].removed_channels) for i in targets}
    out = {}
    hidden = model.config.hidden_size
    for i in targets:
        s = prune.layer_shape(layers[i], hidden)
        c = counting.layer_counts(cfg.count_rule, s, cfg.ratio, cfg.round_to)
        plan = heads.plan_heads(layers[i].self_attn, s.heads, s.kv_heads, c.kv_heads, c.q_per_kv, imp,
                                _GradRows(imp.elements))
        if not mlp:
            out[i] = (plan.removed_q, plan.removed_kv)
            continue
        channels = mlp_pruning.prune_mlp(layers[i].mlp, hidden, mlp_pruning.tp_ratio_for(s.intermediate, c.intermediate),
                                         library)
        out[i] = (plan.removed_q, plan.removed_kv, channels)
    return out


def pruned_choice(model_dir, cfg: PruneConfig, monkeypatch) -> tuple[dict, dict]:
    """Prune with the hooks; return the choice and what was seen: the most gradient bytes alive after
    any sample's backward, the scored bytes of the largest chunk, and whether a ``.grad`` was left."""
    seen = {"grad_bytes": 0, "calls": 0}
    original = calibration.accumulate_gradients

    def spy(model, batches, device, progress=None, params=None):
        seen["chunk_bytes"] = max(seen.get("chunk_bytes", 0), sum(p.numel() * p.element_size() for p in params))

        def each(f):
            alive = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
            seen["grad_bytes"] = max(seen["grad_bytes"], alive)
            if progress:
                progress(f)
        seen["calls"] += 1
        return original(model, batches, device, each, params=params)

    monkeypatch.setattr(calibration, "accumulate_gradients", spy)
    model, tok = load_model(model_dir)
    report = prune_model(model, tok, cfg)
    monkeypatch.undo()
    seen["grad_left"] = [n for n, p in model.named_parameters() if p.grad is not None]
    seen["report"] = report
    return {e["layer"]: (e["heads_removed"], e["kv_heads_removed"], e["mlp_channels_removed"])
            for e in report["layers"]}, seen


@pytest.mark.parametrize("arch,attention,rule", [
    pytest.param("llama", "gqa", "torch-pruning", marks=pytest.mark.slow),  # torch-pruning's graph chooses
    pytest.param("mistral", "mha", "torch-pruning", marks=pytest.mark.slow),  # multi-head: kv heads go too
    pytest.param("llama", "gqa", "llm-pruner", marks=pytest.mark.slow),  # greentui's head scorer + MLP pruner
    pytest.param("qwen2", "gqa", "torch-pruning", marks=pytest.mark.slow),  # q/k/v biases, greentui's path
])
def test_taylor_hooks_choose_what_summed_gradients_choose(demo_model_dir, monkeypatch, arch, attention, rule):
    model_dir = demo_model_dir(arch, attention=attention)
    monkeypatch.setattr(taylor, "GRADIENT_SHARE", 1e-9)  # one layer per pass: the smallest chunks
    cfg = PruneConfig(method="taylor", count_rule=rule, **CFG)
    got, seen = pruned_choice(model_dir, cfg, monkeypatch)
    report = seen["report"]
    want = reference_choice(model_dir, PruneConfig(method="taylor", count_rule=rule, **CFG), report["selection"])
    assert got == want  # same heads, kv heads and MLP channels, in every pruned layer
    assert any(h for h, _, _ in got.values()) and any(c for _, _, c in got.values())
    if attention == "mha":
        assert any(kv for _, kv, _ in got.values())
    if (arch, rule) == ("llama", "torch-pruning"):
        assert report["selection"] == "torch-pruning graph"
    # one pass per pruned layer, and never more than that layer's gradients alive at once
    assert report["calibration"]["passes"] == seen["calls"] == len(got)
    assert 0 < seen["grad_bytes"] <= seen["chunk_bytes"]
    assert seen["grad_left"] == []


def test_layer_chunks_hold_the_budget_and_every_layer(demo_model_dir):
    model, _ = load_model(demo_model_dir("llama"))
    layers = decoder_layers(model)
    one = sum(p.numel() * p.element_size() for p in calibration.scored_parameters([layers[0]]))
    assert taylor.layer_chunks(layers, 0) == [[i] for i in range(len(layers))]
    assert taylor.layer_chunks(layers, 2 * one) == [[i, i + 1] for i in range(0, len(layers) - 1, 2)] + (
        [[len(layers) - 1]] if len(layers) % 2 else [])
    assert taylor.layer_chunks(layers, 10**12) == [list(range(len(layers)))]


def test_scored_parameters_are_the_projections_of_the_given_layers(demo_model_dir):
    model, _ = load_model(demo_model_dir("qwen2"))
    layer = model.model.layers[2]
    names = {n for n, p in layer.named_parameters() if any(p is q for q in calibration.scored_parameters([layer]))}
    assert names == {f"self_attn.{p}.{k}" for p in ("q_proj", "k_proj", "v_proj") for k in ("weight", "bias")} | {
        "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
