"""The paired energy protocol (issue #18): vanilla and pruned energy measured in the same run, per task,
in interleaved windows (A B B A …), each window preceded by an uncounted warm-up on that model and task.

Why: measured one after the other (the study's design), the two models meet a different machine — the
baseline cold, in another process, at another moment, the pruned model warm, later — and on a shared box
that difference is larger than the 5–10 % effect being measured. Interleaving puts both models under the
same drift; pairing window i of one with window i of the other lets the ratio's interval come from the
pairs' log-ratios (``backend.measure.stats.paired_ratio_interval``), which ``--repeats auto`` narrows
until it is within the CI target.

A window replays the task's own loglikelihood requests — those lm-eval built for the pruned model's
accuracy pass, captured by ``evaluate.counting_lm`` — on each model: the model's work, without lm-eval's
task building. Accuracy is not computed again (it is deterministic). A window's requests are repeated
until it lasts ``window_s`` (a short window is mostly meter overhead); ``energy_sample`` measures the first
N requests only, the same N for both models, and scales the figure to the whole task (``scale``).

Designs: ``paired`` keeps both models on the device (when a memory estimate says they fit); ``blocked``
(when they do not, or when asked) keeps one model on the device at a time and alternates blocks of
windows, with a drift probe — a short fixed matmul workload, metered — at every block edge, so that a
drift between blocks shows.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.measure.stats import RatioInterval, paired_ratio_interval

if TYPE_CHECKING:  # for annotations only
    from torch import nn

Progress = Callable[[str, float], None]
#: Pairs measured before ``--repeats auto`` may stop (a t-interval from 2 pairs is ±12.7 sd wide).
MIN_AUTO_PAIRS = 3
#: Windows of one model per block under the blocked design.
BLOCK_WINDOWS = 2
#: Share of a window's requests its warm-up replays (at least one batch).
WARMUP_SHARE = 0.25
ENERGY_KEYS = ("energy_kwh", "energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh", "nvml_joules")


# ---------------------------------------------------------------------------------- which design

def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (what a second copy costs)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total + sum(b.numel() * b.element_size() for b in model.buffers())


def free_memory(device: str) -> int | None:
    """Free bytes where the model sits: the GPU's (``torch.cuda.mem_get_info``) or the host's available
    memory; None when unknown."""
    if str(device).startswith("cuda"):
        try:
            import torch
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except Exception:  # noqa: BLE001 - unknown memory: the caller picks the safe design
            return None
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def choose_design(requested: str, need_bytes: int, device_free: int | None, host_free: int | None,
                  margin: float = 1.3) -> tuple[str, str]:
    """(design, why). ``paired`` when a copy of the vanilla model (``need_bytes``, times ``margin`` for
    activations) fits in the device's free memory; else ``blocked`` when it fits in host memory (one model
    on the device at a time); else ``sequential`` (no second copy anywhere)."""
    need = need_bytes * margin
    gib = 1024 ** 3
    if requested == "paired" and device_free is not None and need <= device_free:
        return "paired", (f"both models fit together: a vanilla copy needs ~{need / gib:.2f} GiB, "
                          f"{device_free / gib:.1f} GiB free")
    if host_free is not None and need <= host_free:
        why = ("asked for" if requested == "blocked" else
               f"both models do not fit together (~{need / gib:.2f} GiB needed, "
               f"{(device_free or 0) / gib:.1f} GiB free on the device)")
        return "blocked", f"alternating blocks with a drift probe: {why}"
    return "sequential", (f"no room for a vanilla copy (~{need / gib:.2f} GiB) on the device or the host: "
                          "measured sequentially")


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares its hooks (the run's cancel check is a hook holding the store
    connection: shared, not copied, so the copy obeys the cancel flag too)."""
    memo: dict[int, Any] = {}
    for m in model.modules():
        for name, hooks in vars(m).items():
            if name.endswith("hooks") and isinstance(hooks, dict):
                for h in hooks.values():
                    memo[id(h)] = h
    return copy.deepcopy(model, memo)


