"""``greentui plan MODEL``: what pruning would make of a model, from its config.json, in a blink.

Reads only ``config.json`` (and a pruned model's widths manifest): a model directory without
weights, or an HF id in the local cache. Imports no torch, so it answers in well under a second.
"""

from __future__ import annotations

import argparse


def add_pruning_options(p: argparse.ArgumentParser) -> None:
    """The options ``prune`` and ``plan`` share: the run schema's pruning settings under the flags
    ``greentui run`` gives them (``--importance``/``--method``, ``--prune-ratio``/``--ratio``…), and the
    two switches that are not run settings."""
    from backend.cli.commands.run_options import PRUNING_SETTINGS, add_settings

    add_settings(p, PRUNING_SETTINGS, group="pruning")
    p.add_argument("--no-heads", action="store_true", help="keep every attention head")
    p.add_argument("--no-mlp", action="store_true", help="keep every MLP channel")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", parents=parents, help="predict a pruned model from its config.json (no weights)",
                       description="Predict per-layer widths, parameters, FLOPs/token and bytes of the pruned "
                                   "model, and how it loads, from config.json alone. The figures equal what "
                                   "`greentui prune` produces with the same options.")
    p.add_argument("model", help="model directory (config.json is enough), HF id in the local cache, or the HF "
                                 "id of one of the study's seven models (their config.json ships with greentui)")
    add_pruning_options(p)
    from backend.cli.commands.run_options import add_settings
    add_settings(p, ("calib_seq_len",))  # FLOPs/token are counted at the calibration length, as prune reports them
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, **options):
    """The pruning view of the run config the options describe, checked by the run schema's rules
    (``SettingError`` names a refused option)."""
    from backend.cli.commands.run_options import config_from_args as run_config
    from backend.stages.pruning.spec import PruneConfig

    return PruneConfig.of(run_config(args), prune_heads=not args.no_heads, prune_mlp=not args.no_mlp, **options)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from backend.schema.study_models import MODEL_CONFIGS, study_model
    from backend.stages.pruning.plan import plan, read_spec, resolve_target

    cfg = config_from_args(args)
    spec, where = read_spec(args.model)
    target = resolve_target(spec, cfg, cfg.target_params, cfg.target_ratio)
    if target:
        cfg = dataclasses.replace(cfg, ratio=target["ratio"])
    result = plan(spec, cfg)
    from backend.stages.pruning.loadability import for_model
    result["export"] = for_model(where, spec, cfg, result)
    result["model"] = where
    shipped = Path(where).parent == MODEL_CONFIGS.resolve()
    study = study_model(Path(where).name) if shipped else study_model(args.model)
    if study is not None:  # one of the study's models: what the paper reports beside the prediction
        result["study"] = {"paper_name": study.paper_name, "hf_id": study.hf_id, "paper_pruned": study.paper_pruned,
                           "paper_pruned_params": study.paper_pruned_params,
                           "recipe": "Taylor 2/7, first and last 4 layers kept"}
    if target:
        result["target"] = target
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_plan(result)
    return 0


