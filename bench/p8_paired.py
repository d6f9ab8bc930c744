"""P8 — how narrow does the paired protocol get the energy ratio (issue #18)?

The small demo model (123 M parameters) and its Taylor 2/7 copy (ignore 4/4, as the study prunes), on
the CPU, the seven study tasks from the shipped sample (``limit`` items each). Each task's loglikelihood
requests are captured from the pruned model's accuracy pass (``evaluate_model(on_requests=...)``), then
``backend.stages.paired.PairedMeter`` measures them as a run does: A B B A windows, each after a warm-up,
``--repeats auto`` (CI target ±3 % per task, at most ``max_repeats`` pairs, window ≥ ``window_s``).
The figure: the 95 % CI half-width of the *average* energy ratio over the tasks
(``backend.results.ratios.paired_energy_ratio``, what the screens show) / the 5 % target (≤ 1 meets it).
Notes: the ratio itself, pairs per task, and the machine's load average before and after.

``python -m bench.p8_paired [--limit N] [--size small|tiny]``, or ``bench/run --only P8``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .common import Row

TARGET = 0.05


def run(model_dir: Path, work: Path, *, limit: int = 5, max_repeats: int = 10, window_s: float = 1.0,
        log=print) -> list[Row]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.measure.energy import EnergySession
    from backend.results.ratios import paired_energy_ratio
    from backend.schema.tasks import STUDY_TASKS, bundled_data_dir
    from backend.stages.evaluate import counting_lm, evaluate_model
    from backend.stages.paired import PairedMeter, copy_model
    from backend.stages.prune import PruneConfig, prune_model

    torch.set_num_threads(2)
    load_before = os.getloadavg()
    tok = AutoTokenizer.from_pretrained(model_dir)
    vanilla = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    pruned = copy_model(vanilla)
    prune_model(pruned, tok, PruneConfig(seed=0, method="taylor", ratio=2 / 7, ignore_first=4,
                                         ignore_last=4))
    pruned.eval()
    params = (sum(p.numel() for p in vanilla.parameters()), sum(p.numel() for p in pruned.parameters()))
    session = EnergySession().prepare()
    captured: dict = {}
    for _ in evaluate_model(pruned, tok, list(STUDY_TASKS), data_dir=bundled_data_dir(), limit=limit,
                            out_dir=work / "p8", session=session, on_requests=captured.__setitem__):
        pass
    meter = PairedMeter(vanilla, pruned, lm_of=lambda m: counting_lm(m, tok, 8, "cpu"), session=session,
                        device="cpu", design="paired", window_s=window_s)
    pairs: dict[str, list[tuple[float, float]]] = {}
    t0 = time.perf_counter()
    for task in STUDY_TASKS:
        got = meter.measure_task(task, captured[task], repeats=None, ci_target=0.03, max_repeats=max_repeats,
                                 budget_s=3600)
        pairs[task] = [(p, v) for v, p in got.pairs()]
        log(f"  P8 {task}: {len(pairs[task])} pairs, {got.stopped}")
    seconds = time.perf_counter() - t0
    avg = paired_energy_ratio(pairs)
    half = None if avg is None or avg.hi is None else (avg.hi - avg.lo) / 2 / avg.value
    load_after = os.getloadavg()
    notes = (f"average energy ratio {avg.value:.3f} [{avg.lo:.3f}, {avg.hi:.3f}]" if half is not None else "no interval")
    notes += (f"; pairs per task {', '.join(str(len(v)) for v in pairs.values())} (auto, ≤ {max_repeats}); "
              f"params {params[1] / params[0]:.3f} of vanilla; limit {limit}; windows {seconds:.0f} s; "
              f"load {load_before[0]:.1f} → {load_after[0]:.1f}")
    return [Row("P8", "CI half-width of the average paired energy ratio / 5 % target", half and half * 100,
                TARGET * 100, "%", (half / TARGET) if half is not None else None,
                min(len(v) for v in pairs.values()), notes, "half-width", "target")]


if __name__ == "__main__":
    import argparse
    import tempfile

    from backend.stages.demo import build_demo_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--size", default="small", choices=("small", "tiny"))
    ap.add_argument("--max-repeats", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = build_demo_model(Path(tmp) / "m", arch="llama", size=a.size, seed=0, overwrite=True)
        for r in run(d, Path(tmp), limit=a.limit, max_repeats=a.max_repeats):
            print(f"{r.figure}: {r.a if r.a is None else round(r.a, 2)} % / {r.b} % = {r.ratio} (n={r.n}); {r.notes}")
