"""Taylor pruning keeps gradients only on the projections it scores (P5), and prunes exactly as it did
with a gradient on every parameter: same heads, same MLP channels, same weights."""

from __future__ import annotations

import pytest
import torch

from backend.stages import prune
from backend.stages.model_io import load_model
from backend.stages.prune import PruneConfig, prune_model
from backend.stages.pruning import calibration


def _prune(model_dir, monkeypatch, all_gradients: bool):
    if all_gradients:  # the code path before P5: a gradient for every parameter, one calibration pass
        monkeypatch.setattr(calibration, "scored_parameters", lambda layers: None)
        monkeypatch.setattr(prune, "_library_wanted", lambda cfg: False)
    seen: dict = {}
    original = calibration.accumulate_gradients

    def spy(model, *args, **kwargs):
        loss = original(model, *args, **kwargs)
        seen["with_grad"] = sum(p.numel() for p in model.parameters() if p.grad is not None)
        seen["all"] = sum(p.numel() for p in model.parameters())
        seen["frozen_after"] = [n for n, p in model.named_parameters() if not p.requires_grad]
        return loss

    monkeypatch.setattr(calibration, "accumulate_gradients", spy)
    model, tok = load_model(model_dir)
    report = prune_model(model, tok, PruneConfig(method="taylor", ratio=0.3, ignore_first=1, ignore_last=1,
                                                 calib_samples=3, calib_seq_len=32))
    monkeypatch.undo()
    kept = [(e["layer"], e["heads_removed"], e["kv_heads_removed"], e.get("mlp_channels_removed"))
            for e in report["layers"]]
    seen["passes"] = report["calibration"].get("passes", 1)
    seen["selection"] = report.get("selection")
    return kept, model.state_dict(), report["calibration"]["loss"], seen


@pytest.mark.parametrize("arch", [pytest.param("llama", marks=pytest.mark.slow), pytest.param("phi3", marks=pytest.mark.slow),
                                  pytest.param("qwen2", marks=pytest.mark.slow)])
def test_scored_gradients_only_prune_exactly_like_all_gradients(demo_model_dir, monkeypatch, arch):
    before, sd_before, loss_before, seen_before = _prune(demo_model_dir(arch), monkeypatch, all_gradients=True)
    after, sd_after, loss_after, seen_after = _prune(demo_model_dir(arch), monkeypatch, all_gradients=False)
    assert seen_before["with_grad"] == seen_before["all"]
    assert seen_after["with_grad"] < 0.8 * seen_after["all"]  # embeddings, norms, kept layers: no gradient
    assert seen_after["frozen_after"] == []  # requires_grad is restored on every parameter
    assert seen_before["passes"] == 1
    assert seen_after["selection"] == seen_before["selection"]
    if arch == "llama":  # torch-pruning's graph builds here (not for Phi-3's fused qkv nor Qwen2's 2 per kv)
        assert seen_after["selection"] == "torch-pruning graph"
    if seen_after["selection"] == "torch-pruning graph":  # it chose from half the gradients at a time
        assert seen_after["passes"] == 2
    assert after == before  # same kept heads, kv heads and MLP channels in every layer
    assert any(mlp for *_, mlp in after) and any(h for _, h, _, _ in after)
    assert loss_after == loss_before
    assert sd_after.keys() == sd_before.keys()
    for k in sd_before:
        assert torch.equal(sd_after[k], sd_before[k]), k


def test_scored_parameters_are_the_projections_of_the_given_layers(demo_model_dir):
    model, _ = load_model(demo_model_dir("qwen2"))
    layer = model.model.layers[2]
    names = {n for n, p in layer.named_parameters() if any(p is q for q in calibration.scored_parameters([layer]))}
    assert names == {f"self_attn.{p}.{k}" for p in ("q_proj", "k_proj", "v_proj") for k in ("weight", "bias")} | {
        "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
