"""Energy meters behind one contract and one registry; windows, sessions, live and idle power.

Honesty rules: every figure names the meter that produced it, and an estimate is never presented as
a measurement. Each meter is a registered :class:`~.meter.Meter` (name, label, counter or estimate,
availability and its reason, start/stop → joules, live watts); every consumer asks the registry.

Modules:
- ``meter``: the contract (``Meter``, ``Reading``, ``MeterInfo``, ``Window``);
- ``registry``: the meters, built in and from the ``greentui.meters`` entry points;
- ``nvml``: NVIDIA energy counters and power (``Nvml``, ``shared_nvml``, meter ``nvml``);
- ``rapl``: CPU package counters (``Rapl``, meter ``rapl``);
- ``estimate``: the CPU estimate charged from this process's own CPU time (meter ``cpu-time``);
- ``codecarbon_meter``: CodeCarbon's tracker per window (meter ``codecarbon``, ``warm_up``);
- ``load``: own CPU time and the machine's other load over a window;
- ``window``: one measured window over every available meter (``TaskEnergyMeter``);
- ``session``: one run's meters, one tracker through CodeCarbon's task API (``EnergySession``)
  and the ``--cooldown`` gate;
- ``sampler``: live power (``PowerSource``, ``PowerSampler``);
- ``idle``: the machine's draw before a run (``idle_power``);
- ``common``: CodeCarbon's logger, CUDA synchronisation, the country check.

Nothing here may kill an evaluation: a meter that fails is recorded as missing (None) with the
reason in ``provenance``. codecarbon, pynvml and torch are imported lazily.
"""

from __future__ import annotations

from backend.measure.energy.codecarbon_meter import warm_up
from backend.measure.energy.common import J_PER_KWH, TRACKING_MODES, check_country, cuda_synchronize, quiet_codecarbon
from backend.measure.energy.estimate import DEFAULT_W_PER_THREAD, CpuTimeMeter
from backend.measure.energy.idle import idle_power
from backend.measure.energy.meter import COUNTER, ESTIMATE, Meter, MeterInfo, Reading, Window
from backend.measure.energy.nvml import Nvml, shared_nvml
from backend.measure.energy.rapl import RAPL_ROOT, Rapl
from backend.measure.energy.sampler import PowerSampler, PowerSource
from backend.measure.energy.session import EnergySession, cooldown_gate
from backend.measure.energy.window import TaskEnergyMeter

_country = check_country  # the name evaluate.py used before the split

__all__ = ["TaskEnergyMeter", "warm_up", "J_PER_KWH", "TRACKING_MODES", "check_country",
           "cuda_synchronize", "quiet_codecarbon", "DEFAULT_W_PER_THREAD", "CpuTimeMeter", "idle_power",
           "Nvml", "shared_nvml", "RAPL_ROOT", "Rapl", "PowerSampler", "PowerSource",
           "EnergySession", "cooldown_gate", "COUNTER", "ESTIMATE", "Meter", "MeterInfo", "Reading", "Window"]