def print_plan(p: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    from backend.cli.commands.common import console, say
    from backend.results.fmt import params as fmt_params
    from backend.results.fmt import size as fmt_bytes

    con = console()
    t = Table(title=f"plan: {p['method']} {p['ratio']:.4g} under the {p['count_rule']} rule ({p['model_type']}, "
                    "computed from config.json)", show_header=False)
    b, a = p["params_before"], p["params_after"]
    t.add_row("parameters", f"{fmt_params(b)} → {fmt_params(a)}  ({b:,} → {a:,}, −{p['params_removed_ratio']:.1%})")
    if p.get("prunable_params_before"):
        t.add_row("pruned layers' projections", f"{fmt_params(p['prunable_params_before'])} → "
                  f"{fmt_params(p['prunable_params_after'])}  (−{p['prunable_removed_ratio']:.1%})")
    fb, fa = p["flops_per_token_before"], p["flops_per_token_after"]
    t.add_row(f"FLOPs/token @{p['flops_context_tokens']} ctx", f"{fb / 1e9:.3f} G → {fa / 1e9:.3f} G  ({fa / fb:.3f}×)")
    if p.get("bytes_after") is not None:
        t.add_row(f"weights at {p['dtype']}", f"{fmt_bytes(p['bytes_before'])} → {fmt_bytes(p['bytes_after'])}")
    t.add_row("ignored layers", f"first {p['ignore_first']}, last {p['ignore_last']}")
    t.add_row("loads with", "plain from_pretrained" if p["loads_with"] == "from_pretrained"
              else "greentui's loader (per-layer widths manifest)")
    if "target" in p:
        tg = p["target"]
        t.add_row("target", f"{tg['target_params']:,} → ratio {tg['ratio']:.5f} gives {tg['params_after']:,} "
                  f"({tg['off_by']:+,}, {tg['off_by_ratio']:+.4%}); achievable sizes around it: "
                  f"{tg['nearest_below']:,} / {tg['nearest_above']:,}")
    if "layers_dropped" in p:
        t.add_row("layers dropped", f"{p['layers_dropped']} (which ones: block influence at prune time)")
    if "study" in p:
        st = p["study"]
        t.add_row("the study", f"{st['paper_name']} pruned to {st['paper_pruned']} ({st['recipe']})")
    t.add_row("config", Text(p["model"], overflow="fold"))  # a path: data, never markup; wrapped, not cut
    con.print(t)
    for w in p.get("warnings", []):
        say(con, "warning:", w, style="yellow")
    print_export(con, p)
    rows = _layer_runs(p)
    if rows and "layers_dropped" not in p:
        lt = Table(title="layers after pruning")
        for col in ("layers", "q heads", "kv heads", "head dim", "MLP width"):
            lt.add_column(col, justify="right")
        for span, w in rows:
            lt.add_row(span, str(w["heads"]), str(w["kv_heads"]), str(w["head_dim"]), str(w["intermediate"]))
        con.print(lt)


def _layer_runs(p: dict) -> list[tuple[str, dict]]:
    """Consecutive layers of equal width merged into one row ("4-27")."""
    out: list[tuple[str, dict]] = []
    start = 0
    widths = p["layers_after"]
    for i in range(1, len(widths) + 1):
        if i == len(widths) or widths[i] != widths[start]:
            out.append((str(start) if i - 1 == start else f"{start}-{i - 1}", widths[start]))
            start = i
    return out


def print_export(con, p: dict) -> None:
    """What the result loads with: `greentui export-model` formats, uniform ratios nearby, alignment."""
    from rich.table import Table
    from rich.text import Text

    from backend.results.fmt import params as fmt_params

    section = p.get("export")
    if not section:
        return
    t = Table(title="exports (greentui export-model)", show_header=False)
    f = section["formats"]
    plain = f["plain"]
    t.add_row("plain", Text(("yes: " if plain["ok"] else "no: ") + plain["why"]))
    pad = f["padded"]
    t.add_row("padded", Text(f"yes: +{fmt_params(pad['params_added'])} parameters ({pad['params_ratio']:.3f}×), "
                             f"FLOPs/token {pad['flops_ratio']:.3f}× the pruned model's (exact counts)"
                             if pad["ok"] else f"no: {pad['why']}"))
    dl = f["decilm"]
    t.add_row("decilm (vLLM)", Text(f"yes, not verified here (vLLM needs a GPU): +{fmt_params(dl['params_added'])} "
                                    f"parameters ({dl['params_ratio']:.3f}×) of zero padding"
                                    if dl["ok"] else f"no: {dl['why']}"))
    t.add_row("remote-code", Text("always: per-layer widths, loads with trust_remote_code=True"))
    if section["uniform"]:
        t.add_row("uniform, every layer pruned", Text("; ".join(
            f"ratio {u['ratio_text']}: {u['heads']}/{u['kv_heads']} heads, MLP {u['intermediate']}, "
            f"{fmt_params(u['params_after'])}" for u in section["uniform"])
            + " (--ignore-first 0 --ignore-last 0; loads as plain)"))
    for a in section["alignment"]:
        t.add_row(f"--round-to {a['round_to']}", Text(f"MLP {', '.join(map(str, a['intermediate']))}: "
                                                      f"{a['params_delta']:+,} parameters"))
    con.print(t)
