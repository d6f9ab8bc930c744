"""Run detail → export model: the dialog of ``greentui export-model`` for one run, with progress.

The fields come from ``backend.service.model_export.EXPORT_OPTIONS`` (the CLI's flags are built from
the same declarations). Pressing Export first runs the service's checks in a thread (no torch: the
folder, the format against the run's widths, the adapter), so a refusal shows at once under the form;
then the export runs as ``python -m backend export-model … --progress-jsonl`` in its own process, so
this process never imports torch. The worker belongs to the app: closing the dialog does not stop the
export, and its end is always notified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select

from backend.errors import GreentuiError
from backend.service.model_export import EXPORT_OPTIONS, ExportOptions
from greentui.keymap import binding

GROUP = "export-model"


def default_out(workspace: Path, run_id: int) -> Path:
    """``<workspace>/exports/run-NNNNN`` (``-2``, ``-3``… when taken)."""
    base = Path(workspace) / "exports" / f"run-{run_id:05d}"
    out, n = base, 1
    while out.exists() and (not out.is_dir() or any(out.iterdir())):
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


class ExportModelScreen(ModalScreen[None]):
    """Export one run's pruned model (``E`` on Run detail); dismissed with Escape (an export already
    started goes on)."""

    DEFAULT_CSS = """
    ExportModelScreen { align: center middle; }
    ExportModelScreen > VerticalScroll {
        width: 90; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        border: thick $accent; background: $surface;
    }
    ExportModelScreen #export-title { margin-bottom: 1; }
    ExportModelScreen .export-row { height: auto; }
    ExportModelScreen .export-key { width: 8; }
    ExportModelScreen .export-row > Input, ExportModelScreen .export-row > Select { width: 1fr; }
    ExportModelScreen .export-error { color: $error; width: 1fr; height: auto; display: none; }
    ExportModelScreen .export-error.-shown { display: block; }
    ExportModelScreen #export-progress { margin-top: 1; }
    ExportModelScreen #export-status { width: 1fr; height: auto; }
    ExportModelScreen #export-status.-failed { color: $error; }
    ExportModelScreen #export-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    ExportModelScreen Button { margin-left: 2; }
    """
    BINDINGS = [binding("back", "close", description="Close")]

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__()
        self.run = run
        self.running = False

    def compose(self) -> ComposeResult:
        cfg = self.run.get("config") or {}
        defaults = {"out": str(default_out(self.app.workspace, self.run["id"])), "format": "auto", "dtype": None,
                    "merge_lora": not cfg.get("no_lora"), "verify": True}
        with VerticalScroll():
            yield Label(f"[b]export run {self.run['id']}'s model[/b] (greentui export-model)", id="export-title")
            for opt in EXPORT_OPTIONS:
                if opt.cli_only:
                    continue
                wid = f"export-{opt.name}"
                if opt.kind == "checkbox":
                    yield Checkbox(opt.label, bool(defaults[opt.name]), id=wid, tooltip=opt.help, compact=True)
                    yield Label("", id=f"{wid}-error", classes="export-error")
                    continue
                with Horizontal(classes="export-row"):
                    yield Label(opt.label, classes="export-key")
                    if opt.kind == "select":
                        yield Select([(c, c) for c in opt.choices], value=defaults[opt.name] or Select.NULL,
                                     allow_blank=opt.name == "dtype", prompt="as saved", id=wid, tooltip=opt.help,
                                     compact=True)
                    else:
                        yield Input(value=defaults[opt.name], id=wid, tooltip=opt.help, compact=True)
                yield Label("", id=f"{wid}-error", classes="export-error")
            yield ProgressBar(total=1.0, show_eta=False, id="export-progress")
            yield Label("", id="export-status")
            with Horizontal(id="export-buttons"):
                yield Button("Close (esc)", id="export-close", compact=True)
                yield Button("Export (enter)", id="export-start", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-out", Input).focus()

    def options(self) -> ExportOptions:
        fmt = self.query_one("#export-format", Select).value
        dtype = self.query_one("#export-dtype", Select).value
        return ExportOptions(out=self.query_one("#export-out", Input).value.strip(),
                             format=str(fmt) if fmt != Select.NULL else "auto",
                             dtype=None if dtype == Select.NULL else str(dtype),
                             merge_lora=self.query_one("#export-merge_lora", Checkbox).value,
                             verify=self.query_one("#export-verify", Checkbox).value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-close":
            self.action_close()
        elif event.button.id == "export-start":
            self.action_export()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_export()

    def action_close(self) -> None:
        if self.running:
            self.app.notify(f"the export of run {self.run['id']} goes on; you will be told when it ends")
        self.dismiss(None)

    def action_export(self) -> None:
        if self.running:
            return
        opts = self.options()
        for label in self.query(".export-error"):
            label.update("")
            label.remove_class("-shown")
        self.running = True
        self.query_one("#export-start", Button).disabled = True
        self.status("checking the run, the format and the folder…")
        workspace, run_id = self.app.workspace, self.run["id"]
        self.app.run_worker(lambda: self._export(workspace, run_id, opts), thread=True, group=GROUP,
                            name=f"exporting run {run_id}'s model", exit_on_error=False)

    # ------------------------------------------------------------------ the worker (a thread)
    def _export(self, workspace: Path, run_id: int, opts: ExportOptions) -> None:
        from backend.service.model_export import check, export_in_subprocess

        app = self.app
        store = app.open_store()
        try:
            check(workspace, store, str(run_id), opts)
        except GreentuiError as exc:
            app.call_from_thread(self._failed, str(exc))
            return
        finally:
            store.close()
        try:
            report = export_in_subprocess(workspace, str(run_id), opts,
                                          progress=lambda msg, frac: app.call_from_thread(self._progress, msg, frac))
        except GreentuiError as exc:
            app.call_from_thread(self._failed, str(exc))
            return
        app.call_from_thread(self._done, report)

    # ------------------------------------------------------------------ back on the UI thread
    def status(self, text: str, error: bool = False) -> None:
        if self.is_attached:
            label = self.query_one("#export-status", Label)
            label.update(Text(text))  # paths and errors are data, never markup
            label.set_class(error, "-failed")

    def _progress(self, message: str, fraction: float) -> None:
        if self.is_attached:
            self.query_one("#export-progress", ProgressBar).update(progress=fraction)
            self.status(message)

    def _failed(self, reason: str) -> None:
        self.running = False
        field = next((o.name for o in EXPORT_OPTIONS if reason.startswith(o.cli_flag + ":")
                      or reason.startswith(o.cli_flag + " ")), None)
        if self.is_attached:
            self.query_one("#export-start", Button).disabled = False
            if field is not None and field != "adapter":
                error = self.query_one(f"#export-{field}-error", Label)
                error.update(Text(reason))
                error.add_class("-shown")
                self.status(f"not exported: see {field} above", error=True)
            else:
                self.status(reason, error=True)
        self.app.notify(f"run {self.run['id']} not exported: {reason}", severity="error", timeout=20, markup=False)

    def _done(self, report: dict[str, Any]) -> None:
        self.running = False
        check = report.get("verification") or {}
        same = ("logits bit-identical to greentui's loader" if check.get("bit_identical")
                else f"logits within {check['max_abs_diff']:.2g}" if check else "not checked")
        text = f"exported as {report['format']} to {report['out']} ({same})"
        if self.is_attached:
            self.query_one("#export-progress", ProgressBar).update(progress=1.0)
            self.query_one("#export-start", Button).disabled = False
            self.status(text)
            # ready for another export (another format, say) into a fresh folder
            self.query_one("#export-out", Input).value = str(default_out(self.app.workspace, self.run["id"]))
        self.app.notify(f"run {self.run['id']}: {text}", timeout=20, markup=False)