def keep_vanilla(model, requested: str, device: str, gpus: int = 1) -> tuple[Any, str, str]:
    """Before pruning: a copy of the vanilla model for the paired windows, the design, and why.

    Under ``paired`` the copy stays on the device; under ``blocked`` it waits in host memory. A model
    spread over several GPUs (``--gpus N``) cannot be moved as a whole: it is measured sequentially."""
    if gpus > 1:
        return None, "sequential", f"the model is spread over {gpus} GPUs: measured sequentially"
    need = model_bytes(model)
    on_cuda = str(device).startswith("cuda")
    host = free_memory("cpu")
    design, why = choose_design(requested, need, free_memory(device) if on_cuda else host, host)
    if design == "sequential":
        return None, design, why
    if design == "blocked" and on_cuda:
        import torch
        with torch.no_grad():
            vanilla = copy_model(model.to("cpu"))
        model.to(device)
        return vanilla.eval(), design, why
    return copy_model(model).eval(), design, why


# ---------------------------------------------------------------------------------- the windows

@dataclass
class PairedTask:
    """One task's windows, in the order measured (the rows of ``energy_repeats``)."""

    task: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    def pairs(self) -> list[tuple[float | None, float | None]]:
        """(vanilla, pruned) energy of each pair index."""
        by: dict[int, dict[str, float | None]] = {}
        for w in self.windows:
            by.setdefault(w["repeat"], {})[w["variant"]] = w.get("energy_kwh")
        return [(v.get("vanilla"), v.get("pruned")) for _, v in sorted(by.items()) if len(v) == 2]

    def interval(self) -> RatioInterval | None:
        return paired_ratio_interval(self.pairs())


