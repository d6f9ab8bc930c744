"""How many heads and MLP channels a pruning ratio removes: the three counting rules.

Standard library only (no torch): ``backend.stages.prune`` uses it on a loaded model and ``backend.stages.pruning.plan``
on a bare ``config.json``, so the planner's figures are the pruner's by construction.

Every rule is applied to each pruned decoder layer on its own; which heads/channels go is decided
by the importance (Taylor, L1, L2, random) afterwards, the rule only fixes *how many*.

``torch-pruning`` — torch-pruning 1.6.1 as its LLM example drives it (``examples/LLMs/prune_llm.py``:
    ``BasePruner(global_pruning=False, pruning_ratio=r, head_pruning_ratio=r, num_heads={q: H, k: KV,
    v: KV}, prune_num_heads=True, prune_head_dims=False, round_to=…)``), with the decoder layers
    outside the range in ``ignored_layers`` (which makes the hidden-size group unprunable, as in the
    study). Matched in ``torch_pruning/pruner/algorithms/base_pruner.py`` ``BasePruner._prune``:

    * heads, local pruning: ``n = ceil(r * H)`` (``len(head_imp)`` is the q-head count), then for
      GQA ``ceil(n / KV)`` query heads leave *every* kv group; kv heads are never removed ("disable
      head pruning for the kv layers if GQA is enabled");
    * ratios come from ``linear_scheduler(r, 1)[1] == r``;
    * MLP channels: ``n_pruned = C - int(C * (1 - r))`` then ``_round_to``: the kept width
      ``current - n_pruned`` is rounded *down* to a multiple of ``round_to``; ``current`` is the out
      width of the root (``2C`` for Phi-3's fused ``gate_up_proj``, whose two halves are
      ``out_channel_groups=2``).

    The library would remove every query head of a group when ``ceil(n / KV)`` reaches the group
    size (``topk`` over the whole group); here one head per group is kept and a warning says so.

``llm-pruner`` — LLM-Pruner block-wise (``hf_prune.py --block_wise``; ``llama3.py`` for GQA), its
    bundled torch-pruning ``MetaPruner.prune_local``: the attention root is ``k_proj`` (``q_proj``
    when there is no GQA) with ``consecutive_groups=head_dim``, so ``n = KV*d - int(KV*d*(1 - r))``
    channels become ``n // d`` whole kv heads, removed with all their query heads; the MLP root
    ``gate_proj`` loses ``C - int(C * (1 - r))`` channels. ``llama3.py`` passes no ``round_to``, so
    ``--round-to`` does not apply to this rule. Its layer range ``[start, end)`` is
    ``[ignore_first, layers - ignore_last)``. At least one kv group is kept.

``param-share`` — greentui's first rule: ``r`` is the share of the layer's attention + MLP projection
    parameters to remove. Heads go in (kv groups, q heads per group) pairs, the pair whose removed
    share of the attention weights is closest to ``r`` (ties keep more); the MLP then loses what
    brings the layer's total removal to ``r`` (at most 95 % of it), kept width the multiple of
    ``round_to`` nearest to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from backend.schema.catalog import DEFAULT_RULE, LEGACY_RULE, RULES  # noqa: F401 (the names live in the catalog)

MLP_CAP = 0.95  # param-share never removes more than this share of a layer's MLP


@dataclass(frozen=True)
class LayerShape:
    """One decoder layer's prunable widths and the bias flags that change its parameter count."""

    hidden: int
    head_dim: int
    heads: int
    kv_heads: int
    intermediate: int
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    fused_mlp: bool = False  # Phi-3's gate_up_proj

    def attention_params(self, heads: int | None = None, kv_heads: int | None = None) -> int:
        """Parameters of q, k, v and o (weights and biases) at the given head counts."""
        h = self.heads if heads is None else heads
        kv = self.kv_heads if kv_heads is None else kv_heads
        bias = self.head_dim * (h + 2 * kv) if self.qkv_bias else 0
        return self.hidden * self.head_dim * (2 * h + 2 * kv) + bias + (self.hidden if self.o_bias else 0)

    def mlp_params(self, intermediate: int | None = None) -> int:
        """Parameters of gate, up and down (weights and biases) at the given width."""
        c = self.intermediate if intermediate is None else intermediate
        return 3 * self.hidden * c + ((2 * c + self.hidden) if self.mlp_bias else 0)


@dataclass(frozen=True)
class LayerCounts:
    """What one pruned layer keeps: ``kv_heads`` kv heads, ``q_per_kv`` query heads in each."""

    heads: int
    kv_heads: int
    intermediate: int
    warnings: tuple[str, ...] = field(default=())

    @property
    def q_per_kv(self) -> int:
        return self.heads // self.kv_heads


def _attention_weights(hidden: int, head_dim: int, heads: int, kv_heads: int) -> int:
    return hidden * head_dim * (2 * heads + 2 * kv_heads)


