"""Model references: resolution, description without weights, and the six demo architectures."""

from __future__ import annotations

import json

import pytest

from backend.errors import GreentuiError
from backend.stages.demo import ARCHITECTURES, MARKER_FILE, build_demo_model
from backend.stages.models import describe, resolve


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_demo_models_load_with_plain_transformers(demo_model_dir, arch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = demo_model_dir(arch)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    assert cfg.model_type == arch
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    ids = tok("The quick brown fox", return_tensors="pt").input_ids
    assert ids.shape[1] > 1 and tok.decode(ids[0]) == "The quick brown fox"
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3
    info = describe(str(path))
    assert info.params == sum(p.numel() for p in model.parameters())
    assert info.source == "demo" and info.arch == arch and info.supported
    assert (info.heads, info.kv_heads) == (cfg.num_attention_heads, cfg.num_key_value_heads)


def test_demo_model_is_deterministic_for_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = build_demo_model(tmp_path / "a", "qwen3", seed=3)
    b = build_demo_model(tmp_path / "b", "qwen3", seed=3)
    c = build_demo_model(tmp_path / "c", "qwen3", seed=4)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)
    assert json.loads((a / MARKER_FILE).read_text())["seed"] == 3


def test_demo_model_refuses_a_non_empty_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep me")
    with pytest.raises(GreentuiError, match="not empty"):
        build_demo_model(tmp_path / "x")
    assert (tmp_path / "x" / "f").read_text() == "keep me"


def test_unknown_hub_id_offline_fails_fast_naming_the_id():
    with pytest.raises(GreentuiError, match=r"'nobody/no-such-model'.*unreachable"):
        resolve("nobody/no-such-model")


def test_paths_that_are_not_models(tmp_path):
    with pytest.raises(GreentuiError, match="no such model directory"):
        resolve(str(tmp_path / "missing"))
    with pytest.raises(GreentuiError, match="no config.json"):
        resolve(str(tmp_path))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(GreentuiError, match="is a file"):
        resolve(str(f))


def test_encoder_only_model_is_refused(tmp_path):
    from transformers import BertConfig
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(GreentuiError, match="not a decoder-only causal LM"):
        describe(str(tmp_path))


def test_hf_cache_entries_resolve_and_load_offline(demo_model_dir, tmp_path, monkeypatch):
    """A model in the local HF cache (blobs + snapshot symlinks, as huggingface_hub lays it out)."""
    import torch
    from transformers import AutoModelForCausalLM

    from backend.stages.model_io import load_model
    from backend.stages.models import list_cached_models

    src = demo_model_dir("llama")
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-llama"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, f in enumerate(sorted(p for p in src.iterdir() if p.is_file())):
        blob = repo / "blobs" / f"{i:040x}"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert "acme/tiny-llama" in list_cached_models()
    ref, path, source = resolve("acme/tiny-llama")
    assert (ref, source) == ("acme/tiny-llama", "cache") and path == snap
    info = describe("acme/tiny-llama")
    assert info.arch == "llama" and info.params and info.name == "acme/tiny-llama"
    model, tok = load_model(str(path))
    plain = AutoModelForCausalLM.from_pretrained(src)
    ids = tok("hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-6)


def test_small_demo_shape_is_over_100m_parameters():
    import torch
    from transformers import AutoModelForCausalLM

    from backend.stages.demo import SMALL_SHAPE, build_config, build_tokenizer

    tok = build_tokenizer(SMALL_SHAPE.vocab)
    cfg = build_config("llama", SMALL_SHAPE, tok)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n >= 100_000_000
    assert cfg.num_key_value_heads < cfg.num_attention_heads
