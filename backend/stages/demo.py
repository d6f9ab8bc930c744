"""Tiny and small randomly initialised causal LMs with a locally trained tokenizer.

No model hub is reachable on CI or on the developers' machines, yet every stage of the pipeline
(pruning, LoRA, lm-eval, energy) must run for real in tests. These models are the stand-ins: real
Hugging Face architectures (Llama, Qwen2, Qwen3, Mistral, Phi-3, Gemma-2) with grouped-query
attention, saved with ``save_pretrained`` so plain ``AutoModelForCausalLM.from_pretrained`` loads
them. Weights are random, so accuracies sit near chance: the point is the machinery, not the scores.

The head layouts are chosen to exercise the known pruning traps: Qwen2 and Gemma-2 have exactly two
query heads per kv head (torch-pruning #527), Qwen3 has per-head q_norm/k_norm, Phi-3 fuses qkv and
gate_up, Llama has 12 heads over 4 kv heads (heads are pruned per kv group, so ratios round). Every
architecture also comes in a multi-head layout (``attention="mha"``: kv heads == query heads, as in
Llama-2, Vicuna and Phi-3-mini), where a pruned query head takes its k and v heads with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from backend.errors import GreentuiError
from backend.schema.catalog import ARCHITECTURES  # the one list; every one has a tiny shape below
from backend.workspace import PACKAGE_DATA

SIZES = ("tiny", "small")
SPECIAL_TOKENS = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "unk": "<|unk|>"}
MARKER_FILE = "greentui_demo.json"


@dataclass(frozen=True)
class Shape:
    """The few numbers that define a decoder: enough to make every architecture comparable."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int


# tiny: ~1 M parameters, builds and prunes in about a second; small: >=100 M, Llama-shaped, for bench/.
TINY_SHAPES: dict[str, Shape] = {
    "llama": Shape(hidden=192, layers=6, heads=12, kv_heads=4, head_dim=16, intermediate=384, vocab=512),
    "qwen2": Shape(hidden=128, layers=6, heads=8, kv_heads=4, head_dim=16, intermediate=352, vocab=512),
    "qwen3": Shape(hidden=128, layers=6, heads=8, kv_heads=2, head_dim=16, intermediate=352, vocab=512),
    "mistral": Shape(hidden=128, layers=6, heads=8, kv_heads=2, head_dim=16, intermediate=352, vocab=512),
    "phi3": Shape(hidden=128, layers=6, heads=8, kv_heads=2, head_dim=16, intermediate=352, vocab=512),
    "gemma2": Shape(hidden=128, layers=6, heads=8, kv_heads=4, head_dim=16, intermediate=352, vocab=512),
}
SMALL_SHAPE = Shape(hidden=768, layers=16, heads=12, kv_heads=4, head_dim=64, intermediate=2304, vocab=8192)
#: Attention layouts of the demo shapes: grouped-query (the shapes above) or multi-head (kv heads ==
#: query heads). Tests build their shape matrix from ARCHITECTURES x ATTENTION_LAYOUTS, so a family
#: of shapes cannot be left out.
ATTENTION_LAYOUTS: tuple[str, ...] = ("gqa", "mha")


def shape_for(arch: str, size: str, attention: str = "gqa") -> Shape:
    if arch not in ARCHITECTURES:
        raise GreentuiError(f"unknown demo architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if size not in SIZES:
        raise GreentuiError(f"unknown demo size {size!r}; choose tiny or small")
    if attention not in ATTENTION_LAYOUTS:
        raise GreentuiError(f"unknown attention layout {attention!r}; choose one of {', '.join(ATTENTION_LAYOUTS)}")
    shape = TINY_SHAPES[arch] if size == "tiny" else SMALL_SHAPE
    return replace(shape, kv_heads=shape.heads) if attention == "mha" else shape


def training_text() -> Path:
    """Public-domain text shipped with the package (Tiny Shakespeare; see data/text/SOURCES.md)."""
    return PACKAGE_DATA / "text" / "tinyshakespeare.txt"


def build_tokenizer(vocab_size: int):
    """Train a byte-level BPE on the shipped text and wrap it for transformers.

    Byte-level BPE never produces unknown tokens, so any benchmark text tokenizes. The tokenizer does
    not add BOS by itself (like Llama-3's fast tokenizer when ``add_bos_token`` is off); lm-eval
    handles prefixes itself.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(training_text())], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        model_max_length=2048,
    )


def build_config(arch: str, shape: Shape, tokenizer):
    """A transformers config of ``arch`` with the given shape and the tokenizer's special ids."""
    from transformers import AutoConfig

    model_type = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "mistral": "mistral",
                  "phi3": "phi3", "gemma2": "gemma2"}[arch]
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=arch == "gemma2",
    )
    if arch == "phi3":
        common.pop("head_dim")  # Phi-3 derives head_dim from hidden_size / num_attention_heads
    if arch == "mistral":
        common["sliding_window"] = 1024
    if arch in ("qwen2", "qwen3"):
        common["use_sliding_window"] = False
    if arch == "gemma2":
        common["sliding_window"] = 1024
        common["query_pre_attn_scalar"] = shape.head_dim
    return AutoConfig.for_model(model_type, **common)


def build_demo_model(out_dir: str | Path, arch: str = "llama", size: str = "tiny", seed: int = 0,
                     overwrite: bool = False, attention: str = "gqa") -> Path:
    """Write a demo tokenizer + randomly initialised model to ``out_dir``; deterministic for ``seed``."""
    shape = shape_for(arch, size, attention)
    out = Path(out_dir).expanduser()
    try:
        if out.exists() and not out.is_dir():
            raise GreentuiError(f"{out} is a file, not a directory; choose a new or empty directory for the model")
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise GreentuiError(f"{out} exists and is not empty; choose another directory or remove it")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create {out}: {exc.strerror or exc}") from exc

    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(shape.vocab)
    config = build_config(arch, shape, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    marker = {"arch": arch, "size": size, "seed": seed, "attention": attention,
              "params": sum(p.numel() for p in model.parameters()),
              "note": "randomly initialised demo model built by greentui; accuracies are near chance"}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return out
