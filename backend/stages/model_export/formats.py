"""Which export format a pruned model's widths allow, and why: decided from ``config.json`` and the
widths manifest alone (standard library only), so the CLI refuses an impossible ``--format`` before
loading anything and the planner (``pruning/loadability.py``) says up front what will load.

A *width* is one decoder layer's ``{"heads", "kv_heads", "head_dim", "intermediate"}``, the entries of
``greentui_layers.json``.

- ``plain``: every layer has the same width and the architecture's stock config accepts it (Llama and
  Gemma-2 configs refuse a hidden size that is not a multiple of the query heads, even with an
  explicit head_dim): ``AutoModelForCausalLM.from_pretrained(DIR)`` with no extra code.
- ``remote-code``: any widths; a modelling module in the folder (``trust_remote_code=True``).
- ``padded``: removed heads and channels put back as zeros up to one width for every layer, so a stock
  config loads it; the zeros cost parameters and FLOPs, never accuracy.
- ``decilm``: NVIDIA's DeciLM layout for vLLM's ``DeciLMForCausalLM`` (Llama family only): kv groups
  and MLP widths per layer, the query-head count global. Query heads removed inside a kv group are
  padded back as zeros, and MLP widths are padded up to the multiple of 256 DeciLM's ``ffn_mult``
  expresses.
"""

from __future__ import annotations

from typing import Any

from backend.errors import GreentuiError
from backend.schema.catalog import EXPORT_DTYPES, EXPORT_FORMATS

__all__ = ["EXPORT_DTYPES", "EXPORT_FORMATS", "CUSTOM_CODE", "choose_format", "config_refuses", "decilm_problem",
           "describe_widths", "pad_target", "plain_problem"]

#: Model types whose stock config refuses hidden_size % num_attention_heads != 0 (transformers 5).
HEADS_MUST_DIVIDE_HIDDEN = ("llama", "gemma2")
#: Formats whose folder needs ``trust_remote_code=True`` in transformers.
CUSTOM_CODE = ("remote-code", "decilm")
#: DeciLM is Llama's block with per-layer kv groups and FFN widths; Mistral is the same block.
DECILM_ARCHS = ("llama", "mistral")
#: DeciLM states an FFN width as ``ffn_mult``; vLLM turns it back into a multiple of this.
DECILM_FFN_MULTIPLE = 256

Width = dict[str, int]


def config_refuses(model_type: str, hidden: int, width: Width) -> str | None:
    """Why the architecture's stock config cannot state ``width`` for every layer (None: it can)."""
    if width["kv_heads"] <= 0 or width["heads"] % width["kv_heads"]:
        return f"{width['heads']} query heads are not a multiple of {width['kv_heads']} kv heads"
    if model_type in HEADS_MUST_DIVIDE_HIDDEN and hidden % width["heads"]:
        return (f"the stock {model_type} config requires hidden_size ({hidden}) to be a multiple of the query "
                f"heads ({width['heads']}), even with an explicit head_dim")
    return None


