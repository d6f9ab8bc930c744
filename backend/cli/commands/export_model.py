"""``greentui export-model RUN_OR_DIR --out DIR``: a pruned model that stock transformers, ``pipeline``
and the lm-eval CLI load (``backend.stages.model_export``; the formats in its ``formats.py``).

Progress goes to stderr (rich), the summary to stdout. ``--progress-jsonl`` prints JSON lines instead
(``{"progress", "message"}``, then ``{"report"}`` or ``{"error"}``): the TUI runs the command that way
in a subprocess, so its own process never imports torch.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export-model", parents=parents,
                       help="write a pruned model that stock transformers, pipelines and lm-eval load",
                       description="Export a run's pruned model (or a pruned model directory) as safetensors with "
                                   "its tokenizer, generation config, greentui_export.json and a model card, then "
                                   "load it in a fresh interpreter with transformers alone and compare its logits "
                                   "with greentui's loader.")
    p.add_argument("source", metavar="RUN_OR_DIR", help="a run id (12 or #12) or a model directory (./12 for a "
                                                        "folder named 12)")
    from backend.service.model_export import EXPORT_OPTIONS

    for opt in EXPORT_OPTIONS:  # declared once, also the TUI's export dialog
        if opt.kind == "checkbox":
            p.add_argument(opt.cli_flag, dest=opt.name, action="store_false" if opt.invert else "store_true",
                           help=opt.help)
        elif opt.kind == "select":
            p.add_argument(opt.cli_flag, dest=opt.name, choices=opt.choices, default="auto" if opt.name == "format"
                           else None, help=opt.help + (" (default auto)" if opt.name == "format" else ""))
        else:
            p.add_argument(opt.cli_flag, dest=opt.name, required=opt.name == "out", default=None,
                           metavar="DIR", help=opt.help)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--progress-jsonl", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from backend.errors import GreentuiError
    from backend.execution.pipeline import quiet_libraries
    from backend.service.model_export import ExportOptions, export

    quiet_libraries()  # greentui shows its own progress; library bars and warnings stay out of the terminal

    opts = ExportOptions(out=args.out, format=args.format, dtype=args.dtype, merge_lora=args.merge_lora,
                         adapter=args.adapter, verify=args.verify)
    workspace, store = _workspace(args)
    if args.progress_jsonl:
        def emit(msg: str, frac: float) -> None:
            print(json.dumps({"progress": round(frac, 4), "message": msg}), flush=True)
        try:
            report = export(workspace, store, args.source, opts, emit)
        except GreentuiError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
            raise
        print(json.dumps({"report": report}, default=str), flush=True)
        return 0
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from backend.cli.commands.common import console

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        report = export(workspace, store, args.source, opts,
                        lambda msg, frac: bar.update(task, description=msg, completed=frac))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


def _workspace(args: argparse.Namespace):
    """The workspace and its store when the source is a run id; a directory needs neither."""
    from backend.service.model_export import _is_run_id

    if not _is_run_id(args.source):
        return None, None
    from backend.cli.commands.common import workspace_and_store

    return workspace_and_store(args, create=False)


def print_report(r: dict) -> None:
    """The summary; every cell is plain Text (paths and model names are data, never markup)."""
    from rich.table import Table
    from rich.text import Text

    from backend.cli.commands.common import console

    rows = [("format", f"{r['format']} — {r['format_reason']}"), ("folder", r["out"])]
    p, f = r["parameters"], r["flops_per_token"]
    rows.append(("parameters", f"{p['pruned']:,} pruned"
                 + (f" → {p['exported']:,} exported" if p["exported"] != p["pruned"] else "")))
    rows.append((f"FLOPs/token @{f['context_tokens']}",
                 f"{f['pruned']:,}" + (f" → {f['exported']:,}" if f["exported"] != f["pruned"] else "")))
    if r.get("padding"):
        pad = r["padding"]
        rows.append(("padding costs", f"+{pad['params_added']:,} parameters ({pad['params_ratio']:.3f}×), "
                                      f"FLOPs/token {pad['flops_ratio']:.3f}× against the pruned model (exact counts)"))
    lora = r.get("lora") or {}
    rows.append(("LoRA", "merged" if lora.get("merged") else (lora.get("adapter") or "none")))
    rows.append(("dtype", r["dtype"]))
    check = r.get("verification")
    if check:
        same = "bit-identical" if check.get("bit_identical") else f"max |Δ| {check['max_abs_diff']:.3g}"
        rows.append(("checked", f"fresh interpreter, transformers only ({check.get('class')}): logits {same} "
                                "to greentui's loader"))
    else:
        rows.append(("checked", "no (--no-verify)"))
    rows.append(("load with", r["loads_with"]))
    table = Table(title=f"export-model: {r['format']}", show_header=False)
    for key, value in rows:
        table.add_row(Text(key), Text(str(value)))
    con = console()
    con.print(table)
    for note in r.get("notes") or []:
        con.print(Text(f"note: {note}"))
