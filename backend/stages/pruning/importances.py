"""The pruning importances: one registered entry per method, read by every consumer.

Why a registry: the pruner (``prune.py``), the head scorer (``heads.py``), the MLP pruner (``mlp.py``),
torch-pruning's graph (``tp_graph.py``), the planner (``plan.py``), the export advice
(``loadability.py``) and the option checks (``spec.py``) all need to know what a method is — does it
remove whole layers, does it read gradients, how does it score a weight — and they ask this module
instead of comparing the method's name. The run schema offers the names (``catalog.METHODS``,
``catalog.method_names()``: the registered ones and the installed plugins', read without importing).

A separate package adds one through the ``greentui.importances`` entry point group: the entry point
names an :class:`Importance` (or a callable returning one); it is loaded the first time a name is not
found here. Its module must not import torch at the top (the planner, which the New-run form uses,
reads the entry's facts). See ``tests/plugins/greentui-taylor-sq-importance``.

Standard library only at import time: scorers import torch when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from backend.errors import GreentuiError
from backend.plugins import load_entry_points
from backend.schema import catalog

#: A per-element score of a weight (or bias) tensor, given its calibration gradient (None when the
#: importance needs none); returns a float tensor of the same shape. Heads and channels score the sum
#: over their rows and columns.
Elements = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Importance:
    """One pruning method.

    ``removes``: ``"width"`` scores attention heads and MLP channels (the counting rule says how many);
    ``"layers"`` removes whole decoder layers (ShortGPT's layer drop). ``needs_gradients``: the scorer
    reads the calibration gradient (accumulated per head and channel as it arrives, ``pruning/taylor.py``);
    ``needs_activations``: it reads hidden states of the calibration text; ``needs_calibration``: either.
    ``elements``: the per-element score (width methods; None for a drawn or a layer method). ``drawn``:
    scores come from the run's seeded generator, not from the weights (random). ``library``: a factory of
    torch-pruning's own importance object for this criterion, given the weights' scores — the built-ins
    keep the exact objects greentui used before the registry (same choice, bit for bit); None builds one
    from ``elements`` (``pruning/scores.py``).
    """

    name: str
    removes: str = "width"
    needs_gradients: bool = False
    needs_activations: bool = False
    elements: Elements | None = None
    drawn: bool = False
    library: Callable[[Any], Any] | None = None
    description: str = ""

    @property
    def needs_calibration(self) -> bool:
        return self.needs_gradients or self.needs_activations

    def check(self) -> None:
        """A malformed entry (a plugin's) is refused by name when it is registered."""
        if self.removes not in ("width", "layers"):
            raise GreentuiError(f"importance {self.name!r}: removes must be 'width' or 'layers', not {self.removes!r}")
        if self.removes == "width" and self.elements is None and not self.drawn:
            raise GreentuiError(f"importance {self.name!r} scores no weight: give it elements= or drawn=True")


def _taylor(weight, grad):
    return (weight.detach().float() * grad.detach().float()).abs()


def _l1(weight, grad):
    return weight.detach().float().abs()


def _l2(weight, grad):
    return weight.detach().float().pow(2)


def _tp_magnitude(p: int):
    def make(scores):
        import torch_pruning as tp

        return tp.importance.GroupMagnitudeImportance(p=p)
    return make


def _tp_random(scores):
    import torch_pruning as tp

    return tp.importance.RandomImportance()


BUILT_IN: tuple[Importance, ...] = (
    Importance("taylor", needs_gradients=True, elements=_taylor,
               description="first-order Taylor |w·dL/dw| over the calibration text (the study's)"),
    Importance("l1", elements=_l1, library=_tp_magnitude(1), description="weight magnitude |w|"),
    Importance("l2", elements=_l2, library=_tp_magnitude(2), description="squared weight w²"),
    Importance("random", drawn=True, library=_tp_random, description="seeded random scores (a control)"),
    Importance("layer-drop", removes="layers", needs_activations=True,
               description="ShortGPT: drop the decoder layers of least block influence"),
)

_REGISTRY: dict[str, Importance] = {}
_plugins_loaded = False


def register(entry: Importance) -> Importance:
    """Add ``entry`` (its name joins ``catalog.METHODS``: the CLI's ``--method`` and the form offer it)."""
    entry.check()
    _REGISTRY[entry.name] = entry
    if entry.name not in catalog.METHODS:
        catalog.METHODS.append(entry.name)
    return entry


for _entry in BUILT_IN:
    register(_entry)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    broken = load_entry_points(catalog.IMPORTANCE_ENTRY_POINTS, _REGISTRY, _register_plugin)
    if broken:
        name, why = next(iter(broken.items()))
        raise GreentuiError(f"importance plugin {name!r} does not load: {why}")


def _register_plugin(obj: object) -> Importance:
    """A plugin exports an Importance, or a callable that makes one."""
    entry = obj() if callable(obj) and not isinstance(obj, Importance) else obj
    if not isinstance(entry, Importance):
        raise TypeError(f"it exports {type(entry).__name__}, not an Importance")
    register(entry)
    return entry


def get(name: str) -> Importance:
    """The registered importance ``name`` (built-in, registered, or an installed plugin's)."""
    if name not in _REGISTRY:
        _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GreentuiError(f"unknown pruning method {name!r}; one of {', '.join(names())}") from None


def names() -> list[str]:
    _load_plugins()
    return list(_REGISTRY)
