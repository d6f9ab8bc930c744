"""DeciLM (``nemotron-nas``) for transformers: the config vLLM's ``DeciLMForCausalLM`` reads, and a model.

Written into a folder by ``greentui export-model --format decilm`` (as ``modeling_decilm.py``, beside
``modeling_greentui_pruned.py``). ``block_configs`` are kept as objects with attribute access
(``block.attention.n_heads_in_group``, ``block.ffn.ffn_mult``), as vLLM reads them, and serialise back
to the same JSON. The per-layer widths are derived from them with DeciLM's own rule, so loading the
folder with ``trust_remote_code=True`` checks that the blocks state the weights' shapes. Imports only
transformers and torch (through the sibling module).
"""

from __future__ import annotations

from .modeling_greentui_pruned import PrunedConfig, PrunedForCausalLM, PrunedModel

FFN_MULTIPLE = 256


class _Fields(dict):
    """A JSON object whose keys read as attributes (``hasattr`` is False for absent keys)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _block(entry) -> _Fields:
    return _Fields({k: _Fields(v) if isinstance(v, dict) else v for k, v in dict(entry).items()})


def ffn_width(ffn_mult: float, hidden: int) -> int:
    n = int(2 * ffn_mult * hidden / 3)
    return n if n % FFN_MULTIPLE == 0 else n + FFN_MULTIPLE - n % FFN_MULTIPLE


class DeciLMConfig(PrunedConfig):
    model_type = "nemotron-nas"

    block_configs: list | None = None

    def __post_init__(self, **kwargs):
        self.block_configs = [_block(b) for b in self.block_configs or []]
        super().__post_init__(**kwargs)
        heads, hidden = self.num_attention_heads, self.hidden_size
        self.layer_widths = [{"num_attention_heads": heads,
                              "num_key_value_heads": heads // b.attention.n_heads_in_group,
                              "head_dim": self.head_dim,
                              "intermediate_size": ffn_width(b.ffn.ffn_mult, hidden)} for b in self.block_configs]

    def validate_architecture(self):
        for i, b in enumerate(self.block_configs or []):
            if b.attention.no_op or b.ffn.no_op or b.attention.replace_with_linear or b.ffn.replace_with_linear:
                raise ValueError(f"block {i}: no-op and linear-replacement blocks are not supported here")
            if self.num_attention_heads % b.attention.n_heads_in_group:
                raise ValueError(f"block {i}: n_heads_in_group {b.attention.n_heads_in_group} does not divide "
                                 f"{self.num_attention_heads} heads")

    def to_dict(self):
        out = super().to_dict()
        out.pop("layer_widths", None)
        return out


class DeciLMModel(PrunedModel):
    config_class = DeciLMConfig


class DeciLMForCausalLM(PrunedForCausalLM):
    config_class = DeciLMConfig
