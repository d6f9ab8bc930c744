"""Devices as slots: resolve ``auto``/``cpu``/``cuda[:N]`` to concrete devices and lock them.

Why one lock per *physical* device: energy and time are measured per device, so two runs on one
device would each be charged for the other's work. Before this module, ``--device auto`` and
``--device cpu`` took two different lock files for the same CPU. Now every name is resolved first
(``auto`` = every visible CUDA device, else the CPU) and the lock is named after the device itself:
``gpu-<NVML UUID>`` for a GPU, ``cpu-<slot>`` for a CPU slot. The CPU is one slot by default; with
``cpu_slots`` N > 1 the CPU offers N slots and runs sharing it carry a note in their energy quality.

Locks are ``flock`` s on files in ``<workspace>/.locks`` (``GREENTUI_LOCK_DIR`` moves them, e.g. to
``/run/lock/greentui`` to exclude runs of several workspaces from each other). A lock belongs to the
open file description: the runner takes it, hands the descriptor to the run's process
(``pass_fds``) and closes its own copy, so the lock lives exactly as long as the process doing the
run, and dies with it however it dies. Locks only exclude; they never say whether a runner lives
(that is the heartbeat's job, see ``supervisor``).

No torch import: NVML (``nvidia-ml-py``) names the GPUs; torch is asked only when NVML is missing
but an NVIDIA device node exists.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import GreentuiError


@dataclass(frozen=True)
class Device:
    """One schedulable slot: a GPU, or one CPU slot."""

    kind: str      # "cuda" or "cpu"
    index: int     # GPU: NVML index (PCI bus order); CPU: slot number
    key: str       # the lock name: "gpu-<uuid>" or "cpu-<slot>"
    visible: str   # what CUDA_VISIBLE_DEVICES names this GPU by (its UUID); "" for the CPU
    name: str = ""

    @property
    def label(self) -> str:
        if self.kind == "cuda":
            return f"cuda:{self.index}"
        return "cpu" if self.index == 0 else f"cpu#{self.index}"


def _visible_filter(n: int, uuids: list[str]) -> list[int]:
    """NVML indices allowed by this process's CUDA_VISIBLE_DEVICES (indices or UUID prefixes)."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(n))
    out: list[int] = []
    for item in (x.strip() for x in raw.split(",") if x.strip()):
        if item.isdigit():
            if int(item) >= n:
                break  # CUDA stops at the first invalid entry
            out.append(int(item))
        else:
            want = item if item.startswith(("GPU-", "MIG-")) else "GPU-" + item
            match = [i for i, u in enumerate(uuids) if u.startswith(want)]
            if not match:
                break
            out.append(match[0])
    return out


