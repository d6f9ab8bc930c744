"""ShortGPT-style layer removal: drop the decoder layers whose output is most like their input.

Block influence BI = 1 - mean cosine(layer input, layer output) over the calibration tokens; the
``n`` layers with the lowest BI among the candidates are removed. The result is a standard uniform
model: the remaining layers are renumbered and ``num_hidden_layers`` / ``layer_types`` updated, so
plain ``from_pretrained`` loads it.
"""

from __future__ import annotations

import torch


def drop_layers(model, remove: list[int]) -> None:
    from backend.stages.model_io import decoder_layers

    layers = decoder_layers(model)
    keep = [i for i in range(len(layers)) if i not in set(remove)]
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        for mod in (layer, layer.self_attn):
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new_idx
    cfg = model.config
    types = getattr(cfg, "layer_types", None)
    if types is not None and len(types) == cfg.num_hidden_layers:
        cfg.layer_types = [types[i] for i in keep]
    cfg.num_hidden_layers = len(keep)
