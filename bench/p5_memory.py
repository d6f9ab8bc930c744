"""P5 — pruning memory: peak RSS of a process that loads and Taylor-prunes the model (study recipe,
2/7, ignore 4/4, calibration 10×64) over the model's bytes (parameters × element size).

Each side is a fresh process (``python -m bench.p5_memory prune|load DIR``) reading its own
``getrusage(RUSAGE_SELF).ru_maxrss`` at the end; ``load`` only imports the same libraries and loads
the model, so prune − load is what pruning itself adds (gradients of every parameter, activations
kept for the backward pass, torch-pruning's graph, the rebuilt layers).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from .common import Row, alternate, row_from_pairs, run_json


def child(kind: str, model_dir: str) -> dict:
    import torch

    torch.set_num_threads(2)
    from backend.stages.model_io import load_model
    from backend.stages.prune import PruneConfig, prune_model  # same imports on both sides

    model, tok = load_model(model_dir)
    n = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {"kind": kind, "params": n, "model_bytes": nbytes}
    if kind == "prune":
        report = prune_model(model, tok, PruneConfig(method="taylor"))
        out["params_after"] = report["params_after"]
        out["prune_s"] = report["wall_time_s"]
    out["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run(model_dir: Path, *, repeats: int, log=print) -> list[Row]:
    seen: dict[str, list[dict]] = {"prune": [], "load": []}

    def side(kind):
        def f():
            r = run_json(["-m", "bench.p5_memory", kind, str(model_dir)], env={"OMP_NUM_THREADS": "2"})
            seen[kind].append(r)
            return r["maxrss_bytes"]
        return f

    prune, load = alternate(repeats, side("prune"), side("load"))
    model_bytes = seen["prune"][0]["model_bytes"]
    mb = 2**20
    from .common import median

    extra = (median(prune) - median(load)) / model_bytes
    log(f"  P5 prune peak {[round(x / mb) for x in prune]} MB, load-only {[round(x / mb) for x in load]} MB, "
        f"model {model_bytes / mb:.0f} MB")
    row = row_from_pairs("P5", "pruning memory: peak RSS of Taylor pruning / model bytes", prune,
                         [model_bytes] * len(prune), "MB", scale=1 / mb, a_label="prune peak RSS",
                         b_label="model bytes",
                         notes=f"load-only process peaks at {median(load) / mb:.0f} MB "
                               f"({median(load) / model_bytes:.2f}× model); pruning adds "
                               f"{extra:.2f}× model bytes; Taylor 2/7 ignore 4/4, calib 10×64, fp32")
    return [row]


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2])))
