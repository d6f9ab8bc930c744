"""Models as the UI and the CLI see them: the local HF cache, a model described from its files, a
model added to the workspace. The service layer's face of ``backend.stages.models`` (which reads
config.json and safetensors headers, never torch), so the UI never reaches into the stages.
"""

from __future__ import annotations

from typing import Any

from backend.store import Store


def cached_models() -> list[str]:
    """HF ids of the models in the local HF cache (no network)."""
    from backend.stages.models import list_cached_models
    return list_cached_models()


def describe_model(ref: str) -> dict[str, Any]:
    """What the Models screen shows about ``ref``, read from its files; ``GreentuiError`` when it
    cannot be resolved or is not a causal LM."""
    from backend.stages.models import describe
    return describe(ref).as_record()


def add_model(store: Store, ref: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """Describe ``ref`` and add it to the workspace's models; the stored row."""
    from backend.stages.models import register_model
    return store.models.require(register_model(store, ref, trust_remote_code))
