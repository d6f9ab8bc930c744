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


def keep_channels(intermediate: int, ratio: float, round_to: int | None) -> int:
    """Channels to keep: the multiple of ``round_to`` nearest to ``intermediate * (1 - ratio)``
    (at least one multiple, never more than ``intermediate``)."""
    step = max(1, round_to or 1)
    if intermediate <= step:
        return intermediate
    keep = int(round(intermediate * (1 - ratio) / step)) * step
    return min(intermediate, max(step, keep))


def tp_ratio_for(intermediate: int, keep: int) -> float:
    """The torch-pruning ``pruning_ratio`` that keeps exactly ``keep`` channels
    (it keeps ``int(intermediate * (1 - ratio))``)."""
    return 1 - (keep + 0.5) / intermediate


def prune_mlp(mlp, hidden: int, ratio: float, method: str) -> list[int]:
    """Prune ``mlp`` in place with torch-pruning's ``pruning_ratio=ratio`` on its channel group
    (rounding is done by the caller via ``keep_channels``/``tp_ratio_for``); return the removed
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
            mlp, example_inputs=example, importance=importance(method), pruning_ratio=ratio,
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
