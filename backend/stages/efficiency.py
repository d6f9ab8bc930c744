"""The efficiency stage: forward throughput (tokens/s) and J/token of a model at several batch sizes.

Why: batch size alone moves J/token 3–5×, and "my pruned model isn't faster" is usually answered
by "raise the batch size". The stage measures, for the user's own model and hardware, the vanilla
and the pruned model on the same real text (the shipped WikiText-2 test text, see
``backend/data/text/SOURCES.md``) at each batch size, so Compare can show where pruning starts to pay.

Each point: ``batch`` sequences of ``seq_len`` tokens cut from the text, forwards in
``torch.inference_mode()`` with ``use_cache=False`` (all logits, the loglikelihood shape lm-eval
uses), one warm-up forward outside the window, then forwards repeated until the window lasts at least
``min_window_s`` — the window is *widened* to be long enough for the meter (NVML's counter updates
about every 100 ms) — inside one meter window with CUDA synchronised at both edges. Energy comes
from the run's :class:`backend.measure.energy.EnergySession`: the registry's best single figure of
the window (a counter before an estimate: the NVML counter on a GPU, RAPL, else the CPU-time
estimate; the meter is named on every point). Without meters only tokens/s is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from backend.errors import GreentuiError

Progress = Callable[[str, float], None]
DEFAULT_MIN_WINDOW_S = 1.0


def _batch_ids(tokenizer, batch: int, seq_len: int) -> list[list[int]]:
    """``batch`` non-overlapping windows of ``seq_len`` tokens from the shipped WikiText-2 text."""
    from backend.stages.perplexity import _token_ids, wikitext2_rows

    need = batch * seq_len
    ids = _token_ids(tokenizer, "".join(wikitext2_rows()), need)
    if len(ids) < need:
        raise GreentuiError(f"the shipped text gives {len(ids)} tokens, fewer than batch {batch} × "
                            f"{seq_len}; lower --efficiency-batches or --efficiency-seq-len")
    return [ids[i * seq_len:(i + 1) * seq_len] for i in range(batch)]


def measure_efficiency(model, tokenizer, batches: list[int], *, seq_len: int = 128, device: str = "cpu",
                       session: Any = None, min_window_s: float = DEFAULT_MIN_WINDOW_S,
                       variant: str = "model", progress: Progress | None = None) -> list[dict[str, Any]]:
    """One dict per batch size: tokens, seconds, tokens_per_s, joules, j_per_token, meter, ..."""
    import torch

    from backend.stages.pruning.flops import flops_per_token

    model.eval()
    params = sum(p.numel() for p in model.parameters())
    flops = flops_per_token(model, seq_len // 2)  # the mean context of a seq_len window
    out: list[dict[str, Any]] = []
    for k, batch in enumerate(batches):
        if progress is not None:
            progress(f"efficiency {variant}: batch {batch} × {seq_len} tokens", k / max(len(batches), 1))
        x = torch.tensor(_batch_ids(tokenizer, batch, seq_len), dtype=torch.long, device=device)
        with torch.inference_mode():
            model(input_ids=x, use_cache=False)  # warm-up: kernels, allocator, caches
            meter = session.task(f"greentui-efficiency-{variant}-b{batch}") if session is not None else None
            forwards = 0
            with (meter if meter is not None else _null()):
                t0 = time.perf_counter()
                while True:
                    model(input_ids=x, use_cache=False)
                    forwards += 1
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    if time.perf_counter() - t0 >= min_window_s:
                        break
                seconds = time.perf_counter() - t0
        tokens = forwards * batch * seq_len
        energy = meter.result if meter is not None else None
        best = meter.best() if meter is not None else None  # the registry's best single figure
        joules = best.joules if best is not None else None
        out.append({
            "batch_size": batch, "seq_len": seq_len, "forwards": forwards, "tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else None,
            "joules": joules, "j_per_token": joules / tokens if joules is not None and tokens else None,
            "meter": best.tag if best is not None else None,
            "params": params, "flops_per_token": flops, "device": device,
            "is_estimate": best is not None and best.kind != "counter",
            "window": {k: v for k, v in (energy or {}).get("provenance", {}).items()
                       if k in ("window_s", "short_window", "cuda_synchronized", "gpu_state", "missing",
                                "machine_load")},
            "text": "shipped WikiText-2 test text (backend/data/text/wikitext2_test.raw)",
        })
    if progress is not None:
        progress(f"efficiency {variant}: done", 1.0)
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
