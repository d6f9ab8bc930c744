"""``taylor-sq``: (w · dL/dw)² per element, a gradient importance added by a plugin.

The module imports no torch at the top: greentui's planner reads the entry's facts (what it removes,
what it needs) in processes that never load torch.
"""

from __future__ import annotations

from backend.stages.pruning.importances import Importance


def _elements(weight, grad):
    return (weight.detach().float() * grad.detach().float()).pow(2)


TAYLOR_SQ = Importance("taylor-sq", needs_gradients=True, elements=_elements,
                       description="squared first-order Taylor term (w·dL/dw)², from a plugin")
