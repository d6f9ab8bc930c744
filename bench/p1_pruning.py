"""P1 — does pruning pay? Forward latency of pruned variants over the vanilla model, beside their
parameter and FLOP ratios.

The model is greentui's Llama-shaped random demo model (``small``: hidden 768, 16 layers, 12 heads
over 4 kv heads, head_dim 64, MLP 2304, vocab 8192; ~123 M parameters). Variants, each pruned by
``backend.stages.prune.prune_model`` from a copy of the same vanilla weights:

- Taylor 0.25 (round_to 8, the default), the study recipe Taylor 2/7 with ignore 4/4 at round_to
  1, 8 and 64 (how much hardware-aligned MLP widths matter), and ShortGPT layer-drop 0.25.

Latency is one forward pass over ``[batch, 128]`` token ids with ``use_cache=False`` — the shape of
lm-eval's loglikelihood batches — under ``torch.inference_mode()``, after warm-up, with every model
measured once per round in an order reversed every round (so each pruned/vanilla pair is measured
in the same round, alternating which goes first); batch 1 gets three times the rounds (it is cheap). Attention is SDPA for both sides, as ``backend.stages.model_io.load_model``
gives it to the evaluation (pruning calibrates eager and restores the kernel).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from .common import Row, row_from_pairs

SEQ = 128


def variants(quick: bool) -> list[tuple[str, dict]]:
    from backend.stages.prune import STUDY_RATIO

    return [
        ("taylor 0.25", dict(method="taylor", ratio=0.25, round_to=8)),
        ("taylor 2/7 r1", dict(method="taylor", ratio=STUDY_RATIO, round_to=1)),
        ("taylor 2/7 r8", dict(method="taylor", ratio=STUDY_RATIO, round_to=8)),
        ("taylor 2/7 r64", dict(method="taylor", ratio=STUDY_RATIO, round_to=64)),
        ("layer-drop 0.25", dict(method="layer-drop", ratio=0.25)),
    ]


def _forward(model, x) -> float:
    import torch

    with torch.inference_mode():
        t = time.perf_counter()
        model(input_ids=x, use_cache=False)
        return time.perf_counter() - t


def run(model_dir: Path, *, repeats: int, batches=(1, 8), quick: bool = False, log=print) -> list[Row]:
    import torch

    from backend.stages.model_io import load_model
    from backend.stages.prune import PruneConfig, prune_model
    from backend.stages.pruning import flops

    vanilla, tok = load_model(model_dir)
    vanilla.eval()
    models = {"vanilla": vanilla}
    info = {"vanilla": {"params": flops.count_params(vanilla), "flops": flops.flops_per_token(vanilla, SEQ)}}
    for name, kw in variants(quick):
        t = time.perf_counter()
        m = copy.deepcopy(vanilla)
        report = prune_model(m, tok, PruneConfig(seed=0, **kw))
        for p in m.parameters():
            p.requires_grad_(False)
        m.eval()
        widths = sorted({w["intermediate"] for w in report["layers_after"]})
        models[name] = m
        info[name] = {"params": report["params_after"], "flops": flops.flops_per_token(m, SEQ),
                      "layers": len(report["layers_after"]), "mlp_widths": widths}
        log(f"  P1 pruned {name}: {report['params_after'] / 1e6:.1f} M params, MLP widths {widths}, "
            f"{time.perf_counter() - t:.0f} s")
    for p in vanilla.parameters():
        p.requires_grad_(False)

    names = list(models)
    rows: list[Row] = []
    gen = torch.Generator().manual_seed(0)
    vocab = vanilla.config.vocab_size
    for bi, batch in enumerate(batches):
        x = torch.randint(0, vocab, (batch, SEQ), generator=gen)
        for name in names:  # warm-up: allocator, oneDNN kernels for each shape
            _forward(models[name], x)
        times: dict[str, list[float]] = {n: [] for n in names}
        t0 = time.perf_counter()
        rounds = repeats * 3 if batch == 1 else repeats  # batch 1 is cheap: more rounds, less noise
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]  # vanilla first, then last: ABAB across rounds
            for name in order:
                times[name].append(_forward(models[name], x))
        log(f"  P1 batch {batch}: {rounds} rounds of {len(names)} models in {time.perf_counter() - t0:.0f} s")
        letter = "ab"[bi] if len(batches) <= 2 else str(bi)
        for k, name in enumerate(names[1:], start=1):
            pr = info[name]["params"] / info["vanilla"]["params"]
            fr = info[name]["flops"] / info["vanilla"]["flops"]
            extra = f"{info[name]['layers']} layers" if name.startswith("layer-drop") else \
                f"MLP widths {','.join(map(str, info[name]['mlp_widths']))}"
            rows.append(row_from_pairs(
                f"P1{letter}{k}", f"latency {name} / vanilla, batch {batch}×{SEQ}", times[name], times["vanilla"],
                "ms", scale=1000, a_label=name, b_label="vanilla",
                notes=f"params {pr:.3f} · FLOPs {fr:.3f} · {extra}",
                params_ratio=pr, flops_ratio=fr, variant=name, batch=batch))
    return rows
