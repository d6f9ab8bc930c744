"""Resolve a model reference and describe it without loading its weights.

A reference is a local directory, a Hugging Face id (``org/name``), or an entry of the local HF cache.
Describing reads ``config.json`` and the safetensors headers only (no torch), so the CLI and the UI
can list models instantly and exact parameter counts hold for pruned, non-uniform checkpoints too.
Loading weights lives in ``backend.stages.model_io`` (re-exported here as ``load_model``).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError

# Model types greentui can prune and evaluate end to end (see backend.stages.prune for the traps of each).
from backend.schema.catalog import ARCHITECTURES as SUPPORTED_ARCHS

HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
ENCODER_ONLY = {"bert", "roberta", "deberta", "deberta-v2", "distilbert", "albert", "electra",
                "xlm-roberta", "camembert", "mpnet", "modernbert", "t5", "bart", "mt5"}


@dataclass
class ModelInfo:
    """What the Models screen and ``greentui models`` show about one model."""

    ref: str
    name: str
    source: str  # local | hub | cache | demo
    path: str | None
    arch: str | None
    params: int | None
    layers: int | None
    heads: int | None
    kv_heads: int | None
    hidden: int | None
    intermediate: int | None
    dtype: str | None
    size_bytes: int | None
    pruned: bool = False
    supported: bool = True

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


MAX_REF = 4096  # PATH_MAX; a component longer than NAME_MAX (255) cannot exist either


def _exists(path: Path) -> bool:
    """``Path.exists`` that answers False for names the OS refuses (too long, NUL)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref and not HF_ID.match(ref) or _exists(Path(ref))


