"""Resolve a model reference and describe it without loading its weights.

A reference is a local directory, a Hugging Face id (``org/name``), or an entry of the local HF cache.
Describing reads ``config.json`` and the safetensors headers only (no torch), so the CLI and the UI
can list models instantly and exact parameter counts hold for pruned, non-uniform checkpoints too.
Loading weights lives in ``backend.model_io`` (re-exported here as ``load_model``).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Model types greentui can prune and evaluate end to end (see backend.prune for the traps of each).
from .catalog import ARCHITECTURES as SUPPORTED_ARCHS
from .errors import GreentuiError

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


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref and not HF_ID.match(ref) or Path(ref).exists()


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
    ref = ref.strip()
    if not ref:
        raise GreentuiError("empty model reference; give a local directory or a Hugging Face id")
    if _looks_like_path(ref):
        path = Path(ref).expanduser().resolve()
        if not path.exists():
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
    from .workspace import hub_reachable
    if not hub_reachable():
        raise GreentuiError(f"model {ref!r} is not in the local HF cache and the Hugging Face hub is "
                            "unreachable (offline?); download it on a connected machine or pass a local directory")
    return ref, None, "hub"


def read_config(path: Path | None, ref: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """config.json as a dict: from disk, else fetched from the hub (only the small JSON file)."""
    if path is not None:
        try:
            return json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GreentuiError(f"cannot read {path / 'config.json'}: {exc}") from exc
    try:
        from huggingface_hub import hf_hub_download
        cfg_file = hf_hub_download(ref, "config.json")
    except Exception as exc:
        raise GreentuiError(f"cannot fetch the config of {ref!r} from the Hugging Face hub: {exc}") from exc
    return json.loads(Path(cfg_file).read_text())


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs nest the language model's numbers under text_config."""
    return cfg.get("text_config") or cfg


def check_causal_lm(cfg: dict[str, Any], where: str) -> None:
    model_type = cfg.get("model_type", "?")
    archs = cfg.get("architectures") or []
    if model_type in ENCODER_ONLY or (archs and not any("CausalLM" in a or "LMHead" in a for a in archs)):
        raise GreentuiError(f"{where} holds a {model_type} model ({', '.join(archs) or 'no architectures'}), "
                            "which is not a decoder-only causal LM; greentui prunes and evaluates causal LMs "
                            f"({', '.join(SUPPORTED_ARCHS)})")


def safetensors_params(path: Path) -> tuple[int | None, str | None]:
    """Count parameters from the safetensors headers (8-byte length + JSON), without torch."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None, None
    total = 0
    dtypes: dict[str, int] = {}
    for f in files:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in meta["shape"]:
                count *= d
            total += count
            dtypes[meta["dtype"]] = dtypes.get(meta["dtype"], 0) + count
    main = max(dtypes, key=dtypes.get) if dtypes else None
    return total, {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(main or "", main)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


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
        arch=tc.get("model_type"), params=params,
        layers=tc.get("num_hidden_layers"), heads=tc.get("num_attention_heads"),
        kv_heads=tc.get("num_key_value_heads", tc.get("num_attention_heads")),
        hidden=tc.get("hidden_size"), intermediate=tc.get("intermediate_size"),
        dtype=dtype or tc.get("dtype") or tc.get("torch_dtype"),
        size_bytes=_dir_bytes(path) if path else None,
        pruned=bool(manifest and manifest.exists()),
        supported=tc.get("model_type") in SUPPORTED_ARCHS,
    )


def load_model(path: str | Path, **kwargs: Any):
    """Load weights (torch): see ``backend.model_io.load_model``; kept here as the documented entry."""
    from .model_io import load_model as _load
    return _load(path, **kwargs)


def register_model(store, ref: str, trust_remote_code: bool = False) -> int:
    """Describe ``ref`` and upsert it into the store; shared by `models add`, `run`, `queue` and the TUI."""
    info = describe(ref, trust_remote_code=trust_remote_code)
    rec = info.as_record()
    canonical = rec.pop("ref")
    rec["trust_remote_code"] = trust_remote_code
    return store.upsert_model(canonical, **rec)
