"""A structurally pruned model whose decoder layers differ in width, for stock transformers.

Written into an exported folder by ``greentui export-model --format remote-code`` (as
``modeling_greentui_pruned.py``, with ``ARCH`` set) and wired through ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``, ``pipeline("text-generation")``
and ``lm_eval --model hf --model_args pretrained=DIR,trust_remote_code=True`` load it.

Why it exists: transformers' own modelling builds every decoder layer from the global config, so a
model pruned with its first and last layers kept whole (the study's recipe) cannot be described by a
stock config. Here each layer is the architecture's *own* decoder layer class, built from a copy of
the config that states that layer's widths; embeddings, norms, the forward pass, generation and the
attention kernels are all inherited, never copied.

The widths are ``config.layer_widths`` (one ``{num_attention_heads, num_key_value_heads, head_dim,
intermediate_size}`` per layer). Where the installed transformers knows heterogeneous configs
(``per_layer_config``), config.json states the same widths in that form too, and the layers are built
from transformers' own per-layer views. Imports only transformers and torch.
"""

from __future__ import annotations

import copy
import importlib
from typing import TYPE_CHECKING

from torch import nn

ARCH = "llama"
PREFIXES = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral", "phi3": "Phi3",
            "gemma2": "Gemma2"}
WIDTH_FIELDS = ("num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size")

if TYPE_CHECKING:
    # A base class named by a string at import time has no static type: the checker reads this template
    # as it is shipped, for Llama (the other architectures' classes share these classes' interface).
    from transformers.models.llama.configuration_llama import LlamaConfig as _StockConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer as _DecoderLayer
    from transformers.models.llama.modeling_llama import LlamaForCausalLM as _StockForCausalLM
    from transformers.models.llama.modeling_llama import LlamaModel as _StockModel
else:
    _prefix = PREFIXES[ARCH]
    _configuration = importlib.import_module(f"transformers.models.{ARCH}.configuration_{ARCH}")
    _modeling = importlib.import_module(f"transformers.models.{ARCH}.modeling_{ARCH}")
    _StockConfig = getattr(_configuration, f"{_prefix}Config")
    _StockModel = getattr(_modeling, f"{_prefix}Model")
    _StockForCausalLM = getattr(_modeling, f"{_prefix}ForCausalLM")
    _DecoderLayer = getattr(_modeling, f"{_prefix}DecoderLayer")


class PrunedConfig(_StockConfig):
    """The architecture's config plus ``layer_widths``; the global widths are those of the unpruned model."""

    layer_widths: list | None = None

    def validate_architecture(self):
        """Each layer's widths must make sense (query heads a multiple of kv heads); the global check of
        the stock config reads widths that vary per layer."""
        for i, width in enumerate(self.layer_widths or []):
            if width["num_attention_heads"] % width["num_key_value_heads"]:
                raise ValueError(f"layer {i}: {width['num_attention_heads']} query heads are not a multiple of "
                                 f"{width['num_key_value_heads']} kv heads")

    def layer_config(self, index: int):
        """A homogeneous config describing decoder layer ``index`` at its own widths."""
        if getattr(self, "is_heterogeneous", False):
            return self.per_layer_config[index]
        if self.layer_widths is None:
            raise ValueError("config.json has no layer_widths: not a model exported by greentui export-model")
        layer = copy.copy(self)
        for name in WIDTH_FIELDS:
            setattr(layer, name, self.layer_widths[index][name])
        return layer

    def stock_twin(self):
        """A homogeneous copy at layer 0's widths and with no layers: what the stock ``__init__`` builds
        the embeddings, norm and rotary embedding from (head_dim is the same in every layer)."""
        twin = copy.copy(self.layer_config(0))
        twin.__dict__.pop("_heterogeneity_spec", None)
        twin.num_hidden_layers = 0
        return twin


def _rebuild(module, config) -> None:
    """Point ``module`` at the real config, keeping the attention kernel the stock init resolved."""
    config._attn_implementation_internal = module.config._attn_implementation_internal
    module.config = config


class PrunedModel(_StockModel):
    config_class = PrunedConfig

    def __init__(self, config):
        super().__init__(config.stock_twin())
        _rebuild(self, config)
        self.layers = nn.ModuleList(_DecoderLayer(config.layer_config(i), i) for i in range(config.num_hidden_layers))
        self.post_init()


class PrunedForCausalLM(_StockForCausalLM):
    config_class = PrunedConfig

    def __init__(self, config):
        super().__init__(config.stock_twin())
        _rebuild(self, config)
        self.model = PrunedModel(config)
        self.post_init()

    def set_attn_implementation(self, attn_implementation, *args, **kwargs):
        """The stock switch, then the per-layer configs, which the stock code does not know of."""
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        for layer in self.model.layers:
            for module in layer.modules():
                config = getattr(module, "config", None)
                if config is not None and config is not self.config:
                    config._attn_implementation_internal = self.config._attn_implementation_internal
