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


#: What makes two energy or accuracy figures comparable (issue #18): the fields of a fingerprint a
#: baseline must share with the run that would reuse it.
FINGERPRINT_FIELDS = ("gpu", "gpu_count", "driver", "power_limit_w", "cpu", "node", "torch", "transformers",
                      "lm-eval", "cuda")


def _gpu_facts(device: str) -> dict[str, object]:
    """GPU names, count, driver and power limit from NVML (pynvml), or torch's names without NVML."""
    facts: dict[str, object] = {"gpu": None, "gpu_count": 0, "driver": None, "power_limit_w": None}
    if not str(device).startswith("cuda"):
        return facts
    try:
        import torch
        n = torch.cuda.device_count()
        facts["gpu_count"] = n
        facts["gpu"] = sorted({torch.cuda.get_device_name(i) for i in range(n)})
    except Exception:  # noqa: BLE001 - provenance: a missing fact makes the baseline not reusable, not the run fail
        pass
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            facts["driver"] = driver.decode() if isinstance(driver, bytes) else driver
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            facts["power_limit_w"] = round(pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0, 1)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: driver and limit stay unknown
        pass
    return facts


def fingerprint(device: str) -> dict[str, object]:
    """The machine and software a figure was measured with, as the baseline-reuse rule compares it:
    GPU name(s), count, driver and power limit; CPU model; node; torch, transformers, lm-eval, CUDA.

    Why all of them: an energy (or accuracy) baseline measured on another GPU model, node or library
    version is another experiment; reusing it silently mixes two machines into one ratio."""
    versions = library_versions()
    cuda = None
    try:
        import torch
        cuda = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return dict(_gpu_facts(device), cpu=cpu_model(), node=platform.node(), torch=versions.get("torch"),
                transformers=versions.get("transformers"), **{"lm-eval": versions.get("lm-eval")}, cuda=cuda)


def fingerprint_differences(a: dict[str, object] | None, b: dict[str, object] | None) -> list[str]:
    """The fields on which two fingerprints differ (every field when one is missing)."""
    if not a or not b:
        return list(FINGERPRINT_FIELDS)
    return [f for f in FINGERPRINT_FIELDS if a.get(f) != b.get(f)]
