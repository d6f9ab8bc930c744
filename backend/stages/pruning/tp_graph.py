"""Let torch-pruning 1.6.1's own whole-model dependency graph choose the heads and channels.

Under the ``torch-pruning`` counting rule, greentui first tries the library itself, configured as its
LLM example configures it (``examples/LLMs/prune_llm.py``: ``BasePruner(global_pruning=False,
pruning_ratio=r, head_pruning_ratio=r, num_heads={q: H, k: KV, v: KV}, prune_num_heads=True,
prune_head_dims=False, round_to=…)``) with the study's differences: Taylor (or the chosen)
importance instead of L2, the decoder layers outside the range plus embeddings, final norm and
lm_head in ``ignored_layers`` (the hidden-size group then contains ignored modules and is never
pruned, as in the study).

Two workarounds make the graph usable:

* Building it hangs on every GQA layout tried (torch-pruning #527: 8/8, 16/4, 8/2, eager and sdpa):
  the q/k groups never finish through rotary embeddings. ``apply_rotary_pos_emb`` is replaced by the
  identity *during tracing only* (it is elementwise per channel, so it adds no channel coupling the
  groups need); the graph then builds in about 0.01 s. Building is still guarded by a timeout.
* The library is only asked *which* indices to remove (``step(interactive=True)``, groups never
  ``.prune()``d); greentui cuts the layers itself (``heads.slice_attention_state``,
  ``mlp.slice_mlp_state``) and rebuilds each at its new width, so per-layer attributes match.

Where the graph does not apply (Phi-3's fused qkv, whose GQA head arithmetic the library gets
wrong: ``head_dim = out_features // (num_heads * 3)``), does not build in time, or chooses counts
that differ from the rule (e.g. Qwen3's q_norm/k_norm entering the groups), ``TpGraphUnavailable``
says why and the caller falls back to greentui's own selection with the same counts.
"""

from __future__ import annotations

import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from backend.errors import GreentuiError
from backend.stages.pruning.guard import time_limit

GRAPH_TIMEOUT_S = 60.0


class TpGraphUnavailable(Exception):
    """torch-pruning's graph cannot be used for this model; the message says why."""


@dataclass
class LayerChoice:
    removed_heads: list[int]
    removed_channels: list[int]
    #: kv heads removed with their query heads: multi-head attention only (k_proj and v_proj are in the
    #: heads' group there); under GQA the library never removes a kv head
    removed_kv_heads: list[int] = field(default_factory=list)


@contextmanager
def rotary_as_identity(model):
    """Replace ``apply_rotary_pos_emb`` in the model's modeling module by the identity (tracing only)."""
    module = sys.modules.get(type(model).__module__)
    original = getattr(module, "apply_rotary_pos_emb", None)
    if original is None:
        yield
        return

    def identity(q, k, *args, **kwargs):
        return q, k

    module.apply_rotary_pos_emb = identity
    try:
        yield
    finally:
        module.apply_rotary_pos_emb = original


def select(model, importance, ratio: float, round_to: int | None, targets: list[int], example_ids,
           timeout_s: float = GRAPH_TIMEOUT_S) -> dict[int, LayerChoice]:
    """Run torch-pruning's graph on the whole model and return, per pruned layer, the query heads and
    MLP channels it removes (original numbering), ranked by ``importance`` (a torch-pruning importance:
    ``scores.library_importance``; for Taylor it reads the gradient hooks' sums, not ``.grad``). Nothing
    is modified."""
    import torch
    import torch_pruning as tp

    from backend.stages.model_io import decoder_layers

    if threading.current_thread() is not threading.main_thread():
        raise TpGraphUnavailable("not on the main thread, where its build cannot be time-limited (SIGALRM)")
    layers = decoder_layers(model)
    first = layers[0].self_attn
    if hasattr(first, "qkv_proj"):
        raise TpGraphUnavailable("fused qkv_proj (Phi-3): torch-pruning 1.6.1 computes a fused layer's head_dim "
                                 "as out_features // (3 * heads), wrong under GQA")
    num_heads, owner = {}, {}
    for i, layer in enumerate(layers):
        a = layer.self_attn
        heads, kv = a.q_proj.out_features // a.head_dim, a.k_proj.out_features // a.head_dim
        num_heads.update({a.q_proj: heads, a.k_proj: kv, a.v_proj: kv})
        owner[a.o_proj] = ("attn", i)
        owner[a.k_proj] = ("kv", i)
        owner[layer.mlp.down_proj] = ("mlp", i)
    ignored = [model.get_output_embeddings(), model.get_input_embeddings(), model.model.norm]
    ignored += [layers[i] for i in range(len(layers)) if i not in set(targets)]
    ignored = [m for m in ignored if m is not None]
    device = next(model.parameters()).device
    try:
        with time_limit(timeout_s, "torch-pruning's whole-model dependency graph"), rotary_as_identity(model), \
                warnings.catch_warnings():
            # RMSNorm weights are "unwrapped parameters" to it; they sit in the hidden-size group,
            # which the ignored layers make unprunable, so its warning about them does not apply
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            pruner = tp.pruner.BasePruner(
                model, example_inputs=example_ids.to(device), importance=importance,
                global_pruning=False, pruning_ratio=ratio, head_pruning_ratio=ratio,
                ignored_layers=ignored, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
                round_to=round_to, forward_fn=lambda m, x: m(input_ids=x, use_cache=False).logits,
            )
    except GreentuiError as exc:
        raise TpGraphUnavailable(str(exc)) from None
    chosen: dict[int, LayerChoice] = {i: LayerChoice([], []) for i in targets}
    with torch.no_grad():
        for group in pruner.step(interactive=True):
            touched = False
            for dep, idxs in group:
                role = owner.get(dep.target.module)
                wanted = {"attn": tp.prune_linear_in_channels, "mlp": tp.prune_linear_in_channels,
                          "kv": tp.prune_linear_out_channels}
                if role is None or dep.handler != wanted[role[0]]:
                    continue
                kind, i = role
                touched = True
                if i not in chosen:
                    raise TpGraphUnavailable(f"its graph would prune layer {i}, which is ignored")
                d = layers[i].self_attn.head_dim
                if kind == "attn":
                    chosen[i].removed_heads = sorted({int(x) // d for x in idxs})
                elif kind == "kv":  # multi-head attention: k (and v) go with their query heads
                    chosen[i].removed_kv_heads = sorted({int(x) // d for x in idxs})
                else:
                    chosen[i].removed_channels = sorted(int(x) for x in idxs)
            if not touched:
                raise TpGraphUnavailable("its graph would prune something other than heads and MLP channels "
                                         f"({group[0].dep.target.module.__class__.__name__})")
    return chosen
