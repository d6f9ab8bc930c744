"""MLP channel pruning with torch-pruning, one decoder layer's MLP at a time.

Building torch-pruning's dependency graph on the MLP module alone (input: hidden states) keeps the
attention shapes that make it loop forever (upstream #527) out of the graph, and keeps the hidden
size whole: ``down_proj`` is ignored as a root, so only its input channels follow gate/up.
"""

from __future__ import annotations

from backend.stages.pruning.guard import time_limit

GRAPH_TIMEOUT_S = 120.0


def tp_ratio_for(intermediate: int, keep: int) -> float:
    """The torch-pruning ``pruning_ratio`` that keeps exactly ``keep`` channels
    (it keeps ``int(intermediate * (1 - ratio))``)."""
    return 1 - (keep + 0.5) / intermediate


def prune_mlp(mlp, hidden: int, ratio: float, importance) -> list[int]:
    """Prune ``mlp`` in place with torch-pruning's ``pruning_ratio=ratio`` on its channel group, ranked by
    ``importance`` (a torch-pruning importance: ``scores.library_importance``)
    (the count comes from ``pruning/counting.py``, turned into a ratio by ``tp_ratio_for``); return the removed
    intermediate-channel indices (original numbering)."""
    import torch
    import torch_pruning as tp

    if ratio <= 0:
        return []
    p = next(mlp.parameters())
    fused = hasattr(mlp, "gate_up_proj")
    example = torch.zeros(1, 2, hidden, dtype=p.dtype, device=p.device)
    with time_limit(GRAPH_TIMEOUT_S, "torch-pruning dependency graph of the MLP"):
        pruner = tp.pruner.MetaPruner(
            mlp, example_inputs=example, importance=importance, pruning_ratio=ratio,
            ignored_layers=[mlp.down_proj], round_to=None,
            out_channel_groups={mlp.gate_up_proj: 2} if fused else {},
        )
    removed: list[int] = []
    for group in pruner.step(interactive=True):
        for item in group:
            if item.dep.target.module is mlp.down_proj and item.dep.handler == tp.prune_linear_in_channels:
                removed.extend(int(i) for i in item.idxs)
        group.prune()
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = mlp.down_proj.in_features
    return sorted(set(removed))


def slice_mlp_state(state: dict, prefix: str, keep: list[int], intermediate: int, fused: bool) -> None:
    """Keep only the ``keep`` intermediate channels in a layer state dict (in place): rows of
    gate/up (both halves of a fused gate_up), columns of down."""
    import torch

    idx = torch.tensor(sorted(keep), dtype=torch.long)
    rows = {"gate_up_proj": torch.cat([idx, idx + intermediate])} if fused else {"gate_proj": idx, "up_proj": idx}
    for name, r in rows.items():
        for kind in ("weight", "bias"):
            key = f"{prefix}{name}.{kind}"
            if key in state:
                state[key] = state[key].index_select(0, r.to(state[key].device))
    key = prefix + "down_proj.weight"
    state[key] = state[key].index_select(1, idx.to(state[key].device))
