"""Zero padding: give a pruned decoder layer back the heads and MLP channels it lost, as zeros.

The result computes exactly what the pruned layer computed, up to float round-off: a zero query head
scores every key 0 (a uniform softmax over real values), but the zero columns of ``o_proj`` that
receive it add nothing; a padded kv head has zero keys and values; a zero MLP channel gives
``act(0) * 0`` and meets a zero column of ``down_proj``. Round-off differs only because the matrix
products have other shapes. What the padding costs (parameters, FLOPs) is the export report's.

Query heads keep their kv group: in a layer with ``g`` query heads per kv head padded to ``G``, group
``k``'s real heads become heads ``k*G .. k*G+g-1`` and the rest of the group is zeros.
"""

from __future__ import annotations

from backend.stages.model_io import decoder_layers, layer_config, layer_widths

Width = dict[str, int]


def _scatter_rows(t, rows, n: int):
    out = t.new_zeros((n, *t.shape[1:]))
    out[rows] = t
    return out


def _scatter_cols(t, cols, n: int):
    out = t.new_zeros((t.shape[0], n))
    out[:, cols] = t
    return out


def _query_rows(src: Width, dst: Width):
    """Where each of the layer's query-head rows goes in the padded layer."""
    import torch

    d, g, big = src["head_dim"], src["heads"] // src["kv_heads"], dst["heads"] // dst["kv_heads"]
    heads = [(j // g) * big + j % g for j in range(src["heads"])]
    return torch.tensor([h * d + i for h in heads for i in range(d)])


def pad_attention_state(state: dict, prefix: str, src: Width, dst: Width, fused: bool) -> None:
    """Pad one layer's attention entries of a state dict (in place) from ``src`` to ``dst`` widths."""
    import torch

    d = src["head_dim"]
    q_rows, kv_rows = _query_rows(src, dst), torch.arange(src["kv_heads"] * d)
    nq, nkv = dst["heads"] * d, dst["kv_heads"] * d
    if fused:  # Phi-3: rows are [q heads | k heads | v heads]
        for kind in ("weight", "bias"):
            key = f"{prefix}qkv_proj.{kind}"
            if key in state:
                t, sq, skv = state[key], src["heads"] * d, src["kv_heads"] * d
                q, k, v = t[:sq], t[sq:sq + skv], t[sq + skv:]
                state[key] = torch.cat([_scatter_rows(q, q_rows, nq), _scatter_rows(k, kv_rows, nkv),
                                        _scatter_rows(v, kv_rows, nkv)])
    else:
        for proj, rows, n in (("q_proj", q_rows, nq), ("k_proj", kv_rows, nkv), ("v_proj", kv_rows, nkv)):
            for kind in ("weight", "bias"):
                key = f"{prefix}{proj}.{kind}"
                if key in state:
                    state[key] = _scatter_rows(state[key], rows, n)
    key = prefix + "o_proj.weight"
    state[key] = _scatter_cols(state[key], q_rows, nq)


def pad_mlp_state(state: dict, prefix: str, src: int, dst: int, fused: bool) -> None:
    """Pad one layer's MLP entries (in place) from ``src`` to ``dst`` channels."""
    import torch

    keep = torch.arange(src)
    if fused:  # Phi-3: gate_up rows are [gate | up]
        t = state[prefix + "gate_up_proj.weight"]
        state[prefix + "gate_up_proj.weight"] = torch.cat([_scatter_rows(t[:src], keep, dst),
                                                           _scatter_rows(t[src:], keep, dst)])
    else:
        for name in ("gate_proj", "up_proj"):
            for kind in ("weight", "bias"):
                key = f"{prefix}{name}.{kind}"
                if key in state:
                    state[key] = _scatter_rows(state[key], keep, dst)
    key = prefix + "down_proj.weight"
    state[key] = _scatter_cols(state[key], keep, dst)


def pad_layer(model, index: int, dst: Width) -> None:
    """Rebuild decoder layer ``index`` at width ``dst`` (each dimension >= the layer's), zero padded."""
    import torch

    layers = decoder_layers(model)
    layer = layers[index]
    src = layer_widths(model)[index]
    if src == dst:
        return
    state = {k: v.detach() for k, v in layer.state_dict().items()}
    fused_attn, fused_mlp = hasattr(layer.self_attn, "qkv_proj"), hasattr(layer.mlp, "gate_up_proj")
    if (src["heads"], src["kv_heads"]) != (dst["heads"], dst["kv_heads"]):
        pad_attention_state(state, "self_attn.", src, dst, fused_attn)
    if src["intermediate"] != dst["intermediate"]:
        pad_mlp_state(state, "mlp.", src["intermediate"], dst["intermediate"], fused_mlp)
    config = layer_config(model.config, dst)
    config._attn_implementation_internal = model.config._attn_implementation
    with torch.device("meta"):
        new = type(layer)(config, layer_idx=index)
    new.load_state_dict(state, strict=True, assign=True)
    new.train(layer.training)
    layers[index] = new


def pad_model(model, targets: list[Width], progress=None) -> None:
    """Pad every decoder layer to its target width (``targets``: one per layer)."""
    say = progress or (lambda msg, frac: None)
    n = len(targets)
    for i, dst in enumerate(targets):
        pad_layer(model, i, dst)
        say(f"padding layer {i + 1}/{n}", (i + 1) / n)
