"""Gradient importances (Taylor) scored as the gradients arrive, so pruning needs the model plus activations.

Why: Taylor importance ranks a head or channel by ``|w · G|`` summed over its rows or columns, where
``G`` is the gradient summed over the calibration samples. Holding ``G`` for every pruned layer at once
costs as much memory as those layers (on an 8B model in bf16, ~10 GB on top of the 16 GB model: the
study's 24 GB card cannot hold it). Here each scored parameter has a gradient hook
(``register_post_accumulate_grad_hook``) that, when the last sample's gradient has been added to
``.grad``, reduces ``elements(w, G)`` to its row and column sums (``pruning/scores.py``) and sets
``.grad`` to None. The reductions are the same arithmetic on the same ``G`` as before, so the chosen
heads and channels are the same, bit for bit (``tests/test_prune_memory.py``).

``|w · G|`` needs the whole sum ``G`` before the absolute value, so a parameter's gradient lives from
its first sample to its last; the pruned layers are therefore scored a few at a time
(:func:`layer_chunks`: at most ``GRADIENT_SHARE`` of the model's bytes of gradients at once, at least
one layer), one calibration pass per chunk. The passes read the same batches through an unchanged
model, so every pass sees the same loss; backward stops at the chunk's lowest layer.
"""

from __future__ import annotations

from typing import Callable

from backend.stages.pruning import calibration, memory
from backend.stages.pruning.importances import Importance
from backend.stages.pruning.scores import ReducedScores, reduce

#: The most gradient memory held at once, as a share of the model's bytes (at least one layer's).
GRADIENT_SHARE = 0.1


class GradientScores(ReducedScores):
    """Reductions of ``elements(w, G)`` filled in by the gradient hooks."""

    passes: int = 0
    loss: float = 0.0


def layer_chunks(layers: list, budget_bytes: int) -> list[list[int]]:
    """Consecutive groups of ``layers``' positions whose scored projections' bytes stay within
    ``budget_bytes`` (a layer larger than the budget is a group of its own)."""
    chunks: list[list[int]] = []
    size = 0
    for n, layer in enumerate(layers):
        nbytes = sum(p.numel() * p.element_size() for p in calibration.scored_parameters([layer]))
        if chunks and size + nbytes <= budget_bytes:
            chunks[-1].append(n)
            size += nbytes
        else:
            chunks.append([n])
            size = nbytes
    return chunks


def _chunk_progress(progress: Callable[[float], None] | None, chunk: int,
                    chunks: int) -> Callable[[float], None] | None:
    """Chunk ``chunk``'s own 0..1 progress as a share of all ``chunks`` passes (None: nobody listens)."""
    if progress is None:
        return None
    return lambda f: progress((chunk + f) / chunks)


def gradient_scores(model, batches, layers: list, importance: Importance, device: str,
                    progress: Callable[[float], None] | None = None,
                    share: float = GRADIENT_SHARE) -> GradientScores:
    """Score the projections of ``layers`` with ``importance.elements(w, G)`` over ``batches``; no
    ``.grad`` is left behind. ``scores.passes`` calibration passes were made; ``scores.loss`` is the
    mean calibration loss."""
    import torch

    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    chunks = layer_chunks(layers, int(share * model_bytes))
    scores = GradientScores()
    n_batches = len(batches)
    for c, chunk in enumerate(chunks):
        params = calibration.scored_parameters([layers[i] for i in chunk])
        seen = {id(p): 0 for p in params}

        def arrived(p) -> None:
            seen[id(p)] += 1
            if seen[id(p)] == n_batches:  # G is complete: reduce it, free it
                with torch.no_grad():
                    scores.put(p, **reduce(importance.elements, p.detach(), p.grad.detach()))
                p.grad = None

        handles = [p.register_post_accumulate_grad_hook(arrived) for p in params]
        try:
            loss = calibration.accumulate_gradients(
                model, batches, device, _chunk_progress(progress, c, len(chunks)), params=params)
        finally:
            for h in handles:
                h.remove()
            for p in params:
                p.grad = None
        missing = [p for p in params if seen[id(p)] != n_batches]
        if missing:
            raise RuntimeError(f"{len(missing)} scored parameters got no gradient from the calibration text")
        if c == 0:
            scores.loss = loss
        memory.trim_heap()  # this pass's gradients and activations go back to the system
    scores.passes = len(chunks)
    return scores
