"""``greentui demo-model DIR``: a tiny/small random causal LM with a locally trained tokenizer."""

from __future__ import annotations

import argparse

from rich.console import Console

from backend.stages.demo import ARCHITECTURES, ATTENTION_LAYOUTS, SIZES


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo-model", parents=parents, help="build a random demo model (offline)",
                       description="Write a tokenizer trained on shipped text and a randomly initialised "
                                   "causal LM (grouped-query or multi-head attention); loads with plain transformers.")
    p.add_argument("dir", help="output directory (must be empty or absent)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="llama")
    p.add_argument("--size", choices=SIZES, default="tiny", help="tiny ≈1-2 M params (tests), small ≥100 M (bench)")
    p.add_argument("--attention", choices=ATTENTION_LAYOUTS, default="gqa",
                   help="gqa: the shape's grouped-query heads; mha: as many kv heads as query heads (Llama-2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--register", action="store_true", help="also add it to the workspace's models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.stages.demo import build_demo_model
    con = Console(stderr=True)
    with con.status(f"building {args.size} {args.arch} demo model…"):
        out = build_demo_model(args.dir, arch=args.arch, size=args.size, seed=args.seed, attention=args.attention)
    if args.register:
        from backend.cli.commands.common import workspace_and_store
        from backend.stages.models import register_model as add_model
        _, store = workspace_and_store(args)
        add_model(store, str(out))
    print(out)
    return 0
