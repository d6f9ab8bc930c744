"""Helpers every meter shares: CodeCarbon's logger, CUDA synchronisation, the country check.

Kept apart so that each meter module imports only what it needs and none of them imports torch,
codecarbon or pynvml at module level (the UI and the CLI import ``backend.measure.energy`` cheaply).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from typing import Any

J_PER_KWH = 3.6e6
TRACKING_MODES = ("process", "machine")


def quiet_codecarbon() -> None:
    """Silence CodeCarbon's logger (it logs INFO/WARNING before ``log_level`` takes effect).

    Importing codecarbon resets its logger to INFO (or $CODECARBON_LOG_LEVEL), so import first.
    """
    try:
        import codecarbon.external.logger  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    lg = logging.getLogger("codecarbon")
    lg.setLevel(logging.ERROR)
    lg.propagate = False


def torch_cuda() -> Any:
    """torch.cuda if torch is already imported and CUDA is usable; never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break metering
        return None


def cuda_synchronize() -> bool:
    """Wait for every queued CUDA kernel, so a measurement window closes on finished work.

    Returns True when a synchronisation happened (CUDA initialised in this process).
    """
    cuda = torch_cuda()
    if cuda is None:
        return False
    try:
        if cuda.is_initialized():
            for i in range(cuda.device_count()):
                cuda.synchronize(i)
            return True
    except Exception:  # noqa: BLE001
        pass
    return False


def check_country(code: str) -> str:
    """A 3-letter ISO country code (CodeCarbon's carbon intensity key), upper-cased."""
    code = (code or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        from backend.errors import GreentuiError

        raise GreentuiError(f"country must be a 3-letter ISO code such as USA, FRA or DEU, got {code!r}")
    return code


def null_dir() -> str:
    """Where CodeCarbon may write if a config tells it to: never the user's cwd."""
    return tempfile.gettempdir()
