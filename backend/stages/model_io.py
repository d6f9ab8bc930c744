"""Save and load causal LMs, including structurally pruned ones whose layers differ in width.

A pruned model is saved with plain ``save_pretrained`` (safetensors, never pickle) plus, when its
decoder layers do not all have the same widths, ``greentui_layers.json``: one entry per layer with
its query heads, kv heads, head_dim and MLP intermediate size. ``config.json`` then keeps the
original (unpruned) widths, so a plain ``from_pretrained`` fails loudly with size mismatches instead
of silently re-initialising weights; ``load_model`` reads the manifest, rebuilds every layer at its
own width from a per-layer copy of the config, and loads the weights with no missing or unexpected
keys. When all layers share one width the config is rewritten with it and no manifest is written,
so any Hugging Face tool loads the directory -- unless the config class refuses that width (Llama and
Gemma-2 require hidden_size % num_attention_heads == 0), in which case the manifest is kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError

MANIFEST = "greentui_layers.json"
REPORT = "greentui_prune_report.json"
MANIFEST_VERSION = 1


def decoder_layers(model):
    """The ``nn.ModuleList`` of decoder layers of a HF causal LM (``model.model.layers``)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise GreentuiError(f"{type(model).__name__} has no model.layers; not a supported decoder LM")
    return layers


def _attn_widths(attn, config) -> tuple[int, int, int]:
    head_dim = attn.head_dim
    if hasattr(attn, "qkv_proj"):  # Phi-3: rows are [q | k | v]
        q_rows = attn.o_proj.in_features
        kv_rows = (attn.qkv_proj.out_features - q_rows) // 2
    else:
        q_rows, kv_rows = attn.q_proj.out_features, attn.k_proj.out_features
    return q_rows // head_dim, kv_rows // head_dim, head_dim


def _mlp_width(mlp) -> int:
    return mlp.down_proj.in_features


def layer_widths(model) -> list[dict[str, int]]:
    """Per decoder layer: ``{"heads", "kv_heads", "head_dim", "intermediate"}`` read from the weights."""
    out = []
    for layer in decoder_layers(model):
        heads, kv, hd = _attn_widths(layer.self_attn, model.config)
        out.append({"heads": heads, "kv_heads": kv, "head_dim": hd, "intermediate": _mlp_width(layer.mlp)})
    return out


def is_uniform(widths: list[dict[str, int]]) -> bool:
    return all(w == widths[0] for w in widths)


def layer_config(config, width: dict[str, int]):
    """A copy of ``config`` describing one layer of the given widths (head_dim pinned explicitly,
    since Phi-3 would otherwise derive it from hidden_size / num_attention_heads)."""
    cfg = copy.deepcopy(config)
    cfg.num_attention_heads = int(width["heads"])
    cfg.num_key_value_heads = int(width["kv_heads"])
    cfg.head_dim = int(width["head_dim"])
    cfg.intermediate_size = int(width["intermediate"])
    return cfg


def config_matches(config, width: dict[str, int]) -> bool:
    hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (config.num_attention_heads == width["heads"] and config.num_key_value_heads == width["kv_heads"]
            and hd == width["head_dim"] and config.intermediate_size == width["intermediate"])


def config_accepts(config, width: dict[str, int]) -> bool:
    """Whether the model-level config can state ``width`` for every layer. Llama and Gemma-2 configs
    (transformers 5) refuse to save or load when hidden_size is not a multiple of the head count,
    even with an explicit head_dim: such models keep the manifest even when uniform."""
    cfg = copy.deepcopy(config)
    set_uniform_config(cfg, width)
    check = getattr(cfg, "validate", None)
    if check is None:
        return True
    try:
        check()
    except Exception:  # noqa: BLE001 - huggingface_hub's StrictDataclassClassValidationError and kin
        return False
    return True


def set_uniform_config(config, width: dict[str, int]) -> None:
    """Rewrite the model-level config with one width shared by every layer."""
    config.num_attention_heads = int(width["heads"])
    config.num_key_value_heads = int(width["kv_heads"])
    config.intermediate_size = int(width["intermediate"])
    if config.model_type != "phi3" or width["head_dim"] != config.hidden_size // width["heads"]:
        config.head_dim = int(width["head_dim"])


def save_model(model, tokenizer, out_dir, report: dict | None = None) -> Path:
    """Save weights (safetensors), config, tokenizer, the widths manifest (non-uniform only) and the
    report JSON into ``out_dir`` (created; it may exist only if empty)."""
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GreentuiError(f"{out} exists and is not empty; choose another directory or remove it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create {out}: {exc.strerror or exc}") from exc
    widths = layer_widths(model)
    uniform = is_uniform(widths) and config_accepts(model.config, widths[0])
    if uniform:
        set_uniform_config(model.config, widths[0])
    model.save_pretrained(out, safe_serialization=True)
    if not uniform:
        manifest = {"version": MANIFEST_VERSION, "num_hidden_layers": len(widths), "layers": widths,
                    "note": "per-layer widths of a structurally pruned model; load with "
                            "backend.stages.models.load_model (plain from_pretrained cannot)"}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if report is not None:
        (out / REPORT).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out


