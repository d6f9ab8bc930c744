"""P5 — pruning memory: (peak RSS − RSS after imports) of a process that loads and Taylor-prunes the model
(study recipe, 2/7, ignore 4/4, calibration 10×64), over the model's bytes (parameters × element size).

Each sample is a fresh process (``python -m bench.p5_memory prune DIR [DEVICE]``). "After imports" is
after every library the load and the pruning import — torch, transformers' Auto classes *and the
architecture's modeling module* (transformers imports it lazily at the first load: ~0.3× this model's
bytes, which the old figure counted as "loading"), torch-pruning — read from ``/proc/self/status``
(VmRSS); the peak is ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end. So the ratio is what the model and
its pruning cost: the weights (memory-mapped: their pages come in as the first forward pass touches
them), calibration activations, the gradients of one pruned layer at a time (``pruning/taylor.py``), the
graph and the rebuilt layers. Target ≤ 1.3 (issue #22). On CUDA the row also gives
``torch.cuda.max_memory_allocated()`` over the model's bytes.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path

from .common import Row, median, row_from_pairs, run_json


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(kind: str, model_dir: str, device: str = "cpu") -> dict:
    import torch

    torch.set_num_threads(2)
    import torch_pruning  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from backend.stages.model_io import load_model
    from backend.stages.prune import PruneConfig, prune_model

    mt = json.loads((Path(model_dir) / "config.json").read_text())["model_type"]
    importlib.import_module(f"transformers.models.{mt}.modeling_{mt}")
    imports = _rss_bytes()
    model, tok = load_model(model_dir, device=device)
    n = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {"kind": kind, "params": n, "model_bytes": nbytes, "imports_rss_bytes": imports,
           "after_load_rss_bytes": _rss_bytes()}
    report = prune_model(model, tok, PruneConfig(method="taylor", device=device))
    out.update(params_after=report["params_after"], prune_s=report["wall_time_s"],
               passes=report["calibration"].get("passes"), selection=report.get("selection"))
    if device.startswith("cuda"):
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    out["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run(model_dir: Path, *, repeats: int, log=print, device: str = "cpu") -> list[Row]:
    seen = [run_json(["-m", "bench.p5_memory", "prune", str(model_dir), device], env={"OMP_NUM_THREADS": "2"})
            for _ in range(repeats)]
    model_bytes = seen[0]["model_bytes"]
    mb = 2**20
    extra = [r["maxrss_bytes"] - r["imports_rss_bytes"] for r in seen]
    imports = median([r["imports_rss_bytes"] for r in seen])
    at_load = median([r["after_load_rss_bytes"] - r["imports_rss_bytes"] for r in seen])
    log(f"  P5 peak over imports {[round(x / mb) for x in extra]} MB, imports {imports / mb:.0f} MB, "
        f"model {model_bytes / mb:.0f} MB")
    notes = (f"imports (torch, transformers + the modeling module, torch-pruning) {imports / mb:.0f} MB; "
             f"right after load {at_load / model_bytes:.2f}× model (weights memory-mapped); Taylor 2/7 ignore 4/4, "
             f"calib 10×64, {seen[0]['passes']} calibration passes (one pruned layer's gradients at a time), "
             f"selection: {seen[0]['selection']}; target ≤ 1.3")
    if "cuda_peak_bytes" in seen[0]:
        notes += f"; torch.cuda peak {median([r['cuda_peak_bytes'] for r in seen]) / model_bytes:.2f}× model"
    row = row_from_pairs("P5", "pruning memory: (peak RSS − RSS after imports) of Taylor pruning / model bytes",
                         extra, [model_bytes] * len(extra), "MB", scale=1 / mb, a_label="peak over imports",
                         b_label="model bytes", notes=notes)
    return [row]


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], *sys.argv[3:4])))
