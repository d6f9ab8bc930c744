"""GQA-aware attention-head pruning of our own (torch-pruning is not used for heads).

Why not torch-pruning: its dependency graph never finishes when there are exactly two query heads
per kv head (upstream #527: Qwen2 8/4, Gemma-2, Llama 16/8), Qwen3's q_norm/k_norm make it skip
heads silently, and it only removes query heads inside each kv group. Here heads are scored with
the registered importance's per-element score (``pruning/importances.py``: Taylor |w * dL/dw|, L1 |w|,
L2 w^2, random, or a plugin's), summed over the head's rows of q (k, v) and columns of o_proj, and the layer keeps:

* ``kv_keep`` kv heads (highest kv-group score = k/v rows + all query heads of the group), and
* ``q_keep`` query heads inside each kept group (highest head score), the same count in every group
  because Hugging Face attention repeats each kv head ``heads / kv_heads`` times.

How many (``kv_keep``, ``q_keep``) is the counting rule's business (``pruning/counting.py``):
torch-pruning's rule keeps every kv group and removes query heads per group, LLM-Pruner's removes
whole kv groups, greentui's param-share rule picks the pair closest to a parameter share.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HeadPlan:
    heads: int
    kv_heads: int
    keep_q: list[int]  # original query-head indices, grouped by kept kv head
    keep_kv: list[int]

    @property
    def removed_q(self) -> list[int]:
        return [h for h in range(self.heads) if h not in set(self.keep_q)]

    @property
    def removed_kv(self) -> list[int]:
        return [h for h in range(self.kv_heads) if h not in set(self.keep_kv)]


def head_scores(attn, heads: int, kv_heads: int, importance, scores, generator=None):
    """(score per query head, score per kv group) as 1-D float tensors: ``importance`` (a registry
    entry) draws them, or ``scores`` (``pruning/scores.py``) gives its row and column sums."""
    import torch

    d = attn.head_dim
    if importance.drawn:
        return torch.rand(heads, generator=generator), torch.rand(kv_heads, generator=generator)
    if hasattr(attn, "qkv_proj"):
        rows = scores.rows(attn.qkv_proj.weight)
        if attn.qkv_proj.bias is not None:
            rows = rows + scores.elements(attn.qkv_proj.bias)
        q_rows, k_rows, v_rows = rows[:heads * d], rows[heads * d:(heads + kv_heads) * d], rows[(heads + kv_heads) * d:]
    else:
        def per_row(lin):
            r = scores.rows(lin.weight)
            return r + scores.elements(lin.bias) if lin.bias is not None else r
        q_rows, k_rows, v_rows = per_row(attn.q_proj), per_row(attn.k_proj), per_row(attn.v_proj)
    o_cols = scores.cols(attn.o_proj.weight)
    q = q_rows.view(heads, d).sum(1) + o_cols.view(heads, d).sum(1)
    kv = k_rows.view(kv_heads, d).sum(1) + v_rows.view(kv_heads, d).sum(1)
    group = q.view(kv_heads, heads // kv_heads).sum(1) + kv
    return q, group


def has_qkv_bias(attn) -> bool:
    proj = attn.qkv_proj if hasattr(attn, "qkv_proj") else attn.q_proj
    return proj.bias is not None


def plan_heads(attn, heads: int, kv_heads: int, kv_keep: int, q_keep: int, importance, scores,
               generator=None) -> HeadPlan:
    import torch

    q_score, g_score = head_scores(attn, heads, kv_heads, importance, scores, generator)
    per = heads // kv_heads
    keep_kv = sorted(torch.topk(g_score, kv_keep).indices.tolist())
    keep_q: list[int] = []
    for g in keep_kv:
        local = torch.topk(q_score[g * per:(g + 1) * per], q_keep).indices.tolist()
        keep_q.extend(g * per + i for i in sorted(local))
    return HeadPlan(heads=heads, kv_heads=kv_heads, keep_q=keep_q, keep_kv=keep_kv)


def _rows(heads: list[int], d: int, offset: int = 0):
    import torch

    return torch.tensor([offset + h * d + i for h in heads for i in range(d)], dtype=torch.long)


def slice_attention_state(state: dict, prefix: str, plan: HeadPlan, head_dim: int, fused: bool) -> None:
    """Slice the attention entries of a layer state dict (in place) to the planned heads."""
    d, H, KV = head_dim, plan.heads, plan.kv_heads
    q_idx, kv_idx = _rows(plan.keep_q, d), _rows(plan.keep_kv, d)
    if fused:  # rows are [q heads | k heads | v heads]
        idx = q_idx.new_tensor(q_idx.tolist() + _rows(plan.keep_kv, d, H * d).tolist()
                               + _rows(plan.keep_kv, d, (H + KV) * d).tolist())
        for name in ("qkv_proj.weight", "qkv_proj.bias"):
            if prefix + name in state:
                state[prefix + name] = state[prefix + name].index_select(0, idx.to(state[prefix + name].device))
    else:
        for proj, idx in (("q_proj", q_idx), ("k_proj", kv_idx), ("v_proj", kv_idx)):
            for kind in ("weight", "bias"):
                key = f"{prefix}{proj}.{kind}"
                if key in state:
                    state[key] = state[key].index_select(0, idx.to(state[key].device))
    key = prefix + "o_proj.weight"
    state[key] = state[key].index_select(1, q_idx.to(state[key].device))
