"""``greentui run MODEL``: one experiment in the foreground; prints the comparison and the run id last."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from backend.cli.commands.common import workspace_and_store
from backend.cli.commands.run_options import add_run_options, config_from_args
from backend.service.preflight import check_run, record_run
from backend.text import safe_text


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", parents=parents, help="run one experiment now (baseline → prune → LoRA → evaluate)",
                       description="Run the study's pipeline on MODEL in the foreground. The vanilla baseline is "
                                   "reused when one with the same model, limit, few-shot, data and device exists.")
    add_run_options(p)
    p.add_argument("--wait", action="store_true",
                   help="wait for the device when a runner or another run holds it (default: refuse)")
    p.set_defaults(func=run)


class _ProgressView:
    """Turns pipeline events into rich progress bars and log lines on stderr.

    Messages, log lines and errors are outside text (a model path, a library's output): printed as
    text, never as markup (``[/]`` in a path once ended the run in a MarkupError), control characters
    escaped."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[msg]}", markup=False),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.bars: dict[str, TaskID] = {}

    def __call__(self, kind: str, p: dict) -> None:
        if kind == "stage_start":
            self.bars[p["stage"]] = self.progress.add_task(p["stage"], total=1.0, msg="")
        elif kind == "progress" and p.get("stage") in self.bars:
            self.progress.update(self.bars[p["stage"]], completed=p["fraction"], msg=safe_text(p.get("message", ""), 50))
        elif kind == "stage_end" and p["stage"] in self.bars:
            self.progress.update(self.bars[p["stage"]], completed=1.0, msg=f"{p['seconds']:.1f}s")
        elif kind == "log":
            self.progress.console.print(Text(safe_text(p["line"]), style="dim"))
        elif kind == "result":
            acc = "—" if p.get("acc") is None else f"{p['acc']:.3f}"
            wh = "missing" if p.get("wh") is None else f"{p['wh']:.5f} Wh"
            self.progress.console.print(Text(safe_text(f"  {p['variant']:<7} {p['task']:<14} acc {acc}  {wh}  "
                                                       f"({p.get('meter')})")))
        elif kind == "error":
            self.progress.console.print(Text(f"error: {safe_text(p['message'])}", style="red"))


def run(args: argparse.Namespace) -> int:
    from backend.execution.control import process_start_time
    from backend.execution.pipeline import quiet_libraries

    cfg = config_from_args(args)
    if cfg.executor != "local":
        from backend.schema.settings import SettingError
        raise SettingError("executor", f"{cfg.executor}: greentui run executes here, in the foreground; "
                                       f"use greentui queue --executor {cfg.executor}")
    quiet_libraries()
    ws, store = workspace_and_store(args)
    checked = check_run(store, cfg)  # every refusal the inputs can give, before the device or the store
    cfg = checked.cfg
    for note in checked.notes:
        print(f"warning: {note}", file=sys.stderr)
    held, device = _take_device(ws, store, cfg, wait=getattr(args, "wait", False))
    run_id = record_run(store, checked, status="running", pid=os.getpid())
    store.runs.update(run_id, device=None, pid_start=process_start_time(), executor="local", slot=held.label)
    held.note(run=run_id, pid=os.getpid())
    try:
        status = _execute(store, ws, run_id, cfg, device)
    except KeyboardInterrupt:
        store.runs.finish(run_id, "cancelled", "interrupted from the keyboard")
        raise
    except BaseException as exc:
        # whatever ends this process now (a bug in printing included) ends the run `failed` with its
        # error, never `running` (which the next start would call `interrupted`)
        row = store.runs.get(run_id)
        if row is not None and row["status"] == "running":
            store.runs.finish(run_id, "failed", safe_text(f"{type(exc).__name__}: {exc}", 2000))
        raise
    from backend.results.report import comparison_markdown
    print(safe_text(comparison_markdown(store, [run_id]), keep_newlines=True))
    print(run_id)
    if status != "done":
        err = store.runs.require(run_id)["error"]
        print(f"greentui: run {run_id} {status}: {safe_text(err)}", file=sys.stderr)
        return 1
    return 0


def _execute(store, ws, run_id: int, cfg, device: str) -> str:
    """The pipeline with its progress bars on stderr; the run's final status."""
    from backend.execution.events import EventSink
    from backend.execution.pipeline import RunCancelled, execute_run
    from backend.workspace import run_dir

    console = Console(file=sys.stderr)  # bound now: the pipeline redirects sys.stderr to a log
    console.print(Text(f"run {run_id}: {safe_text(cfg.model)} — {safe_text(cfg.summary())}"))
    sink = EventSink(store, run_id, run_dir(ws, run_id))
    view = _ProgressView(console)
    sink.listeners.append(view)

    def on_term(signum, frame):
        raise RunCancelled()
    signal.signal(signal.SIGTERM, on_term)
    with view.progress:
        return execute_run(store, ws, run_id, sink, device=device)


def _take_device(ws, store, cfg, *, wait: bool):
    """Lock the run's device(s) like a runner would (one lock per physical device), or refuse.

    Returns the held locks (kept until this process exits) and the device the pipeline should use;
    for a GPU this process's ``CUDA_VISIBLE_DEVICES`` is narrowed to the GPUs it holds (torch is not
    imported yet), so NVML counts only their energy.
    """
    from backend.execution.devices import acquire_waiting, resolve_devices
    from backend.execution.worker import workspace_cpu_slots

    candidates = resolve_devices(cfg.device, workspace_cpu_slots(store))
    gpus = max(1, int(getattr(cfg, "gpus", 1) or 1)) if candidates[0].kind == "cuda" else 1
    held = acquire_waiting(ws, candidates, gpus, wait=wait,
                           on_wait=lambda busy: print(f"waiting for the device ({busy})", file=sys.stderr))
    if held.devices[0].kind == "cuda":
        os.environ["CUDA_VISIBLE_DEVICES"] = held.cuda_visible or ""
        return held, "cuda"
    return held, "cpu"