class PairedMeter:
    """Measures paired windows of vanilla (A) and pruned (B) for one run.

    ``session`` is the run's ``EnergySession``; ``lm_of(model)`` wraps a model in lm-eval's HFLM (the
    counting subclass), once per model. ``checkpoint`` is called between windows (the run's cancel flag).
    """

    def __init__(self, vanilla, pruned, *, lm_of: Callable[[Any], Any], session, device: str, design: str,
                 window_s: float = 1.0, sample: int | None = None, checkpoint: Callable[[], None] | None = None):
        self.models = {"vanilla": vanilla, "pruned": pruned}
        self.lms = {name: lm_of(m) for name, m in self.models.items()}
        self.session, self.device, self.design = session, device, design
        self.window_s, self.sample = window_s, sample
        self.checkpoint = checkpoint or (lambda: None)
        self.position = 0
        self.block = 0
        self.on_device: str | None = None
        self._probe_n: int | None = None

    # ---------------------------------------------------------------- one window
    def _replay(self, variant: str, requests: list[Any]) -> tuple[float, int]:
        lm = self.lms[variant]
        lm.reset()
        t0 = time.perf_counter()
        lm.loglikelihood(requests, disable_tqdm=True)
        return time.perf_counter() - t0, lm.tokens

    def window(self, variant: str, task: str, requests: list[Any], total: int, repeat: int) -> dict[str, Any]:
        """A warm-up (uncounted), then one metered window of ``requests`` repeated ``passes`` times.

        The stored seconds and energy are per pass, scaled from the sample to the task's ``total``
        requests: the figures a whole-task evaluation would have, so that they read like the other rows."""
        self.checkpoint()
        self._place(variant)
        warm_n = max(1, min(len(requests), math.ceil(len(requests) * WARMUP_SHARE)))
        warm_s, _ = self._replay(variant, requests[:warm_n])
        per_pass = max(warm_s / warm_n * len(requests), 1e-6)
        passes = max(1, math.ceil(self.window_s / per_pass))
        meter = self.session.task(f"greentui-paired-{task}-{variant}-{repeat}")
        tokens = 0
        with meter:
            t0 = time.perf_counter()
            for _ in range(passes):
                _, n = self._replay(variant, requests)
                tokens += n
            elapsed = time.perf_counter() - t0
        r = meter.result or {}
        scale = total / len(requests)
        self.position += 1
        row: dict[str, Any] = {
            "variant": variant, "task": task, "repeat": repeat, "position": self.position,
            "seconds": elapsed / passes * scale, "tokens": int(tokens / passes * scale),
            "meter": r.get("meter"), "warmup_s": warm_s, "sample_n": len(requests), "scale": scale,
            "passes": passes, "window_s": elapsed, "block": self.block if self.design == "blocked" else None,
        }
        for key in ENERGY_KEYS:
            v = r.get(key)
            row[key] = None if v is None else v / passes * scale
        row["provenance"] = r.get("provenance")
        row["raw_energy_kwh"] = r.get("energy_kwh")
        return row

    # ---------------------------------------------------------------- blocks and the drift probe
    def _place(self, variant: str) -> None:
        """Under ``blocked`` only the variant measured is on the device; the other waits in host memory."""
        if self.design != "blocked" or self.on_device == variant:
            return
        if str(self.device).startswith("cuda"):
            other = "pruned" if variant == "vanilla" else "vanilla"
            self.models[other].to("cpu")
            self.models[variant].to(self.device)
        self.on_device = variant

    def drift_probe(self) -> dict[str, float | None]:
        """A short fixed workload (the same matmuls every time), metered: its seconds and energy at each
        block edge show whether the machine drifted between blocks."""
        import torch
        dev = self.device if str(self.device).startswith("cuda") else "cpu"
        a = torch.ones(256, 256, device=dev)
        if self._probe_n is None:  # calibrated once: ~0.2 s
            t0 = time.perf_counter()
            for _ in range(20):
                a @ a
            self._probe_n = max(20, int(20 * 0.2 / max(time.perf_counter() - t0, 1e-6)))
        meter = self.session.task("greentui-drift-probe")
        with meter:
            t0 = time.perf_counter()
            for _ in range(self._probe_n):
                a @ a
            if dev != "cpu":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        return {"probe_s": seconds, "probe_kwh": (meter.result or {}).get("energy_kwh")}

    # ---------------------------------------------------------------- a task
    def measure_task(self, task: str, requests: list[Any], *, repeats: int | None, ci_target: float,
                     max_repeats: int, budget_s: float, progress: Progress | None = None) -> PairedTask:
        """Every window of ``task``: ``repeats`` pairs, or (``repeats`` None: auto) pairs until the ratio's
        95 % CI half-width is within ``ci_target``, ``max_repeats`` pairs or ``budget_s`` seconds."""
        total = len(requests)
        sample = requests[: self.sample] if self.sample else requests
        out = PairedTask(task)
        if not sample:
            out.stopped = "no loglikelihood requests"
            return out
        t_start = time.monotonic()
        cap = repeats or max_repeats
        pair = 0
        while pair < cap:
            group = BLOCK_WINDOWS if self.design == "blocked" else 1
            group = min(group, cap - pair)
            first, second = ("vanilla", "pruned") if (pair // group) % 2 == 0 else ("pruned", "vanilla")
            if self.design == "blocked":
                for variant in (first, second):
                    self.block += 1
                    self._place(variant)
                    probe = self.drift_probe()
                    for k in range(group):
                        row = self.window(variant, task, sample, total, pair + k + 1)
                        if k == 0:
                            row.update(probe)
                        out.windows.append(row)
            else:
                for variant in (first, second):
                    out.windows.append(self.window(variant, task, sample, total, pair + 1))
            pair += group
            ci = out.interval()
            if progress is not None:
                hw = ci.half_width if ci else None
                # the interval before the ratio: a progress line cut at 80 columns never shows a bare ratio
                progress(f"{task}: {pair} pair{'s' if pair > 1 else ''}"
                         + (f", CI ±{hw * 100:.1f}% on ratio {ci.ratio:.3f}" if ci and hw is not None else ""),
                         min(pair / cap, 1.0))
            if repeats is None and pair >= MIN_AUTO_PAIRS and ci is not None:
                if ci.half_width is not None and ci.half_width <= ci_target:
                    out.stopped = f"CI ±{ci.half_width * 100:.1f}% within ±{ci_target * 100:g}%"
                    break
                if time.monotonic() - t_start >= budget_s:
                    out.stopped = f"time budget {budget_s:.0f} s spent"
                    break
        if not out.stopped:
            out.stopped = f"{pair} pairs ({'fixed' if repeats else 'max repeats'})"
        return out


__all__ = ["PairedMeter", "PairedTask", "choose_design", "keep_vanilla", "model_bytes"]
