"""P1x — does an exported model run as fast as greentui's own? Forward latency of models written by
``greentui export-model`` and loaded as a user loads them (``AutoModelForCausalLM.from_pretrained``),
over the same pruned weights loaded by greentui's loader.

Same model and forward as P1 (``p1_pruning.py``: the ``small`` Llama-shaped demo model, ``[batch, 128]``
token ids, ``use_cache=False``, ``torch.inference_mode()``, SDPA, warm-up first, every model once per
round in an order reversed every round). Pairs:

- ``plain``: Taylor 2/7 on every layer (one width: a stock config) / greentui's loader of it;
- ``remote-code``: the study's Taylor 2/7, ignore 4/4 (widths differ per layer; the folder's module
  builds each layer) / greentui's loader of it — both should be the same modules, so ~1.00;
- ``padded``: the same study model with zero heads and channels restoring one width / the pruned
  model: what the zeros cost (the notes give the parameter and FLOP ratios of the padding).
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import Row, row_from_pairs
from .p1_pruning import SEQ, _forward


def run(model_dir: Path, work: Path, *, repeats: int, batches=(1, 8), log=print) -> list[Row]:
    import torch
    from transformers import AutoModelForCausalLM

    from backend.stages.model_export import ExportRequest, export_model
    from backend.stages.model_io import load_model
    from backend.stages.prune import STUDY_RATIO, PruneConfig, prune_to_dir
    from backend.stages.pruning import flops

    t = time.perf_counter()
    uniform = prune_to_dir(str(model_dir), work / "px-uniform", PruneConfig(ratio=STUDY_RATIO, ignore_first=0,
                                                                           ignore_last=0))["out_dir"]
    study = prune_to_dir(str(model_dir), work / "px-study", PruneConfig(ratio=STUDY_RATIO))["out_dir"]
    exported = {}
    for name, src, fmt in (("plain", uniform, "plain"), ("remote-code", study, "remote-code"),
                           ("padded", study, "padded")):
        report = export_model(ExportRequest(source=Path(src), out=work / f"px-{name}", format=fmt, verify=False))
        exported[name] = report
    log(f"  P1x pruned and exported 3 models in {time.perf_counter() - t:.0f} s")

    models = {"greentui uniform": load_model(uniform)[0], "greentui study": load_model(study)[0],
              "plain": AutoModelForCausalLM.from_pretrained(work / "px-plain"),
              "remote-code": AutoModelForCausalLM.from_pretrained(work / "px-remote-code", trust_remote_code=True),
              "padded": AutoModelForCausalLM.from_pretrained(work / "px-padded")}
    for m in models.values():
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    pairs = [("plain", "greentui uniform"), ("remote-code", "greentui study"), ("padded", "greentui study")]
    names = list(models)
    rows: list[Row] = []
    gen = torch.Generator().manual_seed(0)
    vocab = models["plain"].config.vocab_size
    for bi, batch in enumerate(batches):
        x = torch.randint(0, vocab, (batch, SEQ), generator=gen)
        for name in names:
            _forward(models[name], x)
        times: dict[str, list[float]] = {n: [] for n in names}
        rounds = repeats * 3 if batch == 1 else repeats
        t0 = time.perf_counter()
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                times[name].append(_forward(models[name], x))
        log(f"  P1x batch {batch}: {rounds} rounds of {len(names)} models in {time.perf_counter() - t0:.0f} s")
        for k, (a, b) in enumerate(pairs, start=1):
            pr = flops.count_params(models[a]) / flops.count_params(models[b])
            fr = flops.flops_per_token(models[a], SEQ) / flops.flops_per_token(models[b], SEQ)
            loads = "trust_remote_code=True" if a == "remote-code" else "stock from_pretrained"
            rows.append(row_from_pairs(
                f"P1x{k}{'ab'[bi] if len(batches) <= 2 else bi}",
                f"latency exported {a} / greentui's loader, batch {batch}×{SEQ}", times[a], times[b], "ms",
                scale=1000, a_label=f"export {a}", b_label=b,
                notes=f"{loads} · params {pr:.3f} · FLOPs {fr:.3f}"
                      + (" (the zeros' cost)" if a == "padded" else " (same weights)"),
                params_ratio=pr, flops_ratio=fr, variant=a, batch=batch))
    return rows