def param_share_heads(s: LayerShape, ratio: float) -> tuple[int, int]:
    """(kv heads kept, q heads kept per kv head) whose removed share of the attention weights is
    closest to ``ratio`` (ties keep more). This is greentui's first rule, unchanged."""
    per = s.heads // s.kv_heads
    full = _attention_weights(s.hidden, s.head_dim, s.heads, s.kv_heads)
    best: tuple[tuple[float, float], tuple[int, int]] | None = None
    for kv in range(1, s.kv_heads + 1):
        for q in range(1, per + 1):
            removed = 1 - _attention_weights(s.hidden, s.head_dim, kv * q, kv) / full
            key = (abs(removed - ratio), removed)
            if best is None or key < best[0]:
                best = (key, (kv, q))
    if best is None:  # fewer query heads than kv heads: no (kv, q) pair to choose from
        raise ValueError(f"a layer with {s.heads} query heads and {s.kv_heads} kv heads has no whole kv group "
                         "to keep")
    return best[1]


def keep_nearest(intermediate: int, ratio: float, round_to: int | None) -> int:
    """param-share's MLP width: the multiple of ``round_to`` nearest to ``intermediate * (1 - ratio)``
    (at least one multiple, never more than ``intermediate``)."""
    step = max(1, round_to or 1)
    if intermediate <= step:
        return intermediate
    keep = int(round(intermediate * (1 - ratio) / step)) * step
    return min(intermediate, max(step, keep))


def torch_pruning_q_removed_per_group(heads: int, kv_heads: int, ratio: float) -> int:
    """base_pruner.py, local head pruning: ``ceil(ceil(r * H) / KV)`` query heads per kv group."""
    n = math.ceil(ratio * heads)
    return math.ceil(n / kv_heads) if heads != kv_heads else n


def torch_pruning_mlp_keep(intermediate: int, ratio: float, round_to: int | None, fused: bool = False) -> int:
    """base_pruner.py: ``n_pruned = C - int(C * (1 - r))``, then ``_round_to`` rounds the kept width
    of the root (``2C`` for a fused gate_up) down to a multiple of ``round_to``."""
    c = intermediate
    n_pruned = c - int(c * (1 - ratio))
    if n_pruned > 0 and round_to:
        current = 2 * c if fused else c
        rounded = current - n_pruned
        rounded -= rounded % round_to
        n_pruned = max(current - rounded, 0)
    return max(c - n_pruned, 0)


def llm_pruner_kv_removed(kv_heads: int, head_dim: int, ratio: float) -> int:
    """LLM-Pruner ``prune_local`` on the k_proj root with ``consecutive_groups=head_dim``."""
    channels = kv_heads * head_dim
    n_pruned = channels - int(channels * (1 - ratio))
    return n_pruned // head_dim


def llm_pruner_mlp_keep(intermediate: int, ratio: float) -> int:
    return int(intermediate * (1 - ratio))


def layer_counts(rule: str, s: LayerShape, ratio: float, round_to: int | None,
                 prune_heads: bool = True, prune_mlp: bool = True) -> LayerCounts:
    """The widths one layer of shape ``s`` keeps under ``rule`` at ``ratio``."""
    if rule not in RULES:
        raise ValueError(f"unknown counting rule {rule!r}; choose one of {', '.join(RULES)}")
    warnings: list[str] = []
    per = s.heads // s.kv_heads
    heads, kv, inter = s.heads, s.kv_heads, s.intermediate
    if rule == "torch-pruning":
        if prune_heads and s.heads == s.kv_heads:  # no GQA: whole heads, q with their k and v
            out = min(torch_pruning_q_removed_per_group(s.heads, s.kv_heads, ratio), s.heads - 1)
            heads = kv = s.heads - out
        elif prune_heads:
            q_out = torch_pruning_q_removed_per_group(s.heads, s.kv_heads, ratio)
            if q_out >= per:
                warnings.append(f"torch-pruning's count removes {q_out} of the {per} query heads of every "
                                f"kv group; one per group is kept")
                q_out = per - 1
            heads = s.kv_heads * (per - q_out)
        if prune_mlp:
            inter = max(1, torch_pruning_mlp_keep(s.intermediate, ratio, round_to, s.fused_mlp))
    elif rule == "llm-pruner":
        if prune_heads:
            kv_out = llm_pruner_kv_removed(s.kv_heads, s.head_dim, ratio)
            if kv_out >= s.kv_heads:
                warnings.append(f"LLM-Pruner's count removes all {s.kv_heads} kv groups; one is kept")
                kv_out = s.kv_heads - 1
            kv = s.kv_heads - kv_out
            heads = kv * per
        if prune_mlp:
            inter = max(1, llm_pruner_mlp_keep(s.intermediate, ratio))
    else:  # param-share
        a_removed = 0
        if prune_heads:
            kv, q = param_share_heads(s, ratio)
            heads = kv * q
            a_removed = s.attention_params() - s.attention_params(heads, kv)
        if prune_mlp:
            m_params = s.mlp_params()
            total = s.attention_params() + m_params if prune_heads else m_params
            want = min(MLP_CAP, max(0.0, (ratio * total - a_removed) / m_params))
            inter = keep_nearest(s.intermediate, want, round_to)
    return LayerCounts(heads=heads, kv_heads=kv, intermediate=inter, warnings=tuple(warnings))
