"""The options shared by ``greentui run`` and ``greentui queue`` (they mirror the study's knobs)."""

from __future__ import annotations

import argparse

from ..runconfig import DEVICES, IMPORTANCES, RunConfig, parse_batches, parse_tasks

D = RunConfig()


def ratio(text: str) -> float:
    """Accept 0.25 or a fraction like 2/7 (the study's ratio)."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ratio (e.g. 0.25 or 2/7)") from None


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="HF id, local model directory, or a model already in the workspace")
    g = p.add_argument_group("pruning")
    g.add_argument("--no-prune", action="store_true", help="evaluate the vanilla model only")
    g.add_argument("--importance", "--method", dest="importance", choices=IMPORTANCES, default=D.importance)
    g.add_argument("--prune-ratio", type=ratio, default=D.prune_ratio, help="fraction to remove (default 2/7)")
    g.add_argument("--ignore-first", type=int, default=D.ignore_first, help="leading layers kept whole")
    g.add_argument("--ignore-last", type=int, default=D.ignore_last, help="trailing layers kept whole")
    g.add_argument("--round-to", type=int, default=D.round_to, help="round pruned widths to a multiple")
    g.add_argument("--calib-samples", type=int, default=D.calib_samples)
    g.add_argument("--calib-seq-len", type=int, default=D.calib_seq_len)
    g.add_argument("--calib-file", default=None, help="calibration text file (default: shipped text)")
    g = p.add_argument_group("LoRA recovery")
    g.add_argument("--no-lora", action="store_true", help="skip LoRA recovery")
    g.add_argument("--lora-r", type=int, default=D.lora_r)
    g.add_argument("--lora-alpha", type=int, default=D.lora_alpha)
    g.add_argument("--lora-dropout", type=float, default=D.lora_dropout)
    g.add_argument("--lora-steps", type=int, default=None, help=f"optimizer steps (default {D.lora_steps})")
    g.add_argument("--lora-epochs", type=float, default=None, help="epochs instead of steps")
    g.add_argument("--lora-lr", type=float, default=D.lora_lr)
    g.add_argument("--lora-batch-size", type=int, default=D.lora_batch_size)
    g.add_argument("--lora-cutoff-len", type=int, default=D.lora_cutoff_len)
    g.add_argument("--lora-data", default=None, help="alpaca JSONL/text file or HF dataset id "
                                                     "(default: shipped CC0 instructions)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--tasks", default="all", help="comma-separated task names, or 'all' (the study's seven)")
    g.add_argument("--limit", type=int, default=None, help="items per task (default: the whole split)")
    g.add_argument("--num-fewshot", type=int, default=D.num_fewshot)
    g.add_argument("--batch-size", default=D.batch_size, help="'auto' or an integer")
    g.add_argument("--data-dir", default=None, help="local DIR/<task>.jsonl files (offline evaluation)")
    g.add_argument("--ppl-limit", type=int, default=D.ppl_limit, help="WikiText-2 tokens for perplexity (0 skips)")
    g = p.add_argument_group("machine")
    g.add_argument("--device", default=D.device, help=f"{', '.join(DEVICES)} or cuda:N")
    g.add_argument("--seed", type=int, default=D.seed)
    g.add_argument("--country", default=D.country, help="ISO code for CodeCarbon's carbon intensity")
    g.add_argument("--no-energy", action="store_true", help="do not run the energy meters")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow this model's own Python code (off by default; per model)")
    g = p.add_argument_group("energy")
    g.add_argument("--repeats", type=int, default=D.repeats,
                   help="measure each task's time and energy N times (accuracy once); mean ± 95%% CI, CV")
    g.add_argument("--efficiency-batches", default="",
                   help="efficiency stage: tokens/s and J/token of vanilla and pruned at these batch sizes, "
                        "e.g. 1,8,32 (default: no stage)")
    g.add_argument("--efficiency-seq-len", type=int, default=D.efficiency_seq_len,
                   help=f"tokens per sequence in the efficiency stage (default {D.efficiency_seq_len})")
    g.add_argument("--cooldown", action="store_true",
                   help="between measured windows wait until the GPU is within 2 °C of its pre-run "
                        "temperature (at most 60 s; needs NVML)")
    g = p.add_argument_group("executor (where the run executes; defaults from the workspace's greentui.toml)")
    g.add_argument("--executor", choices=("local", "slurm"), default=None,
                   help="local (this machine's runner, default) or slurm (one job per run, via submitit)")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--gpus", type=int, default=None, help="GPUs for the run")
    g.add_argument("--time-limit", default=None, metavar="HH:MM:SS", help="Slurm time limit")
    g.add_argument("--slurm-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="any sbatch option as KEY=VALUE (repeatable), e.g. account=proj, qos=normal")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    steps = args.lora_steps
    if steps is None and args.lora_epochs is None:
        steps = D.lora_steps
    cfg = RunConfig(
        model=args.model, no_prune=args.no_prune, importance=args.importance, prune_ratio=args.prune_ratio,
        ignore_first=args.ignore_first, ignore_last=args.ignore_last, round_to=args.round_to,
        calib_samples=args.calib_samples, calib_seq_len=args.calib_seq_len, calib_file=args.calib_file,
        no_lora=args.no_lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        lora_steps=steps, lora_epochs=args.lora_epochs, lora_lr=args.lora_lr,
        lora_batch_size=args.lora_batch_size, lora_cutoff_len=args.lora_cutoff_len, lora_data=args.lora_data,
        tasks=parse_tasks(args.tasks), limit=args.limit, num_fewshot=args.num_fewshot,
        batch_size=str(args.batch_size), data_dir=args.data_dir, ppl_limit=args.ppl_limit or None,
        device=args.device, seed=args.seed, country=args.country, measure_energy=not args.no_energy,
        trust_remote_code=args.trust_remote_code, repeats=args.repeats,
        efficiency_batches=parse_batches(args.efficiency_batches or ""),
        efficiency_seq_len=args.efficiency_seq_len, cooldown=args.cooldown)
    cfg.executor = getattr(args, "executor", None) or "local"
    cfg.partition, cfg.gpus = getattr(args, "partition", None), getattr(args, "gpus", None)
    cfg.time_limit, cfg.slurm_arg = getattr(args, "time_limit", None), list(getattr(args, "slurm_arg", None) or [])
    return cfg.validate()


def apply_workspace_defaults(cfg: RunConfig, workspace) -> RunConfig:
    """Fill the Slurm settings the command line left out from the workspace's ``greentui.toml``."""
    if cfg.executor != "slurm":
        return cfg
    from ..wsconfig import slurm_defaults
    d = slurm_defaults(workspace)
    cfg.partition = cfg.partition or d.get("partition")
    cfg.gpus = cfg.gpus if cfg.gpus is not None else d.get("gpus")
    cfg.time_limit = cfg.time_limit or d.get("time_limit")
    given = {a.split("=", 1)[0] for a in cfg.slurm_arg}
    cfg.slurm_arg = [*(f"{k}={v}" for k, v in (d.get("args") or {}).items() if k not in given), *cfg.slurm_arg]
    return cfg.validate()


def prepare_run(store, cfg: RunConfig, status: str, pid: int | None = None) -> int:
    """Resolve the model (clear error when unknown), fix paths, and record the run."""
    from pathlib import Path

    from ..errors import GreentuiError
    from ..models import register_model
    known = store.get_model(cfg.model)
    model_id = known["id"] if known else register_model(store, cfg.model, cfg.trust_remote_code)
    cfg.model = store.get_model(model_id)["ref"]
    for name in ("data_dir", "calib_file", "lora_data"):
        value = getattr(cfg, name)
        if value and Path(value).expanduser().exists():
            setattr(cfg, name, str(Path(value).expanduser().resolve()))
        elif value and name == "data_dir":
            raise GreentuiError(f"--data-dir {value}: no such directory")
    if cfg.data_dir:
        from ..tasks.registry import task_spec, validate_task_file
        for task in cfg.tasks:  # fail before anything is queued: the message names file and line
            validate_task_file(Path(cfg.data_dir) / task_spec(task).file_name, task)
    kind = "baseline" if cfg.no_prune else "experiment"
    return store.create_run(model_id, kind, cfg.to_dict(), status=status, pid=pid)
