"""``greentui models [add REF | rm ID]``: the models the workspace knows."""

from __future__ import annotations

import argparse

from rich.table import Table

from backend.cli.commands.common import console, plain, say, workspace_and_store
from backend.errors import GreentuiError
from backend.results.fmt import params as fmt_params
from backend.results.fmt import size as fmt_bytes
from backend.stages.models import register_model as add_model
from backend.text import NAME_LIMIT, safe_text


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", parents=parents, help="list, add or remove models",
                       description="List the workspace's models; `add REF` registers a local directory or "
                                   "HF id (described without loading weights); `rm ID` forgets one.")
    msub = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    add = msub.add_parser("add", parents=parents, help="register a model by HF id or local directory")
    add.add_argument("ref")
    add.add_argument("--trust-remote-code", action="store_true",
                     help="allow this model's own Python code to run when it is loaded (off by default)")
    rm = msub.add_parser("rm", parents=parents, help="forget a model (refused while runs use it)")
    rm.add_argument("model", help="model id or ref")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _, store = workspace_and_store(args, create=args.models_cmd == "add")
    con = console()
    if args.models_cmd == "add":
        model_id = add_model(store, args.ref, args.trust_remote_code)
        say(con, f"model {model_id}:", store.models.require(model_id)["ref"])
        return 0
    if args.models_cmd == "rm":
        m = store.models.get(args.model)
        if m is None:
            raise GreentuiError(f"no model {safe_text(args.model, NAME_LIMIT)!r} in this workspace (see greentui models)")
        store.models.remove(m["id"])
        say(con, f"removed model {m['id']}", f"({m['ref']})")
        return 0
    t = Table(title="models")
    for c in ("id", "name", "source", "arch", "params", "layers", "heads", "kv", "hidden", "dtype", "size", "runs"):
        t.add_column(c)
    for m in store.models.list():
        t.add_row(*plain(str(m["id"]), m["name"] or m["ref"], m["source"] or "?", m["arch"] or "?",
                         fmt_params(m["params"]), str(m["layers"]), str(m["heads"]), str(m["kv_heads"]),
                         str(m["hidden"]), m["dtype"] or "?", fmt_bytes(m["size_bytes"]), str(m["runs"]),
                         limit=NAME_LIMIT))
    con.print(t)
    return 0
