"""GPU benchmark: does pruning an 8B Llama pay on a real accelerator? (``bench/gpu.sh`` runs it.)

A Llama-3.1-8B-shaped model with random weights (hidden 4096, 32 layers, 32 heads over 8 kv heads,
head_dim 128, MLP 14336, vocab 128256; 8.03 B parameters) is built directly on the GPU in bf16 with
``from_config`` under ``torch.device("cuda")`` — no download, ~16 GB. Variants, each a deep copy of
the same weights pruned by greentui's own ``backend.stages.prune.prune_model``:

- ``study``: Taylor importance, ratio 2/7, ignore the first and last 4 layers, round_to 8,
  calibration 10 × 64 tokens (the study's recipe; non-uniform widths);
- ``uniform``: Taylor 2/7 over *every* layer (ignore 0/0) with round_to 64: all layers keep the same,
  hardware-aligned widths (a plain Llama config could describe it).

Measured for each variant and batch size (1, 8, 32) on loglikelihood-style batches (one forward over
``[batch, seq]`` token ids, all logits, ``use_cache=False``, ``inference_mode``): tokens/s and joules
per token from NVML's cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ) read
after ``torch.cuda.synchronize()`` around a timed loop of at least ``--window`` seconds; variants
alternate within each round (order reversed every round), medians over rounds. Also: peak GPU memory
of each forward at the largest batch, the pruning's own peak, idle power before the run. The energy
ratio (pruned J/token over vanilla J/token) is printed beside the parameter ratio.

``--tiny --device cpu`` runs the same code on a small shape without NVML (energy "n/a"): it checks
the script, not the hardware.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LLAMA31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=128256, rope_theta=500000.0,
                  max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
# same proportions (4 query heads per kv head, MLP 3.5x), a few million parameters
TINY = dict(hidden_size=256, intermediate_size=896, num_hidden_layers=10, num_attention_heads=8,
            num_key_value_heads=2, head_dim=32, vocab_size=8192, rope_theta=500000.0,
            max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="a small shape (script check on CPU)")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--seq", type=int, default=256, help="tokens per row (lm-eval's commonsense requests are "
                   "~50-300 tokens)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=3.0, help="seconds of forwards per measurement")
    p.add_argument("--calib", default="10x64", help="calibration samples x tokens for Taylor")
    p.add_argument("--variants", default="study,uniform")
    p.add_argument("--attn", choices=("eager", "sdpa"), default="sdpa",
                   help="attention kernel for the timed forwards (sdpa: what greentui's load_model gives "
                        "a Llama for evaluation; eager: the plain kernel pruning calibrates with)")
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    p.add_argument("--results", type=Path, default=None,
                   help="append the table here (default: bench/RESULTS.md for a full-size CUDA run)")
    p.add_argument("--no-append", action="store_true")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ NVML

class Energy:
    """NVML's cumulative energy counter of the GPU torch uses (mJ), or nothing."""

    def __init__(self, device: str):
        self.handle = None
        self.reason = None
        self.name = None
        if not device.startswith("cuda"):
            self.reason = "not a CUDA device"
            return
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            idx = torch.cuda.current_device()
            handle = None
            uuid = getattr(torch.cuda.get_device_properties(idx), "uuid", None)
            if uuid is not None:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
                except Exception:  # noqa: BLE001
                    handle = None
            if handle is None:
                handle = pynvml.nvmlDeviceGetHandleByIndex(idx)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # supported? (Volta+)
            self.handle, self.nvml = handle, pynvml
            name = pynvml.nvmlDeviceGetName(handle)
            self.name = name.decode() if isinstance(name, bytes) else name
        except Exception as exc:  # noqa: BLE001
            self.reason = f"NVML energy counter unavailable: {exc}"

    def mj(self) -> int | None:
        return None if self.handle is None else int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_w(self) -> float | None:
        return None if self.handle is None else self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000


# ------------------------------------------------------------------------------------------ model

