"""``greentui prune MODEL --out DIR``: structured pruning to a directory that reloads.

Progress goes to stderr (rich), the report table to stdout; the full report is also saved as
``DIR/greentui_prune_report.json``.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    from backend.cli.commands.plan import add_pruning_options
    from backend.cli.commands.run_options import add_settings
    from backend.schema.runconfig import SETTING
    from backend.schema.settings import add_argument

    p = sub.add_parser("prune", parents=parents, help="structurally prune a model into a directory",
                       description="Prune attention heads and MLP channels (taylor, l1, l2, random) or whole "
                                   "decoder layers (layer-drop). What RATIO counts is the counting rule's "
                                   "(--count-rule; layer-drop: the fraction of layers). `greentui plan` "
                                   "predicts the result from config.json.")
    p.add_argument("model", help="HF id or local model directory (a pruned one too)")
    p.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    add_pruning_options(p)
    add_settings(p, ("calib_samples", "calib_seq_len", "seed"), group="calibration")
    g = p.add_mutually_exclusive_group()
    add_argument(g, SETTING["calib_file"])
    g.add_argument("--calib-dataset", default=None, help="HF dataset id[:config] (needs the hub)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from backend.cli.commands.common import say
    from backend.cli.commands.plan import config_from_args
    from backend.stages.prune import prune_to_dir
    from backend.text import safe_text

    err = Console(stderr=True)
    cfg = config_from_args(args, calib_dataset=args.calib_dataset, device=args.device)
    logging.getLogger("greentui.prune").addHandler(logging.NullHandler())
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        report = prune_to_dir(args.model, args.out, cfg,
                              progress=lambda msg, frac: bar.update(task, description=escape(safe_text(msg, 60)),
                                                                        completed=frac))
    for w in report.get("warnings", []):
        say(err, "warning:", w, style="yellow")
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from backend.cli.commands.common import plain

    con = Console()
    b, a = report["params_before"], report["params_after"]
    summary = Table(title=f"prune: {report['method']} ({report.get('model_type')}), {report.get('count_rule')} "
                          "counting rule", show_header=False)
    summary.add_row("parameters", f"{b:,} → {a:,}  (−{report['params_removed_ratio']:.1%} of the model)")
    if "prunable_removed_ratio" in report:
        summary.add_row("pruned layers' projections",
                        f"{report['prunable_params_before']:,} → {report['prunable_params_after']:,}  "
                        f"(−{report['prunable_removed_ratio']:.1%}, target {report['target_ratio']:.1%})")
    if report.get("target"):
        tg = report["target"]
        summary.add_row("target", f"{tg['target_params']:,} → ratio {tg['ratio']:.5f} ({tg['off_by']:+,} parameters)")
    if report.get("selection"):
        summary.add_row("chosen by", report["selection"])
    if report.get("removed_layers") is not None:
        summary.add_row("layers removed", ", ".join(map(str, report["removed_layers"])))
    fb, fa = report["flops_per_token_before"], report["flops_per_token_after"]
    summary.add_row(f"FLOPs/token @{report['flops_context_tokens']} ctx", f"{fb:,} → {fa:,}  ({fa / fb:.3f}×)")
    summary.add_row("ignored layers", f"first {report['ignore_first']}, last {report['ignore_last']}")
    summary.add_row("wall time", f"{report['wall_time_s']:.2f} s on {report['device']}")
    summary.add_row("peak memory", f"{report['peak_rss_mb']:.0f} MB RSS"
                    + (f", {report['cuda_peak_mb']:.0f} MB CUDA" if "cuda_peak_mb" in report else ""))
    summary.add_row("torch-pruning", report["torch_pruning_version"])
    if report.get("out_dir"):
        summary.add_row("saved to", *plain(report["out_dir"]))
    con.print(summary)
    if report.get("layers"):
        t = Table(title="pruned layers")
        for col in ("layer", "heads", "kv heads", "intermediate", "heads removed", "tp MLP ratio"):
            t.add_column(col, justify="right" if col != "heads removed" else "left")
        for e in report["layers"]:
            t.add_row(str(e["layer"]), f"{e['heads_before']} → {e['heads_after']}",
                      f"{e['kv_heads_before']} → {e['kv_heads_after']}",
                      f"{e['intermediate_before']} → {e['intermediate_after']}",
                      ",".join(map(str, e["heads_removed"])) or "-", f"{e['tp_mlp_pruning_ratio']:.3f}")
        con.print(t)
