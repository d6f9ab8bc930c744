"""Energy meters: CodeCarbon per task, NVML's energy counter on NVIDIA GPUs, RAPL, a CPU estimate,
a live power sampler and idle power — one module per job.

Honesty rules: every figure names the meter that produced it, and an estimate is never presented as
a measurement. On a machine without RAPL and without an NVIDIA GPU, CodeCarbon's CPU figure is a
TDP x CPU-load model ("cpu_load" mode) and its RAM figure is a model of the DIMMs; both are estimates
and the meter string says so (``codecarbon:cpu_load-estimate+ram-estimate``).

Modules:
- ``common``: CodeCarbon's logger, CUDA synchronisation, the country check;
- ``nvml``: NVIDIA energy counters and power (``Nvml``, ``shared_nvml``);
- ``rapl``: CPU package counters (``Rapl``);
- ``estimate``: CPU share x TDP + RAM model (``CpuEstimate``);
- ``codecarbon_meter``: the per-window meter (``TaskEnergyMeter``, ``warm_up``);
- ``session``: one run's meters, one tracker through CodeCarbon's task API (``EnergySession``)
  and the ``--cooldown`` gate;
- ``sampler``: live power (``PowerSource``, ``PowerSampler``);
- ``idle``: the machine's draw before a run (``idle_power``).

Nothing here may kill an evaluation: a meter that fails is recorded as missing (None) with the
reason in ``provenance``. codecarbon, pynvml and torch are imported lazily.
"""

from __future__ import annotations

from backend.measure.energy.codecarbon_meter import TaskEnergyMeter, warm_up
from backend.measure.energy.common import J_PER_KWH, TRACKING_MODES, check_country, cuda_synchronize, quiet_codecarbon
from backend.measure.energy.estimate import DEFAULT_W_PER_THREAD, CpuEstimate
from backend.measure.energy.idle import idle_power
from backend.measure.energy.nvml import Nvml, shared_nvml
from backend.measure.energy.rapl import RAPL_ROOT, Rapl
from backend.measure.energy.sampler import PowerSampler, PowerSource
from backend.measure.energy.session import EnergySession, cooldown_gate

_country = check_country  # the name evaluate.py used before the split

__all__ = ["TaskEnergyMeter", "warm_up", "J_PER_KWH", "TRACKING_MODES", "check_country",
           "cuda_synchronize", "quiet_codecarbon", "DEFAULT_W_PER_THREAD", "CpuEstimate", "idle_power",
           "Nvml", "shared_nvml", "RAPL_ROOT", "Rapl", "PowerSampler", "PowerSource",
           "EnergySession", "cooldown_gate"]