def check_reference(ref: str) -> str:
    """The reference stripped, or a one-line error for one no model can have (control characters
    such as a newline, which would also split every message that quotes it; absurd lengths)."""
    if not isinstance(ref, str):
        raise GreentuiError(f"a model reference must be text, got {type(ref).__name__}")
    ref = ref.strip()
    if not ref:
        raise GreentuiError("empty model reference; give a local directory or a Hugging Face id")
    bad = next((c for c in ref if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise GreentuiError(f"model reference {ref[:80]!r} contains a control character ({bad!r}); "
                            "give a directory or a Hugging Face id on one line")
    longest = max(len(part) for part in ref.split("/"))
    if len(ref) > MAX_REF or longest > 255:
        raise GreentuiError(f"model reference is too long ({len(ref)} characters, a name of {longest}): "
                            f"{ref[:40]!r}…; no file system has such a path")
    return ref


def hub_cache_dir() -> Path:
    """The HF hub cache as the environment says *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str) -> Path | None:
    """The newest snapshot of ``repo_id`` in the local HF cache, if any (no network)."""
    try:
        from huggingface_hub import scan_cache_dir
        info = scan_cache_dir(hub_cache_dir())
    except Exception:  # no cache dir yet, or unreadable: simply not cached
        return None
    for repo in info.repos:
        if repo.repo_id == repo_id and repo.repo_type == "model":
            revs = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            for rev in revs:
                if (Path(rev.snapshot_path) / "config.json").exists():
                    return Path(rev.snapshot_path)
    return None


def list_cached_models() -> list[str]:
    """HF ids of causal-LM-looking models in the local cache (for the Models screen)."""
    try:
        from huggingface_hub import scan_cache_dir
        info = scan_cache_dir(hub_cache_dir())
    except Exception:
        return []
    return sorted(r.repo_id for r in info.repos if r.repo_type == "model")


def resolve(ref: str) -> tuple[str, Path | None, str]:
    """Return (canonical ref, local path or None, source); raise GreentuiError with a clear reason."""
    ref = check_reference(ref)
    if _looks_like_path(ref):
        try:
            path = Path(ref).expanduser().resolve()
        except (OSError, RuntimeError) as exc:
            raise GreentuiError(f"cannot resolve the model path {ref!r}: {exc}") from None
        if not _exists(path):
            raise GreentuiError(f"no such model directory: {path}")
        if not path.is_dir():
            raise GreentuiError(f"{path} is a file, not a model directory (expected config.json and weights)")
        if not (path / "config.json").exists():
            raise GreentuiError(f"{path} is not a model directory: it has no config.json")
        source = "demo" if (path / "greentui_demo.json").exists() else "local"
        return str(path), path, source
    if not HF_ID.match(ref):
        raise GreentuiError(f"{ref!r} is neither an existing directory nor a Hugging Face id (org/name)")
    snap = cached_snapshot(ref)
    if snap is not None:
        return ref, snap, "cache"
    from backend.workspace import hub_reachable
    if not hub_reachable():
        raise GreentuiError(f"model {ref!r} is not in the local HF cache and the Hugging Face hub is "
                            "unreachable (offline?); download it on a connected machine or pass a local directory")
    return ref, None, "hub"


def read_config(path: Path | None, ref: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """config.json as a dict: from disk, else fetched from the hub (only the small JSON file)."""
    if path is not None:
        try:
            cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise GreentuiError(f"cannot read {path / 'config.json'}: {exc}") from None
        if not isinstance(cfg, dict):
            raise GreentuiError(f"{path / 'config.json'} holds a JSON {type(cfg).__name__}, not the object of "
                                "a model configuration")
        return cfg
    try:
        from huggingface_hub import hf_hub_download
        cfg_file = hf_hub_download(ref, "config.json")
    except Exception as exc:
        raise GreentuiError(f"cannot fetch the config of {ref!r} from the Hugging Face hub: {exc}") from exc
    try:
        cfg = json.loads(Path(cfg_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise GreentuiError(f"cannot read the config of {ref!r}: {exc}") from None
    if not isinstance(cfg, dict):
        raise GreentuiError(f"the config of {ref!r} is not a JSON object")
    return cfg


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs nest the language model's numbers under text_config."""
    tc = cfg.get("text_config")
    return tc if isinstance(tc, dict) and tc else cfg


def architectures(cfg: dict[str, Any]) -> list[str]:
    """``architectures`` as a list of names (a lone string is one name, not a list of letters)."""
    archs = cfg.get("architectures") or []
    if isinstance(archs, str):
        return [archs]
    if not isinstance(archs, list):
        return [str(archs)]
    return [str(a) for a in archs]


def check_causal_lm(cfg: dict[str, Any], where: str) -> None:
    model_type = cfg.get("model_type", "?")
    if not isinstance(model_type, str):
        raise GreentuiError(f"{where}: config.json's model_type is {model_type!r}, not a name")
    archs = architectures(cfg)
    if model_type in ENCODER_ONLY or (archs and not any("CausalLM" in a or "LMHead" in a for a in archs)):
        raise GreentuiError(f"{where} holds a {model_type} model ({', '.join(archs) or 'no architectures'}), "
                            "which is not a decoder-only causal LM; greentui prunes and evaluates causal LMs "
                            f"({', '.join(SUPPORTED_ARCHS)})")


MAX_HEADER_BYTES = 100 * 2**20


def safetensors_headers(path: Path) -> dict[Path, dict[str, dict[str, Any]]]:
    """Each ``*.safetensors`` file's header (tensor name -> dtype, shape), read without torch: an
    8-byte little-endian length, then that much JSON. One-line error naming a file that is not one."""
    out: dict[Path, dict[str, dict[str, Any]]] = {}
    for f in sorted(path.glob("*.safetensors")):
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > MAX_HEADER_BYTES:
                    raise ValueError(f"header of {n} bytes")
                header = json.loads(fh.read(n))
            if not isinstance(header, dict):
                raise ValueError(f"a JSON {type(header).__name__} header")
            tensors = {}
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                tensors[str(name)] = {"dtype": str(meta["dtype"]), "shape": [int(d) for d in meta["shape"]]}
        except (OSError, struct.error, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise GreentuiError(f"{f} is not a readable safetensors file ({exc})") from None
        out[f] = tensors
    return out


def safetensors_params(path: Path) -> tuple[int | None, str | None]:
    """Count parameters from the safetensors headers (8-byte length + JSON), without torch."""
    headers = safetensors_headers(path)
    if not headers:
        return None, None
    total = 0
    dtypes: dict[str, int] = {}
    for tensors in headers.values():
        for meta in tensors.values():
            count = 1
            for d in meta["shape"]:
                count *= d
            total += count
            dtypes[meta["dtype"]] = dtypes.get(meta["dtype"], 0) + count
    main = max(dtypes, key=dtypes.__getitem__) if dtypes else None
    return total, {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(main or "", main)


_LAYER_TENSOR = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.weight$")
_TOP_TENSOR = re.compile(r"(?:^|\.)(embed_tokens|lm_head)\.weight$")


def weights_problem(path: Path, config: dict[str, Any]) -> str | None:
    """Where a model directory's safetensors headers disagree with its ``config.json`` (and greentui's
    widths manifest, for a pruned model): the number of decoder layers, or the shape of a projection or
    embedding. One line naming the file and the tensor, or None when they agree or when it cannot be
    told without loading (no safetensors, an architecture the planner does not describe).

    Why: transformers finds the mismatch only after reading every weight, and says so in a multi-line
    report ending in a RuntimeError; this reads the headers (kilobytes) before anything is queued."""
    from backend.stages.pruning.plan import MANIFEST, spec_from_config

    manifest_file = path / MANIFEST
    try:
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else None
        spec = spec_from_config(config, manifest)
    except (GreentuiError, OSError, ValueError, TypeError, AttributeError):
        return None  # not a shape the planner knows: loading will tell
    headers = safetensors_headers(path)
    if not headers:
        return None
    h = spec.hidden
    seen_layers: set[int] = set()
    for f, tensors in headers.items():
        for name, meta in tensors.items():
            shape = meta["shape"]
            top = _TOP_TENSOR.search(name)
            if top:
                want = [spec.vocab, h]
                if shape != want:
                    return (f"{f.name}: {name} has shape {shape}, config.json says {want} (vocab_size, "
                            "hidden_size): the weights do not match config.json")
                continue
            m = _LAYER_TENSOR.search(name)
            if not m:
                continue
            i, proj = int(m.group(1)), m.group(2)
            seen_layers.add(i)
            if i >= spec.num_layers:
                return (f"{f.name}: {name} is decoder layer {i}, but config.json says the model has "
                        f"{spec.num_layers} layers: the weights do not match config.json")
            s = spec.layers[i]
            q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
            proj_want = {"q_proj": [q, h], "k_proj": [kv, h], "v_proj": [kv, h], "o_proj": [h, q],
                         "qkv_proj": [q + 2 * kv, h], "gate_proj": [s.intermediate, h], "up_proj": [s.intermediate, h],
                         "gate_up_proj": [2 * s.intermediate, h], "down_proj": [h, s.intermediate]}.get(proj)
            if proj_want is not None and shape != proj_want:
                return (f"{f.name}: {name} has shape {shape}, config.json says {proj_want} (heads {s.heads}, kv heads "
                        f"{s.kv_heads}, head dim {s.head_dim}, intermediate {s.intermediate}, hidden {h}): the "
                        "weights do not match config.json")
    if seen_layers and len(seen_layers) < spec.num_layers:
        return (f"the weights hold {len(seen_layers)} decoder layers, config.json says {spec.num_layers}: the "
                "weights do not match config.json")
    return None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _int(v: Any) -> int | None:
    """A config number as shown and stored: an int, or None for anything else (a hostile config)."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return " ".join(v.split())[:100] if isinstance(v, str) else None


def describe(ref: str, trust_remote_code: bool = False) -> ModelInfo:
    """Resolve and describe a model; never loads weights."""
    canonical, path, source = resolve(ref)
    cfg = read_config(path, canonical, trust_remote_code)
    check_causal_lm(cfg, str(path or canonical))
    tc = _text_config(cfg)
    params, dtype = safetensors_params(path) if path else (None, None)
    manifest = path / "greentui_layers.json" if path else None
    name = Path(canonical).name if path and source in ("local", "demo") else canonical
    return ModelInfo(
        ref=canonical, name=name, source=source, path=str(path) if path else None,
        arch=_str(tc.get("model_type")), params=params,
        layers=_int(tc.get("num_hidden_layers")), heads=_int(tc.get("num_attention_heads")),
        kv_heads=_int(tc.get("num_key_value_heads", tc.get("num_attention_heads"))),
        hidden=_int(tc.get("hidden_size")), intermediate=_int(tc.get("intermediate_size")),
        dtype=dtype or _str(tc.get("dtype")) or _str(tc.get("torch_dtype")),
        size_bytes=_dir_bytes(path) if path else None,
        pruned=bool(manifest and manifest.exists()),
        supported=tc.get("model_type") in SUPPORTED_ARCHS,
    )


def load_model(path: str | Path, **kwargs: Any):
    """Load weights (torch): see ``backend.stages.model_io.load_model``; kept here as the documented entry."""
    from backend.stages.model_io import load_model as _load
    return _load(path, **kwargs)


def register_model(store, ref: str, trust_remote_code: bool = False) -> int:
    """Describe ``ref`` and upsert it into the store; shared by `models add`, `run`, `queue` and the TUI."""
    return record_model(store, describe(ref, trust_remote_code=trust_remote_code), trust_remote_code)


def record_model(store, info: ModelInfo, trust_remote_code: bool = False) -> int:
    """Upsert a described model into the store (``register_model`` without describing it again)."""
    rec = info.as_record()
    canonical = rec.pop("ref")
    rec["trust_remote_code"] = trust_remote_code
    return store.models.upsert(canonical, **rec)


def effective_trust(store, model_id: int, asked: bool) -> bool:
    """Whether a run of ``model_id`` runs the model's own code: trusted when the model was added with
    ``--trust-remote-code`` or the run asks for it (which then marks the model trusted, per model).
    The run records this value and the pipeline loads with it, so the recorded config is the truth."""
    row = store.models.get(model_id)
    trusted = bool(row and row.get("trust_remote_code"))
    if asked and not trusted and row is not None:
        store.models.upsert(row["ref"], trust_remote_code=True)
    return trusted or asked


def check_prunable(arch: str | None, model: str) -> None:
    """Refuse, before any work, to prune an architecture the pruning code does not handle.

    Pruning rebuilds decoder layers of the Llama family's layout (``model.layers[i].self_attn`` with
    q/k/v/o or qkv/o and a gated MLP): ``SUPPORTED_ARCHS``. Anything else is refused by name at once
    — evaluation-only runs (``--no-prune``) take any causal LM transformers loads.
    """
    if arch not in SUPPORTED_ARCHS:
        raise GreentuiError(f"pruning does not support {arch or 'an unknown'} models ({model}); it supports "
                            f"{', '.join(SUPPORTED_ARCHS)} — use --no-prune to evaluate it unpruned")
