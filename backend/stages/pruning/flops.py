"""Parameter and FLOP accounting of decoder layers, from the weights themselves."""

from __future__ import annotations

from backend.stages.model_io import decoder_layers


def attn_linears(attn) -> list:
    names = ("qkv_proj", "o_proj") if hasattr(attn, "qkv_proj") else ("q_proj", "k_proj", "v_proj", "o_proj")
    return [getattr(attn, n) for n in names]


def mlp_linears(mlp) -> list:
    names = ("gate_up_proj", "down_proj") if hasattr(mlp, "gate_up_proj") else ("gate_proj", "up_proj", "down_proj")
    return [getattr(mlp, n) for n in names]


def linear_params(linears) -> int:
    return sum(p.numel() for m in linears for p in m.parameters())


def count_params(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def layer_prunable_params(layer) -> tuple[int, int]:
    """(attention projection params, MLP projection params) of one decoder layer."""
    return linear_params(attn_linears(layer.self_attn)), linear_params(mlp_linears(layer.mlp))


def flops_per_token(model, context: int) -> int:
    """Forward FLOPs for one token with ``context`` tokens before it: 2 per multiply-add of every
    projection and of lm_head, plus QK^T and AV (2 * 2 * heads * head_dim * context) per layer.
    Embedding lookups, norms and activations are ignored (they are a rounding error)."""
    total = 0
    for layer in decoder_layers(model):
        attn = layer.self_attn
        weights = sum(m.weight.numel() for m in attn_linears(attn) + mlp_linears(layer.mlp))
        heads = attn.o_proj.in_features // attn.head_dim
        total += 2 * weights + 4 * heads * attn.head_dim * context
    head = model.get_output_embeddings()
    if head is not None:
        total += 2 * head.weight.numel()
    return int(total)
