"""NVIDIA's DeciLM layout (``model_type: nemotron-nas``, ``block_configs``), which vLLM's
``DeciLMForCausalLM`` serves natively: per layer a kv-group size (``n_heads_in_group``) and an FFN
width (``ffn_mult``), the query-head count global. Standard library only.

How vLLM reads a block (``vllm/model_executor/models/nemotron_nas.py``): kv heads =
``num_attention_heads // n_heads_in_group``; FFN width = ``int(2 * ffn_mult * hidden / 3)`` rounded up
to a multiple of 256. So every layer is padded (``padding.py``) to the global query heads inside its
kv groups and to an FFN width that is a multiple of 256; ``ffn_mult`` is chosen so that vLLM's rule
gives that width back (checked here, and by the folder's own transformers module, which derives the
widths from ``block_configs`` with the same rule).
"""

from __future__ import annotations

from typing import Any

from backend.errors import GreentuiError
from backend.stages.model_export.formats import DECILM_FFN_MULTIPLE, Width

MODEL_TYPE = "nemotron-nas"
ARCHITECTURE = "DeciLMForCausalLM"


def ffn_width(ffn_mult: float, hidden: int) -> int:
    """vLLM's (and DeciLM's) FFN width for ``ffn_mult``."""
    n = int(2 * ffn_mult * hidden / 3)
    return n if n % DECILM_FFN_MULTIPLE == 0 else n + DECILM_FFN_MULTIPLE - n % DECILM_FFN_MULTIPLE


def ffn_mult_for(width: int, hidden: int) -> float:
    """The ``ffn_mult`` that gives ``width`` (a multiple of 256) back under vLLM's rule."""
    mult = 3 * width / (2 * hidden)
    if ffn_width(mult, hidden) != width:
        raise GreentuiError(f"no ffn_mult gives an FFN width of {width} at hidden size {hidden}")
    return mult


def layout(config: dict[str, Any], widths: list[Width]) -> tuple[list[Width], list[dict[str, Any]]]:
    """(the width each layer is padded to, the ``block_configs``)."""
    heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    targets, blocks = [], []
    for w in widths:
        inter = -(-w["intermediate"] // DECILM_FFN_MULTIPLE) * DECILM_FFN_MULTIPLE
        targets.append({"heads": heads, "kv_heads": w["kv_heads"], "head_dim": w["head_dim"], "intermediate": inter})
        blocks.append({"attention": {"no_op": False, "replace_with_linear": False,
                                     "n_heads_in_group": heads // w["kv_heads"]},
                       "ffn": {"no_op": False, "replace_with_linear": False,
                               "ffn_mult": ffn_mult_for(inter, hidden), "intermediate_size": inter}})
    return targets, blocks


def decilm_config(config: dict[str, Any], blocks: list[dict[str, Any]], module: str) -> dict[str, Any]:
    """config.json for the DeciLM folder: the Llama fields, ``block_configs``, and ``auto_map`` to the
    folder's module (transformers needs it; vLLM reads the config through it too)."""
    out = {k: v for k, v in config.items() if k not in ("architectures", "auto_map", "layer_widths",
                                                         "per_layer_config", "sliding_window", "use_sliding_window")}
    out.update({"model_type": MODEL_TYPE, "architectures": [ARCHITECTURE], "block_configs": blocks,
                "intermediate_size": max(ffn_width(b["ffn"]["ffn_mult"], int(config["hidden_size"])) for b in blocks),
                "auto_map": {"AutoConfig": f"{module}.DeciLMConfig", "AutoModelForCausalLM": f"{module}.DeciLMForCausalLM"}})
    return out
