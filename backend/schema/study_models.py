"""The GreenPruning study's seven models, as data: the paper's name, the Hugging Face id, the
published parameter count and the pruned size the paper reports (Taylor 2/7, first and last 4
decoder layers kept).

Each model's ``config.json`` ships with the package (``backend/data/model_configs/<config_dir>``,
written from the published files), so ``greentui plan`` answers for them offline: by directory, or
by HF id when the id is not in the local cache (``study_model``). Presets and study files name these
models through this registry. Standard library only: the UI imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.workspace import PACKAGE_DATA

MODEL_CONFIGS = PACKAGE_DATA / "model_configs"


@dataclass(frozen=True)
class StudyModel:
    """One model of the study."""

    paper_name: str  #: as the paper's tables name it (its parameter count in the name)
    hf_id: str
    config_dir: str  #: folder under ``backend/data/model_configs`` holding its config.json
    params: int  #: the published parameter count (tied embeddings counted once)
    paper_pruned: str  #: the pruned size as the paper prints it, e.g. "6.4B"

    @property
    def config_path(self) -> Path:
        """The shipped folder holding this model's ``config.json`` (no weights)."""
        return MODEL_CONFIGS / self.config_dir

    @property
    def paper_pruned_params(self) -> int:
        """The paper's pruned size as a number (``"6.4B"`` → 6,400,000,000; only as precise as printed)."""
        number, unit = self.paper_pruned[:-1], self.paper_pruned[-1].upper()
        return int(round(float(number) * {"B": 1e9, "M": 1e6}[unit]))

    @property
    def paper_precision(self) -> int:
        """The step the paper's figure is printed in: ``"6.4B"`` → 0.1 B, ``"2B"`` → 1 B."""
        number, unit = self.paper_pruned[:-1], self.paper_pruned[-1].upper()
        decimals = len(number.partition(".")[2])
        return int(round({"B": 1e9, "M": 1e6}[unit] / 10**decimals))


STUDY_MODELS: tuple[StudyModel, ...] = (
    StudyModel("Llama-3.1-8B", "meta-llama/Llama-3.1-8B", "Llama-3.1-8B", 8_030_261_248, "6.4B"),
    StudyModel("DeepSeek-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "DeepSeek-R1-Distill-Llama-8B",
               8_030_261_248, "6.4B"),
    StudyModel("Mistral-7.2B", "mistralai/Mistral-7B-v0.3", "Mistral-7B-v0.3", 7_248_023_552, "5.8B"),
    StudyModel("Qwen2.5-7.6B", "Qwen/Qwen2.5-7B", "Qwen2.5-7B", 7_615_616_512, "6.1B"),
    StudyModel("Gemma-2.5B", "google/gemma-2-2b", "Gemma-2-2B", 2_614_341_888, "2B"),
    StudyModel("Vicuna-6.7B-v1.5", "lmsys/vicuna-7b-v1.5", "Vicuna-7B-v1.5", 6_738_415_616, "5.4B"),
    StudyModel("Yi-1.5-6B", "01-ai/Yi-1.5-6B", "Yi-1.5-6B", 6_061_035_520, "4.8B"),
)


def study_model(ref: str) -> StudyModel | None:
    """The study model a reference names: its HF id (any case), its paper name or its config folder
    name; None for any other reference."""
    key = ref.strip().rstrip("/").casefold()
    for m in STUDY_MODELS:
        if key in (m.hf_id.casefold(), m.paper_name.casefold(), m.config_dir.casefold()):
            return m
    return None
