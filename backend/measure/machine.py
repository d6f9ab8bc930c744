"""What a figure was measured on: device name and library versions (every result carries them)."""

from __future__ import annotations

import importlib.metadata as md
import platform
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "torch-pruning", "lm-eval", "codecarbon", "datasets")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """The GPU's name for cuda devices, else the CPU model."""
    if str(device).startswith("cuda"):
        try:
            import torch
            return torch.cuda.get_device_name(torch.device(device).index or 0)
        except Exception:  # noqa: BLE001 - a name is provenance, never worth failing a run
            return str(device)
    return cpu_model()


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "missing"
    return out