def build(device: str, tiny: bool):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from backend.stages.demo import build_tokenizer

    tok = build_tokenizer(8192 if not tiny else 1024)  # calibration ids < vocab; no download
    cfg = LlamaConfig(**(TINY if tiny else LLAMA31_8B), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg._attn_implementation = "sdpa"  # as backend.stages.model_io.load_model gives a Llama to lm-eval
    torch.manual_seed(0)
    with torch.device(device):  # weights are created (and randomly initialised) on the GPU, in bf16
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    return model, tok


def prune(vanilla, tok, device: str, variant: str, calib: tuple[int, int], log):
    import torch

    from backend.stages.prune import STUDY_RATIO, PruneConfig, prune_model

    m = copy.deepcopy(vanilla)
    n, L = calib
    if variant == "study":
        cfg = PruneConfig(method="taylor", ratio=STUDY_RATIO, round_to=8, calib_samples=n, calib_seq_len=L,
                          device=device.split(":")[0])
    elif variant == "uniform":
        cfg = PruneConfig(method="taylor", ratio=STUDY_RATIO, ignore_first=0, ignore_last=0, round_to=64,
                          calib_samples=n, calib_seq_len=L, device=device.split(":")[0])
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    t = time.perf_counter()
    try:
        with torch.device(device):  # rebuilt layers are created on the GPU, not initialised on the host
            report = prune_model(m, tok, cfg)
    except Exception as exc:  # noqa: BLE001 - a factory call that must stay on the host: plain call
        log(f"pruning under torch.device({device!r}) failed ({type(exc).__name__}: {exc}); "
            "retrying with layers built on the host (slower)")
        del m
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        m = copy.deepcopy(vanilla)
        report = prune_model(m, tok, cfg)
    for p in m.parameters():
        p.requires_grad_(False)
    m.zero_grad(set_to_none=True)
    m.eval()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    widths = sorted({(w["heads"], w["kv_heads"], w["intermediate"]) for w in report["layers_after"]})
    log(f"pruned {variant}: {report['params_after'] / 1e9:.3f} B params in {time.perf_counter() - t:.0f} s, "
        f"widths (heads, kv, mlp) {widths}, prune peak {report.get('cuda_peak_mb', 'n/a')} MB")
    return m, {"params": report["params_after"], "widths": widths, "prune_s": time.perf_counter() - t,
               "prune_cuda_peak_mb": report.get("cuda_peak_mb"), "prune_peak_rss_mb": report.get("peak_rss_mb")}


# ------------------------------------------------------------------------------------------ measure

def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def measure(model, x, device: str, energy: Energy, window: float) -> dict:
    import torch

    with torch.inference_mode():
        model(input_ids=x, use_cache=False)  # this shape's kernels/allocations are warm
        sync(device)
        if device.startswith("cuda"):
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        e0 = energy.mj()
        t0 = time.perf_counter()
        iters = 0
        while True:
            model(input_ids=x, use_cache=False)
            iters += 1
            if iters >= 3 and (iters % 2 == 0 or device == "cpu"):
                sync(device)
                if time.perf_counter() - t0 >= window:
                    break
        sync(device)
        t1 = time.perf_counter()
        e1 = energy.mj()
    tokens = x.numel() * iters
    out = {"iters": iters, "seconds": t1 - t0, "tokens": tokens, "tokens_per_s": tokens / (t1 - t0)}
    out["joules"] = (e1 - e0) / 1000 if e0 is not None and e1 is not None else None
    out["j_per_token"] = out["joules"] / tokens if out["joules"] is not None else None
    if device.startswith("cuda"):
        out["forward_peak_extra_gb"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, spec=".3f", none="n/a"):
    return none if x is None else format(x, spec)


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible (use --tiny --device cpu to check the script)", file=sys.stderr)
        return 2
    if device == "cpu":
        torch.set_num_threads(min(os.cpu_count() or 2, 16))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    logging.getLogger("greentui.prune").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    batches = [int(b) for b in args.batches.split(",")]
    calib = tuple(int(v) for v in args.calib.lower().split("x"))
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    energy = Energy(device)
    gpu_name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    log(f"device {gpu_name}; energy: {energy.name or energy.reason}")
    idle_w = None
    if energy.handle is not None:  # idle power over 2 s, before anything runs
        e0, t0 = energy.mj(), time.perf_counter()
        time.sleep(2.0)
        idle_w = (energy.mj() - e0) / 1000 / (time.perf_counter() - t0)

    from backend.stages.model_io import set_attention

    vanilla, tok = build(device, args.tiny)
    n_vanilla = sum(p.numel() for p in vanilla.parameters())
    log(f"built {'tiny' if args.tiny else 'Llama-3.1-8B'}-shaped random model in bf16: {n_vanilla / 1e9:.3f} B params")
    models = {"vanilla": vanilla}
    info = {"vanilla": {"params": n_vanilla, "widths": None}}
    for v in [s.strip() for s in args.variants.split(",") if s.strip()]:
        models[v], info[v] = prune(vanilla, tok, device, v, calib, log)
    for m in models.values():
        set_attention(m, args.attn)  # backend.stages.model_io's: every layer's config copy too
    names = list(models)

    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[int, list[dict]]] = {n: {b: [] for b in batches} for n in names}
    for b in batches:
        x = torch.randint(0, tok.vocab_size if args.tiny else 8192, (b, args.seq), generator=gen).to(device)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                results[n][b].append(measure(models[n], x, device, energy, args.window))
        log(f"batch {b}: " + ", ".join(f"{n} {med([m['tokens_per_s'] for m in results[n][b]]):,.0f} tok/s"
                                        for n in names))

    rows = []
    for n in names:
        for b in batches:
            ms = results[n][b]
            v = results["vanilla"][b]
            tps, jpt = med([m["tokens_per_s"] for m in ms]), med([m["j_per_token"] for m in ms])
            v_tps, v_jpt = med([m["tokens_per_s"] for m in v]), med([m["j_per_token"] for m in v])
            rows.append({
                "variant": n, "batch": b, "seq": args.seq, "params": info[n]["params"],
                "param_ratio": info[n]["params"] / n_vanilla,
                "tokens_per_s": tps, "speed_ratio": tps / v_tps,
                "j_per_token": jpt, "energy_ratio": (jpt / v_jpt) if jpt and v_jpt else None,
                "forward_peak_extra_gb": med([m.get("forward_peak_extra_gb") for m in ms]),
                "weights_gb": info[n]["params"] * 2 / 2**30, "rounds": len(ms),
                "watts": med([m["joules"] / m["seconds"] if m["joules"] is not None else None for m in ms]),
            })

    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    shape = "tiny (script check)" if args.tiny else "Llama-3.1-8B-shaped, random, bf16"
    lines = [f"## {now} — bench/gpu.sh on {gpu_name}" + (" (--tiny, not a measurement)" if args.tiny else ""), "",
             f"{shape}; {n_vanilla / 1e9:.3f} B params; loglikelihood-style forward [batch, {args.seq}], all "
             f"logits, {args.attn} attention; {args.rounds} rounds × ≥{args.window:g} s per point, medians; energy: "
             f"{'NVML total-energy counter (gross, idle included); idle ' + f(idle_w, '.0f') + ' W' if energy.handle else 'n/a (' + str(energy.reason) + ')'}; "
             f"torch {torch.__version__}; Taylor calibration {calib[0]}×{calib[1]}", "",
             "| variant | params | param ratio | batch | tokens/s | speed ratio | J/token | energy ratio | W | "
             "weights GB | fwd peak +GB |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['params'] / 1e9:.3f} B | {r['param_ratio']:.3f} | {r['batch']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['speed_ratio']:.3f} | {f(r['j_per_token'], '.4f')} | "
                     f"{f(r['energy_ratio'])} | {f(r['watts'], '.0f')} | {r['weights_gb']:.1f} | "
                     f"{f(r['forward_peak_extra_gb'], '.2f')} |")
    pr = [f"{n}: widths (heads, kv, mlp) {info[n]['widths']}, pruning took {info[n]['prune_s']:.0f} s, "
          f"its peak {f(info[n]['prune_cuda_peak_mb'], '.0f')} MB GPU" for n in names[1:]]
    if pr:
        lines += ["", "Variants — " + "; ".join(pr)]
    text = "\n".join(lines) + "\n"
    print(text)
    target = args.results or (REPO / "bench" / "RESULTS.md" if device.startswith("cuda") and not args.tiny else None)
    if target is not None and not args.no_append:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
        log(f"appended to {target}")
    if args.json:
        args.json.write_text(json.dumps({"device": gpu_name, "idle_w": idle_w, "shape": shape,
                                         "variants": {n: {k: v for k, v in info[n].items()} for n in names},
                                         "rows": rows, "raw": results}, indent=2, default=str) + "\n")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