def _read_state_dict(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state: dict[str, Any] = {}
    for name in files:
        f = path / name
        if not f.exists():
            raise GreentuiError(f"{path} has no {name}; pruned models are saved as safetensors")
        state.update(load_file(str(f)))
    return state


def _load_pruned(path: Path, manifest: dict, device: str, dtype, trust_remote_code: bool):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    widths = manifest["layers"]
    if len(widths) != config.num_hidden_layers:
        raise GreentuiError(f"{path / MANIFEST} lists {len(widths)} layers but config.json has "
                            f"{config.num_hidden_layers}; the directory is inconsistent")
    state = _read_state_dict(path)
    if dtype is None:
        floats = [t.dtype for t in state.values() if t.is_floating_point()]
        dtype = floats[0] if floats else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
        layers = decoder_layers(model)
        for i, w in enumerate(widths):
            if not config_matches(config, w):
                cls = type(layers[i])
                layers[i] = cls(layer_config(config, w), layer_idx=i).to(dtype=dtype)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # size mismatches
        raise GreentuiError(f"{path}: weights do not match the widths manifest: "
                            f"{str(exc).splitlines()[-1].strip()}") from exc
    tied = set()
    if getattr(config, "tie_word_embeddings", False):
        tied = {"lm_head.weight"}
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise GreentuiError(f"{path}: weights do not match the widths manifest "
                            f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    if tied:
        model.tie_weights()
    model.eval()
    return model


def set_attention(model, implementation: str | None) -> str | None:
    """Switch the attention kernel of ``model`` *and* of every layer's own config copy; return the
    previous one. Pruning calibrates with eager attention (backward through it everywhere) and puts
    the model's own kernel back, so vanilla and pruned are evaluated with the same attention."""
    previous = getattr(model.config, "_attn_implementation", None)
    if implementation is None:
        return previous
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    else:
        model.config._attn_implementation = implementation
    for layer in decoder_layers(model):
        for module in layer.modules():
            cfg = getattr(module, "config", None)
            if cfg is not None and hasattr(cfg, "_attn_implementation"):
                cfg._attn_implementation = implementation
    return previous


def load_model(path, *, device: str = "cpu", dtype=None, trust_remote_code: bool = False, gpus: int = 1):
    """Load ``(model, tokenizer)`` from a local directory or a HF id; pruned dirs with a widths
    manifest are rebuilt layer by layer. Attention is transformers' default for the architecture
    (SDPA, or eager where the model needs it, e.g. Gemma-2's soft-capping); weights come from
    safetensors only (never unpickled); on CUDA they load straight onto the device. ``gpus`` > 1
    spreads the layers over the visible GPUs (``device_map="auto"``: a model too big for one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(str(path)).expanduser()
    manifest_file = p / MANIFEST
    try:
        if manifest_file.exists():
            manifest = json.loads(manifest_file.read_text())
            model = _load_pruned(p, manifest, device, dtype, trust_remote_code)
        else:
            ref = str(p) if p.exists() else str(path)
            kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
            if dtype is not None:
                kwargs["dtype"] = dtype
            spread = gpus > 1 and str(device).startswith("cuda")
            if str(device).startswith("cuda"):
                kwargs["device_map"] = "auto" if spread else device
            model = AutoModelForCausalLM.from_pretrained(ref, **kwargs)
            if not spread:
                # transformers decorates ``to`` with functools.wraps, whose typeshed stub (_Wrapped) binds
                # no self: mypy reads the device as the model argument
                model = model.to(device)  # type: ignore[arg-type]
            model.eval()
        tok_ref = str(p) if p.exists() else str(path)
        tokenizer = AutoTokenizer.from_pretrained(tok_ref, trust_remote_code=trust_remote_code)
    except GreentuiError:
        raise
    except (OSError, ValueError) as exc:
        raise GreentuiError(f"cannot load model {path}: {_first_line(exc)}") from exc
    except RuntimeError as exc:  # transformers' size-mismatch report ends in a RuntimeError; torch's OOM is one
        raise GreentuiError(f"cannot load model {path}: {_mismatch(p) or _first_line(exc)}") from exc
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _mismatch(path: Path) -> str | None:
    """What the safetensors headers say is wrong with ``path`` against its config.json, if anything."""
    from backend.stages.models import weights_problem

    try:
        return weights_problem(path, json.loads((path / "config.json").read_text())) if path.is_dir() else None
    except (GreentuiError, OSError, ValueError):
        return None
