"""Saving and reloading models, uniform and non-uniformly pruned (backend.stages.model_io)."""

from __future__ import annotations

import json

import pytest
import torch

from backend.errors import GreentuiError
from backend.stages.model_io import MANIFEST, REPORT, is_uniform, layer_widths, load_model, save_model

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(120)

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 61, 300, 12]])


def logits(model):
    with torch.no_grad():
        return model(IDS, use_cache=False).logits


def narrow_layer(model, idx: int, width: dict):
    """Rebuild decoder layer ``idx`` at ``width`` keeping the leading heads/channels (a hand-made
    non-uniform model, independent of backend.stages.prune)."""
    from backend.stages.model_io import layer_config
    from backend.stages.prune import _rebuild_layer
    from backend.stages.pruning.heads import HeadPlan

    layer = model.model.layers[idx]
    attn = layer.self_attn
    w0 = layer_widths(model)[idx]
    per = w0["heads"] // w0["kv_heads"]
    q_per = width["heads"] // width["kv_heads"]
    keep_kv = list(range(width["kv_heads"]))
    plan = HeadPlan(w0["heads"], w0["kv_heads"], [g * per + i for g in keep_kv for i in range(q_per)], keep_kv)
    mlp = layer.mlp
    keep = torch.arange(width["intermediate"])
    with torch.no_grad():
        if hasattr(mlp, "gate_up_proj"):
            inter = w0["intermediate"]
            rows = torch.cat([keep, keep + inter])
            mlp.gate_up_proj.weight = torch.nn.Parameter(mlp.gate_up_proj.weight[rows].clone())
        else:
            for name in ("gate_proj", "up_proj"):
                lin = getattr(mlp, name)
                lin.weight = torch.nn.Parameter(lin.weight[keep].clone())
        mlp.down_proj.weight = torch.nn.Parameter(mlp.down_proj.weight[:, keep].clone())
    model.model.layers[idx] = _rebuild_layer(layer, idx, layer_config(model.config, width), plan,
                                             attn.head_dim, hasattr(attn, "qkv_proj"))


def test_widths_of_a_demo_model(demo_model_dir):
    model, tok = load_model(demo_model_dir("llama"))
    widths = layer_widths(model)
    assert len(widths) == 6 and is_uniform(widths)
    assert widths[0] == {"heads": 12, "kv_heads": 4, "head_dim": 16, "intermediate": 384}
    assert tok is not None and len(tok) == model.config.vocab_size


def test_uniform_save_is_plain_hf(demo_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = load_model(demo_model_dir("qwen2"))
    out = save_model(model, tok, tmp_path / "m", report={"hello": 1})
    assert not (out / MANIFEST).exists()
    assert json.loads((out / REPORT).read_text()) == {"hello": 1}
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert torch.allclose(logits(plain), logits(model), atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2"])
def test_non_uniform_roundtrip(demo_model_dir, tmp_path, arch):
    model, tok = load_model(demo_model_dir(arch))
    w = layer_widths(model)[1]
    narrow = {"heads": w["heads"] // 2 if w["heads"] // w["kv_heads"] % 2 == 0 else w["heads"] - w["heads"] // w["kv_heads"],
              "kv_heads": w["kv_heads"] if w["heads"] // w["kv_heads"] % 2 == 0 else w["kv_heads"] - 1,
              "head_dim": w["head_dim"], "intermediate": w["intermediate"] - 64}
    narrow_layer(model, 1, narrow)
    assert not is_uniform(layer_widths(model))
    out = save_model(model, tok, tmp_path / "pruned")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["layers"][1] == narrow
    again, tok2 = load_model(out)
    assert layer_widths(again) == layer_widths(model)
    assert (logits(again) - logits(model)).abs().max() <= 1e-5
    assert tok2 is not None
    assert all(p.device.type == "cpu" for p in again.parameters())
    assert all(b.device.type == "cpu" for b in again.buffers())  # nothing left on meta
    if arch == "gemma2":  # tied embeddings stay tied
        assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()


def test_plain_from_pretrained_refuses_non_uniform(demo_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = load_model(demo_model_dir("llama"))
    narrow_layer(model, 2, {"heads": 8, "kv_heads": 4, "head_dim": 16, "intermediate": 256})
    out = save_model(model, tok, tmp_path / "p")
    with pytest.raises(RuntimeError, match="mismatched_sizes"):  # config.json keeps the original widths
        AutoModelForCausalLM.from_pretrained(out)


def test_manifest_that_does_not_match_weights_is_an_error(demo_model_dir, tmp_path):
    model, tok = load_model(demo_model_dir("mistral"))
    narrow_layer(model, 2, {"heads": 6, "kv_heads": 2, "head_dim": 16, "intermediate": 256})
    out = save_model(model, tok, tmp_path / "p")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["layers"][2]["intermediate"] = 200
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(GreentuiError, match="do not match"):
        load_model(out)


def test_save_refuses_a_non_empty_dir(demo_model_dir, tmp_path):
    model, tok = load_model(demo_model_dir("llama"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(GreentuiError, match="not empty"):
        save_model(model, tok, tmp_path / "busy")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(GreentuiError, match="cannot load"):
        load_model(tmp_path / "nothing-here")
