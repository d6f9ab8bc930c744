"""A width importance's scores, reduced per weight row and column: what heads and channels are ranked by.

Why reductions: ranking a head or an MLP channel needs only the sum of a weight's per-element scores
over its rows (output channels) and columns (input channels), so a scorer never needs a weight-sized
tensor after it has been reduced. Two sources give them:

* :class:`WeightScores` reduces ``importance.elements(weight, None)`` when asked (l1, l2, a plugin's
  weight-only score);
* ``pruning/taylor.py``'s :class:`~backend.stages.pruning.taylor.GradientScores` reduces
  ``elements(weight, gradient)`` once a parameter's gradient is complete, inside a gradient hook, and
  frees the gradient.

Both give the two layouts their readers sum in: greentui's head scorer sums ``elements`` over dim 1 /
dim 0 (``rows``/``cols``); torch-pruning's ``GroupTaylorImportance`` sums over dim 1 of the weight and of
its transpose (``tp_rows``/``tp_cols``). :class:`ScoredImportance` is ``GroupTaylorImportance`` with its
per-layer arithmetic replaced by those sums, so torch-pruning's group reduction and normalisation — and
its choice — are the library's own, without a ``.grad``.
"""

from __future__ import annotations

import weakref
from typing import Any

from backend.stages.pruning.importances import Importance


class ReducedScores:
    """Per-parameter reductions, keyed by the parameter (a weak reference guards against a freed id)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, dict[str, Any]]] = {}

    def put(self, param, **reductions) -> None:
        self._by_id[id(param)] = (weakref.ref(param), reductions)

    def _get(self, param, kind: str):
        got = self._by_id.get(id(param))
        if got is None or got[0]() is not param:
            got = self._compute(param)
        return got[1][kind]

    def _compute(self, param):
        raise RuntimeError("no scores for this parameter: it was not among the scored projections")

    def rows(self, weight):
        """Per output channel: ``elements(w, g).sum(1)`` (greentui's head scorer)."""
        return self._get(weight, "rows")

    def cols(self, weight):
        """Per input channel: ``elements(w, g).sum(0)`` (greentui's head scorer)."""
        return self._get(weight, "cols")

    def tp_rows(self, weight):
        """Per output channel, as torch-pruning's GroupTaylorImportance sums: over dim 1 of ``w.flatten(1)``."""
        return self._get(weight, "tp_rows")

    def tp_cols(self, weight):
        """Per input channel, as torch-pruning sums: over dim 1 of ``w.transpose(0, 1).flatten(1)``."""
        return self._get(weight, "tp_cols")

    def elements(self, bias):
        """A 1-D parameter's per-element scores (a projection's bias)."""
        return self._get(bias, "elements")


def reduce(elements, weight, grad) -> dict[str, Any]:
    """The reductions of one parameter's per-element scores, in every layout a reader sums in."""
    if weight.dim() == 1:
        return {"elements": elements(weight, grad)}
    e = elements(weight, grad)
    rows, cols = e.sum(1), e.sum(0)
    del e
    wt, gt = weight.transpose(0, 1).flatten(1), None if grad is None else grad.transpose(0, 1).flatten(1)
    return {"rows": rows, "cols": cols, "tp_rows": rows, "tp_cols": elements(wt, gt).sum(1)}


class WeightScores(ReducedScores):
    """Scores that read the weights alone, reduced the first time a parameter is asked for."""

    def __init__(self, importance: Importance) -> None:
        super().__init__()
        self.importance = importance

    def _compute(self, param):
        import torch

        with torch.no_grad():
            self.put(param, **reduce(self.importance.elements, param.detach(), None))
        return self._by_id[id(param)]


def scored_importance(scores: ReducedScores):
    """torch-pruning's GroupTaylorImportance reading ``scores`` instead of weights and gradients."""
    import torch
    import torch_pruning as tp

    class ScoredImportance(tp.importance.GroupTaylorImportance):
        @torch.no_grad()
        def __call__(self, group):
            # GroupTaylorImportance.__call__ (torch-pruning 1.6.1) for linear layers, line for line, with
            # (w * dw).abs().sum(1) of the group's rows / columns read from the reductions
            group_imp, group_idxs = [], []
            for i, (dep, idxs) in enumerate(group):
                idxs.sort()
                layer = dep.target.module
                prune_fn = dep.handler
                root_idxs = group[i].root_idxs
                if not isinstance(layer, tuple(self.target_types)):
                    continue
                if prune_fn == tp.prune_linear_out_channels:
                    local_imp = scores.tp_rows(layer.weight)[idxs]
                elif prune_fn == tp.prune_linear_in_channels:
                    local_imp = scores.tp_cols(layer.weight)[idxs]
                else:
                    raise RuntimeError(f"scored importance: a {type(layer).__name__} in a pruning group "
                                       "(only linear projections are scored)")
                group_imp.append(local_imp)
                group_idxs.append(root_idxs)
            if len(group_imp) == 0:
                return None
            group_imp = self._reduce(group_imp, group_idxs)
            return self._normalize(group_imp, self.normalizer)

    return ScoredImportance()


def library_importance(importance: Importance, scores: ReducedScores):
    """The torch-pruning importance object that chooses MLP channels (and, in its graph, heads)."""
    if importance.library is not None:
        return importance.library(scores)
    return scored_importance(scores)
