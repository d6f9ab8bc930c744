"""P3 — meter overhead, and P4 — no tax over lm-eval.

One model, the seven study tasks from the sample shipped with greentui (``bundled_data_dir()``),
the same ``limit``, batch size, zero-shot and seeds everywhere. Three ways to evaluate, one of each
per round, in an order that reverses every round (on, off, plain / plain, off, on / ...):

- ``on``: ``backend.stages.evaluate.evaluate_model(..., measure_energy=True)`` — greentui as a run uses it:
  one ``simple_evaluate`` per task, each in a window of every available meter of the registry (the
  CPU-time estimate and the machine-load record always, one CodeCarbon tracker per evaluation through
  its task API — process mode, 1 s sampling —, the NVML and RAPL counters where they exist);
- ``off``: the same call with ``measure_energy=False``;
- ``plain``: what a user of lm-eval alone would run: ``HFLM(pretrained=model)`` and one
  ``lm_eval.simple_evaluate`` over the seven (local) tasks.

P3 = on / off; P4 = off / plain (meters off on both sides, so P4 is greentui's plumbing alone; the
product P3 × P4 is the whole cost of greentui's evaluation over lm-eval's). The wall time of each
side includes building the HFLM wrapper and lm-eval's task loading, as a user pays them. Warm-up
rounds with a tiny limit come first (datasets' Arrow cache, CodeCarbon's hardware detection).
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import Row, median, row_from_pairs

SEED = 1234


def _greentui(model, tok, out: Path, limit: int, bs: int, energy: bool) -> dict:
    from backend.schema.tasks import STUDY_TASKS, bundled_data_dir
    from backend.stages.evaluate import evaluate_model

    rows = list(evaluate_model(model, tok, list(STUDY_TASKS), data_dir=bundled_data_dir(), limit=limit,
                               num_fewshot=0, batch_size=bs, device="cpu", out_dir=out,
                               measure_energy=energy, seed=SEED))
    return {r["task"]: r for r in rows}


def _plain(model, tok, task_dir: Path, limit: int, bs: int) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from backend.schema.tasks import STUDY_TASKS, TASKS

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=bs, device="cpu", max_batch_size=64)
    tm = TaskManager(include_path=[str(task_dir)], include_defaults=False)
    res = lm_eval.simple_evaluate(model=lm, tasks=[TASKS[t].local_name for t in STUDY_TASKS], task_manager=tm,
                                  num_fewshot=0, limit=limit, log_samples=False, bootstrap_iters=1000,
                                  random_seed=SEED, numpy_random_seed=SEED, torch_random_seed=SEED,
                                  fewshot_random_seed=SEED)
    return {t: res["results"][TASKS[t].local_name] for t in STUDY_TASKS}


def run(model_dir: Path, work: Path, *, repeats: int, limit: int, bs: int = 8, warm_up: bool = True,
        log=print) -> list[Row]:
    from backend.schema.tasks import STUDY_TASKS, bundled_data_dir
    from backend.stages.lm_tasks import build_local_task_dir
    from backend.stages.model_io import load_model

    model, tok = load_model(model_dir)
    model.eval()
    out = work / "p3"
    task_dir = build_local_task_dir(bundled_data_dir(), list(STUDY_TASKS), out / "plain")
    n_params = sum(p.numel() for p in model.parameters())

    last: dict[str, dict] = {}

    def side(kind: str, lim: int):
        def f() -> float:
            t = time.perf_counter()
            if kind == "plain":
                last[kind] = _plain(model, tok, task_dir, lim, bs)
            else:
                last[kind] = _greentui(model, tok, out / kind, lim, bs, energy=(kind == "on"))
            return time.perf_counter() - t
        return f

    t0 = time.perf_counter()
    for kind in ("on", "off", "plain") if warm_up else ():
        side(kind, 1)()
    log(f"  P3/P4 warm-up {time.perf_counter() - t0:.0f} s")
    times: dict[str, list[float]] = {"on": [], "off": [], "plain": []}
    t0 = time.perf_counter()
    for r in range(repeats):
        order = ("on", "off", "plain") if r % 2 == 0 else ("plain", "off", "on")
        for kind in order:
            times[kind].append(side(kind, limit)())
    log(f"  P3/P4 {repeats} rounds in {time.perf_counter() - t0:.0f} s: "
        + ", ".join(f"{k} {sorted(round(x, 1) for x in v)}" for k, v in times.items()))

    on, off, plain = last["on"], last["off"], last["plain"]
    same = sum(1 for t in STUDY_TASKS
               if abs((off[t]["acc"] or 0) - float(plain[t]["acc,none"])) < 1e-9
               and abs((on[t]["acc"] or 0) - (off[t]["acc"] or 0)) < 1e-9)
    kwh = sum(r["energy_kwh"] or 0 for r in on.values())
    meter = next(iter(on.values()))["meter"]
    tokens = sum(r["tokens"] for r in off.values())
    what = f"{n_params / 1e6:.0f} M-param model, 7 tasks, limit {limit}, batch {bs}"
    return [
        row_from_pairs("P3", f"meter overhead: evaluate meters on / off ({what})", times["on"], times["off"], "s",
                       a_label="meters on", b_label="meters off",
                       notes=f"{(median(times['on']) - median(times['off'])) / 7:+.2f} s per task; every "
                             f"available meter of the registry per task window (CodeCarbon: one tracker, task API, "
                             f"process mode), {kwh * 3.6e6:.0f} J by {meter}; acc identical on {same}/7"),
        row_from_pairs("P4", f"no tax: greentui evaluate / plain lm_eval.simple_evaluate ({what})",
                       times["off"], times["plain"], "s", a_label="greentui", b_label="lm-eval",
                       notes=f"{(median(times['off']) - median(times['plain'])) / 7:+.2f} s per task; meters off "
                             f"both sides; greentui: one simple_evaluate per task, token count ({tokens:,}), "
                             f"per-task JSON; acc identical on {same}/7"),
    ]