def _spans(indices: list[int]) -> str:
    out: list[str] = []
    start = indices[0]
    for a, b in zip(indices, [*indices[1:], None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            if b is not None:  # None: past the last index, no span starts
                start = b
    return ", ".join(out)


def describe_widths(widths: list[Width]) -> str:
    """``layers 0, 5: 12/4 heads, MLP 384; layers 1-4: 8/4 heads, MLP 288`` (one clause per width)."""
    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(widths):
        groups.setdefault((w["heads"], w["kv_heads"], w["head_dim"], w["intermediate"]), []).append(i)
    parts = []
    for (h, kv, _hd, inter), idx in groups.items():
        parts.append(f"layer{'s' if len(idx) > 1 else ''} {_spans(idx)}: {h}/{kv} heads, MLP {inter}")
    return "; ".join(parts)


def plain_problem(model_type: str, hidden: int, widths: list[Width]) -> str | None:
    """Why a stock config cannot describe these layers (None: ``plain`` works)."""
    if not widths:
        return "the model has no decoder layers"
    if any(w != widths[0] for w in widths):
        return f"the layers differ in width ({describe_widths(widths)})"
    return config_refuses(model_type, hidden, widths[0])


def pad_target(model_type: str, hidden: int, widths: list[Width], original: Width) -> Width:
    """The one width every layer is padded to: the smallest that holds every layer (most kv heads,
    most query heads per kv group, widest MLP), or the unpruned width when the stock config refuses
    the smallest one. Raises when no layer layout fits (head_dim differs between layers)."""
    if len({w["head_dim"] for w in widths}) > 1:
        raise GreentuiError("layers differ in head_dim; no zero padding gives them one width")
    kv = max(w["kv_heads"] for w in widths)
    per = max(w["heads"] // w["kv_heads"] for w in widths)
    target = {"heads": kv * per, "kv_heads": kv, "head_dim": widths[0]["head_dim"],
              "intermediate": max(w["intermediate"] for w in widths)}
    if config_refuses(model_type, hidden, target) is None:
        return target
    fits = (original["head_dim"] == target["head_dim"] and original["kv_heads"] >= kv
            and original["heads"] // original["kv_heads"] >= per and original["intermediate"] >= target["intermediate"])
    if fits and config_refuses(model_type, hidden, original) is None:
        return dict(original)
    raise GreentuiError(f"no stock {model_type} config holds every layer after zero padding: "
                        f"{config_refuses(model_type, hidden, target)}")


def decilm_problem(model_type: str, config: dict[str, Any], widths: list[Width]) -> str | None:
    """Why the DeciLM layout (vLLM's ``DeciLMForCausalLM``) cannot hold this model (None: it can)."""
    if model_type not in DECILM_ARCHS:
        return (f"DeciLM is the Llama block; {model_type} is not of the Llama family "
                f"(decilm takes {', '.join(DECILM_ARCHS)})")
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "DeciLM has no projection biases; this model has some"
    window = config.get("sliding_window")
    if model_type == "mistral" and window and window < int(config.get("max_position_embeddings") or 0):
        return f"DeciLM has no sliding-window attention; this model attends within {window} tokens"
    heads = int(config["num_attention_heads"])
    for i, w in enumerate(widths):
        if w["heads"] > heads or heads % w["kv_heads"] or w["heads"] // w["kv_heads"] > heads // w["kv_heads"]:
            return (f"layer {i} has {w['heads']}/{w['kv_heads']} heads; DeciLM keeps {heads} query heads in every "
                    f"layer and needs them to be a multiple of the layer's kv heads")
    return None


def choose_format(requested: str, model_type: str, hidden: int, widths: list[Width],
                  config: dict[str, Any] | None = None) -> tuple[str, str]:
    """(format, why) for ``--format requested``; a GreentuiError names the flag when it cannot be."""
    if requested not in EXPORT_FORMATS:
        raise GreentuiError(f"--format: unknown format {requested!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    problem = plain_problem(model_type, hidden, widths)
    if requested == "auto":
        if problem is None:
            return "plain", "every layer has the same widths and the stock config states them"
        return "remote-code", f"plain is not possible: {problem}"
    if requested == "plain":
        if problem is not None:
            raise GreentuiError(f"--format plain: {problem}; use --format remote-code (the widths kept, loads with "
                                "trust_remote_code=True) or --format padded (zeros added, loads as a stock model)")
        return "plain", "every layer has the same widths and the stock config states them"
    if requested == "decilm":
        why = decilm_problem(model_type, config or {}, widths)
        if why:
            raise GreentuiError(f"--format decilm: {why}")
        return "decilm", "the Llama-family layout fits DeciLM's block_configs (vLLM DeciLMForCausalLM)"
    if requested == "padded":
        return "padded", ("every layer already has one stock width; nothing to pad" if problem is None
                          else f"zeros restore one width in every layer ({problem})")
    return "remote-code", "per-layer widths kept; the folder's modelling module builds each layer at its width"