def cuda_devices() -> list[Device]:
    """Every CUDA device this process may use, by NVML; [] on a machine without one."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: no GPUs (or ask torch, below)
        return _cuda_devices_by_torch()
    try:
        n = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
        uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
        names = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return [Device("cuda", i, f"gpu-{uuids[i]}", uuids[i], names[i]) for i in _visible_filter(n, uuids)]


def _cuda_devices_by_torch() -> list[Device]:
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return []
    try:
        import torch
        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return []
    # Without NVML there is no UUID; CUDA indices are only stable with CUDA_DEVICE_ORDER=PCI_BUS_ID.
    return [Device("cuda", i, f"gpu-index-{i}", str(i)) for i in range(n)]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cpu_devices(slots: int = 1) -> list[Device]:
    if slots < 1:
        raise GreentuiError(f"--cpu-slots must be at least 1 (got {slots})")
    return [Device("cpu", i, f"cpu-{i}", "") for i in range(slots)]


def resolve_devices(requested: str, cpu_slots: int = 1) -> list[Device]:
    """The concrete devices behind a device name, before anything is locked.

    ``auto``: every visible GPU, else the CPU slots. ``cuda``: every visible GPU. ``cuda:N``: the
    N-th visible GPU. ``cpu``: the CPU slots. Raises a one-line error for an unusable name.
    """
    req = (requested or "auto").strip().lower()
    if req == "cpu":
        return cpu_devices(cpu_slots)
    if req in ("auto", "cuda") or req.startswith("cuda:"):
        gpus = cuda_devices()
        if req == "auto":
            return gpus or cpu_devices(cpu_slots)
        if not gpus:
            raise GreentuiError(f"device {requested!r}: no CUDA device is visible on this machine")
        if req == "cuda":
            return gpus
        idx = req.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= len(gpus):
            raise GreentuiError(f"device {requested!r}: this machine has {len(gpus)} visible CUDA device(s)")
        return [gpus[int(idx)]]
    raise GreentuiError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------ locks

def lock_dir(workspace: Path) -> Path:
    d = Path(os.environ.get("GREENTUI_LOCK_DIR") or workspace / ".locks")
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Held:
    """Device locks held by this process (open descriptors with an exclusive flock)."""

    devices: list[Device]
    files: list = field(default_factory=list)

    @property
    def fds(self) -> list[int]:
        return [f.fileno() for f in self.files]

    @property
    def label(self) -> str:
        """``cuda:0``, ``cuda:0,1``, ``cpu``, ``cpu#1`` — what the Queue screen shows as the slot."""
        if not self.devices:
            return ""
        if self.devices[0].kind == "cuda":
            return "cuda:" + ",".join(str(d.index) for d in self.devices)
        return ",".join(d.label for d in self.devices)

    @property
    def cuda_visible(self) -> str | None:
        gpus = [d.visible for d in self.devices if d.kind == "cuda"]
        return ",".join(gpus) if gpus else None

    def note(self, **holder: object) -> None:
        """Write who holds the lock into each lock file (read by a refused ``greentui run``)."""
        for f in self.files:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(holder))
            f.flush()

    def release(self) -> None:
        for f in self.files:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()
        self.files = []

    def close(self) -> None:
        """Close our descriptors without unlocking: a child that inherited them keeps the lock."""
        for f in self.files:
            f.close()
        self.files = []


def try_lock(workspace: Path, device: Device):
    """Open and exclusively lock ``device``'s lock file without blocking; None when it is taken."""
    f = (lock_dir(workspace) / f"{device.key}.lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def acquire(workspace: Path, candidates: list[Device], need: int = 1) -> Held | None:
    """Lock ``need`` free devices among ``candidates`` (all or nothing); None when not enough free."""
    held = Held([])
    for dev in candidates:
        if len(held.devices) == need:
            break
        f = try_lock(workspace, dev)
        if f is not None:
            held.devices.append(dev)
            held.files.append(f)
    if len(held.devices) < need:
        held.release()
        return None
    return held


def holder(workspace: Path, device: Device) -> dict:
    """What the holder of ``device``'s lock wrote about itself ({} when unknown)."""
    try:
        return json.loads((lock_dir(workspace) / f"{device.key}.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}


def acquire_waiting(workspace: Path, candidates: list[Device], need: int = 1, *, wait: bool,
                    poll: float = 1.0, on_wait=None) -> Held:
    """Like :func:`acquire`, but wait for free devices (``wait``) or refuse with a clear message."""
    if need > len(candidates):
        raise GreentuiError(f"{need} devices asked for, but only {len(candidates)} exist "
                            f"({', '.join(d.label for d in candidates)})")
    told = False
    while True:
        held = acquire(workspace, candidates, need)
        if held is not None:
            return held
        busy = "; ".join(f"{d.label} by {_describe(holder(workspace, d))}" for d in candidates)
        if not wait:
            raise GreentuiError(f"the device is busy ({busy}); wait for it with --wait, or queue the run "
                                "(greentui queue)")
        if not told and on_wait is not None:
            on_wait(busy)
            told = True
        time.sleep(poll)


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    parts = [f"run {info['run']}" if info.get("run") else None, f"pid {info['pid']}" if info.get("pid") else None]
    return " ".join(p for p in parts if p) or "another process"
