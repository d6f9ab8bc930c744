"""MLP channel pruning with torch-pruning, one decoder layer's MLP at a time.

Building torch-pruning's dependency graph on the MLP module alone (input: hidden states) keeps the
attention shapes that make it loop forever (upstream #527) out of the graph, and keeps the hidden
size whole: ``down_proj`` is ignored as a root, so only its input channels follow gate/up.
"""

from __future__ import annotations

from .guard import time_limit

GRAPH_TIMEOUT_S = 120.0


def importance(method: str):
    import torch_pruning as tp

    if method == "taylor":
        return tp.importance.GroupTaylorImportance()
    if method == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if method == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if method == "random":
        return tp.importance.RandomImportance()
    raise ValueError(method)


def prune_mlp(mlp, hidden: int, ratio: float, method: str, round_to: int | None) -> list[int]:
    """Prune ``mlp`` in place with torch-pruning's ``pruning_ratio=ratio`` on its channel group;
    return the removed intermediate-channel indices (original numbering)."""
    import torch
    import torch_pruning as tp

    if ratio <= 0:
        return []
    p = next(mlp.parameters())
    fused = hasattr(mlp, "gate_up_proj")
    example = torch.zeros(1, 2, hidden, dtype=p.dtype, device=p.device)
    with time_limit(GRAPH_TIMEOUT_S, "torch-pruning dependency graph of the MLP"):
        pruner = tp.pruner.MetaPruner(
            mlp, example_inputs=example, importance=importance(method), pruning_ratio=ratio,
            ignored_layers=[mlp.down_proj], round_to=round_to or None,
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
