"""``greentui export-model`` for the CLI and the TUI alike: what a run (or a model folder) gives to export.

A run's folder holds the pruned model as pruning left it (``model/``) and, when LoRA ran, its adapter
(``lora/adapter``, peft format). ``--merge-lora`` merges the adapter into the exported weights (the
recovered model the run evaluated); without it the export is the pruned model and the adapter is
copied beside it. Runs saved before the adapter was kept apart hold the merged model already: they
export as it is, and the report says so.

The TUI never imports torch: it runs the export as ``python -m backend export-model … --progress-jsonl``
in a subprocess (``export_in_subprocess``, an argument list, never a shell) and reads its progress.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backend.errors import GreentuiError
from backend.store import Store
from backend.workspace import CODE_ROOT, run_dir

HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
Progress = Callable[[str, float], None]


@dataclass
class ExportSource:
    """The model folder to export and what is known about it."""

    model_dir: Path
    run: dict[str, Any] | None = None
    adapter: Path | None = None       # an adapter not merged into model_dir yet
    merged_already: bool = False      # model_dir holds the LoRA-merged model (older runs)
    facts: dict[str, Any] = field(default_factory=dict)


def _is_run_id(text: str) -> bool:
    return bool(re.fullmatch(r"#?\d+", str(text).strip()))


def resolve_source(workspace: Path | None, store: Store | None, run_or_dir: str) -> ExportSource:
    """A run id (``12``, ``#12``) of the workspace, or a model directory (a ``greentui prune --out``
    folder, a run's ``model/``); a one-line GreentuiError for anything else."""
    text = str(run_or_dir).strip()
    if _is_run_id(text):
        if store is None or workspace is None:
            raise GreentuiError(f"run {text} needs a workspace (--runs-dir)")
        return _run_source(workspace, store, int(text.lstrip("#")))
    path = Path(text).expanduser()
    if not path.is_dir():
        raise GreentuiError(f"{text!r} is neither a run id nor a model directory")
    return _dir_source(path.resolve())


def _run_source(workspace: Path, store: Store, run_id: int) -> ExportSource:
    run = store.runs.get(run_id)
    if run is None:
        raise GreentuiError(f"no run {run_id} in {workspace} (see greentui ls)")
    if run["kind"] != "experiment":
        raise GreentuiError(f"run {run_id} is a {run['kind']} run: it pruned nothing (export the model it "
                            f"evaluated, {run.get('model_ref')}, directly)")
    if run["status"] in ("queued", "running"):
        raise GreentuiError(f"run {run_id} is {run['status']}; export it when it has finished")
    folder = run_dir(workspace, run_id)
    model_dir = folder / "model"
    if not (model_dir / "config.json").is_file():
        raise GreentuiError(f"run {run_id} saved no model ({model_dir} is missing: it "
                            f"{'failed' if run['status'] != 'done' else 'ended'} before pruning finished)")
    cfg = run.get("config") or {}
    source = ExportSource(model_dir=model_dir, run=run)
    saved = _read_json(model_dir / "greentui_prune_report.json")
    adapter = folder / "lora" / "adapter"
    if not cfg.get("no_lora"):
        if saved.get("lora_merged") is False:
            source.adapter = adapter if (adapter / "adapter_config.json").is_file() else None
        else:
            source.merged_already = True
    source.facts = {
        "source": {"run_id": run_id, "model": run.get("model_ref"), "label": run.get("label"),
                   "status": run["status"]},
        "method": cfg.get("importance"), "ratio": cfg.get("prune_ratio"), "count_rule": cfg.get("count_rule"),
        "ignore_first": cfg.get("ignore_first"), "ignore_last": cfg.get("ignore_last"),
        "round_to": cfg.get("round_to"), "params_unpruned": run.get("params_before"),
        "lora_steps": None if cfg.get("no_lora") else cfg.get("lora_steps"),
    }
    prune = _read_json(folder / "prune_report.json")
    if prune:
        source.facts.update({"ignore_first": prune.get("ignore_first"), "ignore_last": prune.get("ignore_last")})
    return source


def _dir_source(path: Path) -> ExportSource:
    report = _read_json(path / "greentui_prune_report.json")
    source = ExportSource(model_dir=path)
    if "run_id" in report:  # a run's model/ folder given by path
        cfg = report.get("config") or {}
        source.facts = {"source": {"run_id": report["run_id"], "model": cfg.get("model")},
                        "method": cfg.get("importance"), "ratio": cfg.get("prune_ratio"),
                        "count_rule": cfg.get("count_rule")}
        adapter = path.parent / "lora" / "adapter"
        if report.get("lora_merged") is False and (adapter / "adapter_config.json").is_file():
            source.adapter = adapter
        source.merged_already = report.get("lora_merged") is None and not cfg.get("no_lora")
    elif report:  # `greentui prune --out`
        cfg = report.get("config") or {}
        source.facts = {"source": {"dir": str(path)}, "method": report.get("method"), "ratio": cfg.get("ratio"),
                        "count_rule": report.get("count_rule"), "ignore_first": report.get("ignore_first"),
                        "ignore_last": report.get("ignore_last"), "round_to": cfg.get("round_to"),
                        "params_unpruned": report.get("params_before")}
    else:
        source.facts = {"source": {"dir": str(path)}}
    return source


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass
class ExportOptions:
    """The command's options (declared once in ``EXPORT_OPTIONS`` for the CLI flag and the TUI widget)."""

    out: str
    format: str = "auto"
    dtype: str | None = None
    merge_lora: bool = False
    adapter: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class ExportOption:
    """One option of ``greentui export-model``: rendered as a CLI flag and as a field of the TUI's
    export dialog, from this one declaration."""

    name: str                     # the ExportOptions field
    label: str
    help: str
    kind: str                     # text | select | checkbox
    choices: tuple[str, ...] = ()
    flag: str | None = None       # None: --name-with-dashes
    invert: bool = False          # a checkbox whose CLI flag turns it off (--no-verify)
    cli_only: bool = False        # not in the dialog (a run brings its own adapter)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _export_options() -> tuple[ExportOption, ...]:
    from backend.schema.catalog import EXPORT_DTYPES, EXPORT_FORMATS

    return (
        ExportOption("out", "folder", "folder to write (must be empty or absent)", "text"),
        ExportOption("format", "format", "plain: a stock config (every layer one width); remote-code: any widths, "
                     "a modelling module in the folder (trust_remote_code=True); padded: zeros restore one width, "
                     "loads as stock; decilm: NVIDIA DeciLM block_configs for vLLM (Llama family); auto: plain when "
                     "possible, else remote-code", "select", EXPORT_FORMATS),
        ExportOption("dtype", "dtype", "weights' precision (default: the source's)", "select", EXPORT_DTYPES),
        ExportOption("merge_lora", "merge the LoRA adapter (the recovered model the run evaluated)",
                     "merge the run's LoRA adapter into the weights (peft): the recovered model the run evaluated",
                     "checkbox"),
        ExportOption("adapter", "adapter", "with --merge-lora on a model directory: the peft adapter to merge",
                     "text", cli_only=True),
        ExportOption("verify", "check it in a fresh interpreter (transformers only)",
                     "skip loading the folder in a fresh interpreter to compare its logits", "checkbox",
                     flag="--no-verify", invert=True),
    )


EXPORT_OPTIONS = _export_options()


def build_request(workspace: Path | None, store: Store | None, run_or_dir: str, opts: ExportOptions):
    """The stage's request for this source and these options, every check done (nothing loaded)."""
    from backend.stages.model_export import ExportRequest, decide

    if not str(opts.out or "").strip():
        raise GreentuiError("--out: give the folder to write the exported model to")
    source = resolve_source(workspace, store, run_or_dir)
    adapter = Path(opts.adapter).expanduser().resolve() if opts.adapter else None
    if adapter is not None and not opts.merge_lora:
        raise GreentuiError("--adapter: give --merge-lora too (the adapter is merged into the exported weights)")
    notes = []
    merge, copy = None, None
    if opts.merge_lora:
        merge = adapter or source.adapter
        if merge is None and not source.merged_already:
            why = ("it ran with --no-lora" if source.run and (source.run.get("config") or {}).get("no_lora")
                   else "no adapter was found beside it")
            raise GreentuiError(f"--merge-lora: {_name(source)} has no LoRA adapter ({why}); pass --adapter DIR or "
                                "leave --merge-lora out")
        if merge is None:
            notes.append("the saved model holds the LoRA-merged weights already (a run saved before adapters were "
                         "kept apart); exported as it is")
    elif source.adapter is not None:
        copy = source.adapter
        notes.append("the LoRA adapter is not merged (use --merge-lora for the recovered model the run evaluated); "
                     "it is copied into adapter/")
    elif source.merged_already:
        notes.append("the saved model holds the LoRA-merged weights (a run saved before adapters were kept apart)")
    facts = dict(source.facts, notes=notes)
    card = _card_maker(store, source)
    req = ExportRequest(source=source.model_dir, out=Path(opts.out).expanduser(), format=opts.format,
                        dtype=opts.dtype, adapter=merge, copy_adapter=copy, verify=opts.verify, facts=facts,
                        card=card)
    decide(req)
    return req


def _name(source: ExportSource) -> str:
    return f"run {source.run['id']}" if source.run else str(source.model_dir)


def check(workspace: Path | None, store: Store | None, run_or_dir: str, opts: ExportOptions) -> None:
    """Every check the inputs allow (no torch, no weights read): what the TUI runs before it starts
    the export's process, so a refusal shows at once under the form."""
    build_request(workspace, store, run_or_dir, opts)


def export(workspace: Path | None, store: Store | None, run_or_dir: str, opts: ExportOptions,
           progress: Progress | None = None) -> dict[str, Any]:
    """Export in this process (the CLI); returns the stage's report."""
    from backend.stages.model_export import export_model

    return export_model(build_request(workspace, store, run_or_dir, opts), progress)


# ---------------------------------------------------------------------------------- the TUI's path
def export_command(workspace: Path, run_or_dir: str, opts: ExportOptions) -> list[str]:
    """``python -m backend export-model …`` as an argument list (torch is imported by that process only)."""
    cmd = [sys.executable, "-m", "backend", "export-model", str(run_or_dir), "--out", str(opts.out),
           "--format", opts.format, "--runs-dir", str(workspace), "--progress-jsonl"]
    if opts.dtype:
        cmd += ["--dtype", opts.dtype]
    if opts.merge_lora:
        cmd.append("--merge-lora")
    if opts.adapter:
        cmd += ["--adapter", str(opts.adapter)]
    if not opts.verify:
        cmd.append("--no-verify")
    return cmd


def export_in_subprocess(workspace: Path, run_or_dir: str, opts: ExportOptions,
                         progress: Progress | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run the export in its own process, feeding ``progress`` from its JSON lines; return its report
    or raise GreentuiError with its one-line error."""
    say = progress or (lambda msg, frac: None)
    proc = subprocess.Popen(export_command(workspace, run_or_dir, opts), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(CODE_ROOT))
    report, error = None, None
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "progress" in msg:
            say(str(msg.get("message", "")), float(msg["progress"]))
        elif "report" in msg:
            report = msg["report"]
        elif "error" in msg:
            error = str(msg["error"])
    try:
        stderr = proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise GreentuiError(f"the export took longer than {timeout:.0f} s and was stopped") from None
    if report is not None and proc.returncode == 0:
        return report
    if error is None:
        tail = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()][-1:]
        error = tail[0].removeprefix("greentui: error: ") if tail else f"export-model exited {proc.returncode}"
    raise GreentuiError(error)


# ---------------------------------------------------------------------------------- the model card
def _card_maker(store: Store | None, source: ExportSource):
    """The README.md writer for this source (the run's tables come from the store)."""
    from backend.service.model_card import model_card

    def make(report: dict[str, Any]) -> str:
        return model_card(report, store if source.run else None, source.run)

    return make
