"""``bench/run``: does pruning pay, and what does greentui itself cost? One table, five figures.

    bench/run            # full: the >=100 M-param Llama-shaped demo model; ~6-15 min on 2 cores
    bench/run --quick    # tiny model, few repeats (the smoke test); not appended unless --results
    bench/run --only P1,P5 --repeats 3

Every figure is a ratio of two things measured alternately in the same run, medians over repeats
(see bench/README.md for what each one measures). The table is printed and, for a full run, appended
with the date and the machine to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, header_lines, machine_info, table_lines

FIGURES = ("P1", "P1X", "P2", "P3", "P4", "P5", "P8", "DEMO", "FORM", "IMPORT", "STUDY")  # DEMO: `d` to finished
# demo run (bench/demo_time.py); FORM: `n` on Runs to a usable New-run form (bench/form_open.py); IMPORT: a
# 100k-row published table's import against 10 × a 10k-row one (bench/import_table.py); STUDY: the demo
# study preset to every cell done (bench/study_demo.py); P1X: exported models (greentui export-model) loaded
# as users load them, against greentui's loader (bench/p1_export.py)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few repeats (a couple of minutes)")
    p.add_argument("--only", default=None, help="comma-separated figures (P3 and P4 run together; default "
                   "all, and all but DEMO with --quick: the demo is the real pipeline, minutes on a busy box)")
    p.add_argument("--repeats", type=int, default=None, help="override every figure's repeat count")
    p.add_argument("--size", choices=("tiny", "small"), default=None, help="demo model size for P1/P5 "
                   "(default: small, tiny with --quick)")
    p.add_argument("--eval-size", choices=("tiny", "small"), default=None,
                   help="demo model size for P3/P4 (default: small, tiny with --quick)")
    p.add_argument("--limit", type=int, default=None, help="items per task for P3/P4 (default 5, 1 with --quick)")
    p.add_argument("--results", type=Path, default=None,
                   help="append the table here (default: bench/RESULTS.md for a full run; a quick run "
                        "appends only when this is given)")
    p.add_argument("--no-append", action="store_true", help="print only")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.only is None:
        args.only = ",".join(f for f in FIGURES if not (args.quick and f in ("DEMO", "STUDY")))
    only = {f.strip().upper() for f in args.only.split(",") if f.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        print(f"bench/run: unknown figure(s) {', '.join(sorted(unknown))}; choose from {', '.join(FIGURES)}",
              file=sys.stderr)
        return 2
    quick = args.quick
    size = args.size or ("tiny" if quick else "small")
    eval_size = args.eval_size or ("tiny" if quick else "small")
    limit = args.limit or (1 if quick else 5)
    reps = {"P1": 2 if quick else 5, "P1X": 2 if quick else 5, "P2": 2 if quick else 9, "P3": 1 if quick else 4,
            "P5": 1 if quick else 2, "FORM": 2 if quick else 9, "IMPORT": 1 if quick else 2}
    if args.repeats:
        reps = {k: args.repeats for k in reps}

    with tempfile.TemporaryDirectory(prefix="greentui-bench-") as tmp:
        work = (args.work_dir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        # offline and self-contained: no DNS retries, no caches in the home directory
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-datasets"))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("OMP_NUM_THREADS", "2")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 2))
        import logging
        for name in ("transformers", "codecarbon", "lm_eval", "datasets", "greentui.prune"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except Exception:  # noqa: BLE001
            pass

        info = machine_info()
        t_start = time.perf_counter()

        def log(msg: str) -> None:
            print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

        log(f"bench/run {'--quick' if quick else 'full'} on {info['cpu']} ({info['cores']} cores), "
            f"load {info['load_at_start']}; work dir {work}")
        models: dict[str, Path] = {}

        def model(sz: str) -> Path:
            if sz not in models:
                from backend.stages.demo import build_demo_model

                t = time.perf_counter()
                models[sz] = build_demo_model(work / f"demo-{sz}", arch="llama", size=sz, seed=0, overwrite=True)
                log(f"built the {sz} demo model in {time.perf_counter() - t:.0f} s")
            return models[sz]

        rows = []
        if "P2" in only:
            from . import p2_ui
            log("P2 UI start …")
            rows += p2_ui.run(work, repeats=reps["P2"], log=log)
        if "DEMO" in only:
            from . import demo_time
            log("Demo time (d to finished) …")
            rows += demo_time.run(work, log=log)
        if "STUDY" in only:
            from . import study_demo
            log("STUDY demo study preset (study run --preset demo to every cell done) …")
            rows += study_demo.run(work, log=log)
        if "FORM" in only:
            from . import form_open
            log("FORM New-run form open …")
            rows += form_open.run(work, repeats=reps["FORM"], n_runs=200 if quick else form_open.N_RUNS, log=log)
        if "IMPORT" in only:
            from . import import_table
            log("IMPORT published table …")
            rows += import_table.run(work, rows=10_000 if quick else 100_000, repeats=reps["IMPORT"], log=log)
        if "P5" in only:
            from . import p5_memory
            log("P5 pruning memory …")
            rows += p5_memory.run(model(size), repeats=reps["P5"], log=log)
        if "P3" in only or "P4" in only:
            from . import p3_eval
            log("P3/P4 evaluation overheads …")
            got = p3_eval.run(model(eval_size), work, repeats=reps["P3"], limit=limit, warm_up=not quick, log=log)
            rows += [r for r in got if r.figure in only]
            gc.collect()
        if "P8" in only:
            from . import p8_paired
            log("P8 paired energy ratio CI …")
            rows += p8_paired.run(model(eval_size), work, limit=limit, max_repeats=3 if quick else 10,
                                  window_s=0.1 if quick else 1.0, log=log)
            gc.collect()
        if "P1" in only:
            from . import p1_pruning
            log("P1 pruning pays? …")
            rows = p1_pruning.run(model(size), repeats=reps["P1"], quick=quick, log=log) + rows
            gc.collect()

        if "P1X" in only:
            from . import p1_export
            log("P1x exported models …")
            rows += p1_export.run(model(size), work, repeats=reps["P1X"], log=log)
            gc.collect()

        order = {f: i for i, f in enumerate(FIGURES)}

        def rank(r) -> int:  # "P1a1" -> P1, "P1x1a" -> P1X, "DEMO" -> DEMO
            for key in (r.figure.upper(), r.figure[:3].upper(), r.figure[:2]):
                if key in order:
                    return order[key]
            return len(order)

        rows.sort(key=rank)
        seconds = time.perf_counter() - t_start
        mode = ("--quick" if quick else "full") + (f" --only {args.only}" if only != set(FIGURES) else "")
        text = "\n".join(header_lines(info, mode, seconds) + [""] + table_lines(rows)) + "\n"
        print(text)
        target = args.results or (None if quick else REPO / "bench" / "RESULTS.md")
        if target is not None and not args.no_append:
            target.parent.mkdir(parents=True, exist_ok=True)
            sep = "\n" if target.exists() and target.read_text().strip() else ""
            with target.open("a", encoding="utf-8") as fh:
                fh.write(sep + text)
            log(f"appended to {target}")
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "mode": mode, "seconds": seconds,
                                             "rows": [r.__dict__ for r in rows]}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
