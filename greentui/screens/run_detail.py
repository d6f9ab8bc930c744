"""Run detail: stage progress, a live log tail, live power, per-task results, the error when failed.

Everything comes from the store the runner writes: events (``after_id`` cursors, so each tick reads
only what is new), power samples, task results. Nothing here talks to the runner directly, so the
screen can be closed and reopened (or the whole UI restarted after an SSH drop) at any time.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Header, Label, ProgressBar, Static

from backend.errors import GreentuiError
from backend.results.fmt import model_label, num, plain, status_cell, when
from backend.results.report import SHORT
from backend.schema.runconfig import RunConfig
from backend.service.execution import JobView, job_view
from backend.service.queue_state import queue_state
from backend.service.runs import requeue
from backend.text import safe_text
from greentui.keymap import binding
from greentui.signals import StoreChange
from greentui.widgets.energy_panel import EnergyPanel
from greentui.widgets.job_log import JobLog
from greentui.widgets.keys import KeyFooter
from greentui.widgets.power import PowerPanel
from greentui.widgets.reflow_log import ReflowLog

from ._cancel import cancel_runs
from ._live import WatchingScreen
from ._ppl import chance_note, perplexity_line
from ._table import plain_cells

LOG_LINES = 1000
FINAL = ("done", "failed", "cancelled", "interrupted")


def stages_for(run: dict[str, Any]) -> list[str]:
    """The pipeline's stages for this run (same order as ``backend.execution.pipeline``)."""
    return RunConfig.from_dict(run.get("config") or {}).stages(run.get("kind") or "experiment")


class RunDetailScreen(WatchingScreen):
    BINDINGS = [binding(i) for i in ("back", "compare", "cancel_run", "requeue", "clone", "export_model")]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.last_event = 0
        self.last_power = 0
        self.stage_names: list[str] = []
        self.fractions: dict[str, float] = {}
        self.messages: dict[str, str] = {}
        self.started: dict[str, float] = {}  # stage -> when it started (its stage_start event)
        self.results_dirty = True
        self.run: dict[str, Any] | None = None
        self.job: JobView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-title")
        # side by side when wide; stacked and scrollable below 100 columns (app.tcss, Screen.-narrow)
        with VerticalScroll(id="detail-scroll"):
            with Horizontal(id="detail-body"):
                with Vertical(id="detail-left"):
                    yield Vertical(id="stages")
                    yield Static("", id="run-ppl")
                    yield Static("", id="run-note")
                    yield Static("", id="run-error")
                    yield Label("per-task results", classes="section", id="results-label")
                    yield DataTable(id="results-table", cursor_type="row", zebra_stripes=True)
                    yield Label("energy (repeats, above idle, J/token, quality)", classes="section")
                    yield EnergyPanel(id="energy-panel")
                with Vertical(id="detail-right"):
                    yield Label("live power", classes="section", id="power-label")
                    yield PowerPanel(id="power")
                    yield Label("log", classes="section")
                    yield ReflowLog(id="log", max_lines=LOG_LINES)
                    yield Label("job stdout/stderr", id="job-label", classes="section")
                    yield JobLog(id="job-log")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._setup()

    def _setup(self) -> None:
        """Columns, stage rows, first tick. Deferred while the panes are not there yet: a screen
        pushed and at once covered (``c`` right after opening) may get here before its children
        exist; a screen already gone does nothing."""
        if not self.is_attached:
            return
        try:
            self.query_one("#results-table", DataTable)
        except NoMatches:
            self.call_after_refresh(self._setup)
            return
        self.run = self.app.store.runs.get(self.run_id)
        if self.run is None:
            self.query_one("#run-title", Static).update(Text(f"no run {self.run_id} in this workspace", "b red"))
            return
        self.stage_names = stages_for(self.run)
        stages = self.query_one("#stages", Vertical)
        for name in self.stage_names:
            stages.mount(Horizontal(Label(f"{name:<10}", classes="stage-name"),
                                    ProgressBar(total=1.0, show_eta=False, id=f"stage-{name}"),
                                    Label("", id=f"stage-msg-{name}", classes="stage-msg"),
                                    classes="stage-row"))
        self.show_job(False)
        self.call_after_refresh(self.tick)

    def show_job(self, on: bool) -> None:
        """The job pane exists for every run and shows only for a run a scheduler's job executes."""
        self.query_one("#job-label").display = on
        self.query_one("#job-log").display = on

    # ------------------------------------------------------------------ live updates
    TICK_S = 0.5  # events, power and the job's log are tailed at this pace while the screen shows

    def on_show(self) -> None:
        if getattr(self, "_ticker", None) is None:
            self._ticker = self.set_interval(self.TICK_S, self._tick_if_current, name="run-detail-tick")

    def _tick_if_current(self) -> None:
        if self.is_current:
            self.tick()

    def store_change(self, change: StoreChange) -> None:
        self.results_dirty = True

    def on_screen_resume(self) -> None:
        self.results_dirty = True
        self.tick()

    def tick(self) -> None:
        """Every TICK_S while shown (and on mount): pull new events, power and results."""
        if not self.is_mounted or self.run is None:
            return
        try:
            self._tick()
        except NoMatches:  # panes not composed yet, or the screen is being closed: next tick
            return

    def _tick(self) -> None:
        store = self.app.store
        run = store.runs.get(self.run_id)
        if run is None:
            return
        self.run = run
        events = store.events.list(self.run_id, after_id=self.last_event)
        log = self.query_one("#log", ReflowLog)
        for ev in events:
            self.last_event = ev["id"]
            if ev["kind"] == "stage_start" and ev["payload"].get("stage") and ev.get("t"):
                self.started[ev["payload"]["stage"]] = float(ev["t"])
            self.apply_event(ev["kind"], ev["payload"], log)
        samples = store.events.power_samples(self.run_id, after_id=self.last_power)
        if samples:
            panel = self.query_one(PowerPanel)
            for s in samples:
                self.last_power = s["id"]
                panel.add_sample(s["t"], s["watts"], s["source"], s["limit_w"])
        self.tail_job(store)
        if run["status"] == "done":
            for name in self.stage_names:
                self.fractions[name] = 1.0
        self.draw_stages()
        self.draw_title()
        if self.results_dirty or any(e["kind"] in ("result", "done") for e in events):
            self.results_dirty = False
            self.draw_results()

    def tail_job(self, store) -> None:
        """A run a scheduler's job executes: the job for the title, and the new lines of its log files
        (which files: its executor says, through the service layer)."""
        view = job_view(self.app.workspace, store, self.run)
        self.job = view
        if view is None:
            return
        pane = self.query_one("#job-log", JobLog)
        if not pane.display:
            self.query_one("#job-label", Label).update(Text(view.label))
            self.show_job(True)
        pane.follow(view.files)
        pane.poll()

    def apply_event(self, kind: str, p: dict[str, Any], log: ReflowLog) -> None:
        stage = p.get("stage")
        if kind == "stage_start" and stage:
            self.fractions.setdefault(stage, 0.0)
            for name in self.stage_names[: self.stage_names.index(stage)] if stage in self.stage_names else []:
                self.fractions[name] = 1.0
            log.add_line(f"── {safe_text(stage)} ──")
        elif kind == "progress" and stage:
            self.fractions[stage] = max(self.fractions.get(stage, 0.0), float(p.get("fraction") or 0.0))
            if p.get("message"):
                self.messages[stage] = str(p["message"])
        elif kind == "stage_end" and stage:
            self.fractions[stage] = 1.0
            self.messages[stage] = f"done in {p.get('seconds', 0):.1f} s"
        # log lines, messages and errors are outside text (a library's output, a path): written as
        # plain text with control characters escaped (the log pane never reads markup)
        elif kind == "log":
            log.add_line(safe_text(p.get("line", "")))
        elif kind == "loss":
            log.add_line(safe_text("loss " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in p.items())))
        elif kind == "result":
            wh = p.get("wh")
            log.add_line(safe_text(f"result {p.get('variant')} {p.get('task')}: acc {num(p.get('acc'))}, "
                                f"{num(wh, 4)} Wh ({p.get('meter') or 'no meter'})"))
            self.results_dirty = True
        elif kind == "error":
            log.add_line(safe_text(f"ERROR: {p.get('message')}"))
        elif kind == "done":
            log.add_line(safe_text(f"── run {p.get('status')} ──"))

    def draw_stages(self) -> None:
        """One bar per stage. The running stage never sits still: until its first progress report its
        bar pulses and its line counts the seconds (loading PyTorch or the model, the baseline's
        first task, reports nothing for 10-20 s); a queued run's first line says what it waits for."""
        run = self.run or {}
        status = run.get("status")
        # running, but the run's process has not reported its first stage yet: it is importing PyTorch
        starting = status == "running" and not run.get("stage") and not self.fractions
        for name in self.stage_names:
            try:
                bar = self.query_one(f"#stage-{name}", ProgressBar)
                msg = self.query_one(f"#stage-msg-{name}", Label)
            except Exception:
                continue
            frac = self.fractions.get(name)
            current = status == "running" and (run.get("stage") == name or (starting and name == self.stage_names[0]))
            pulsing = current and not frac
            if pulsing:
                if bar.total is not None:
                    bar.update(total=None)  # Textual's indeterminate bar: it moves while nothing is known
            else:
                if bar.total is None:
                    bar.update(total=1.0)
                bar.update(progress=frac or 0.0)
            text = self.messages.get(name, "")
            if frac is None and not current:
                text = "skipped" if status in FINAL else "waiting"
                if name == self.stage_names[0] and status == "queued":
                    text = self.wait_reason()
            if current:
                since = self.started.get(name) or (run.get("started_at") if starting else None)
                if starting:
                    text = "starting the run's process (importing PyTorch)"
                if since:
                    text = (text + " · " if text else "") + f"{max(0, time.time() - since):.0f} s"
            msg.update(plain(("▶ " if current else "") + text, 200))

    def wait_reason(self) -> str:
        """Why this queued run has not started (the queue is paused, another run holds the device…)."""
        try:
            return queue_state(self.app.store).reason_for(self.run_id) or "queued"
        except GreentuiError:
            return "queued"

    def draw_title(self) -> None:
        """Two lines or so: the run (model, kind, recipe) and its state. Built as ``Text``: the model's
        name and the job's reason are outside text, shown as written (never markup), control
        characters escaped, the name cut so a 10,000-character one leaves the stages on the screen."""
        run = self.run or {}
        cfg = RunConfig.from_dict(run.get("config") or {})
        parts = [model_label(run), safe_text(run.get("kind") or ""), safe_text(cfg.summary()),
                 f"tasks {len(cfg.tasks)}", f"limit {cfg.limit or 'all'}"]
        head = Text.assemble((f"run {self.run_id}", "bold"), *(f" · {p}" for p in parts if p), "\nstatus ",
                             status_cell(run.get("status")))
        title = ""
        if run.get("stage") and run.get("status") == "running":
            title += f" · stage {run['stage']}"
        if run.get("parent_run_id"):
            title += f" · baseline run {run['parent_run_id']}{self.reuse_note()}"
        if run.get("params_before") and run.get("params_after"):
            title += (f" · params {run['params_before']:,} → {run['params_after']:,} "
                      f"(×{run['params_after'] / run['params_before']:.3f}, counted: exact)")
        if self.job is not None and self.job.summary:
            title += f" · {self.job.summary}"
        title += f" · queued {when(run.get('created_at'))}"
        if run.get("finished_at"):
            title += f" · finished {when(run['finished_at'])}"
        self.query_one("#run-title", Static).update(head.append(safe_text(title)))
        finished = run.get("status") in FINAL
        self.query_one("#power-label", Label).update("power (recorded)" if finished else "live power")
        self.query_one(PowerPanel).finished = finished
        for wid, text in (("#run-ppl", perplexity_line(self.app.store, run)), ("#run-note", chance_note(run))):
            box = self.query_one(wid, Static)
            box.update(text)
            box.display = bool(text)
        err = self.query_one("#run-error", Static)
        if run.get("error") and run.get("status") in ("failed", "interrupted", "cancelled"):
            err.update(Text.assemble((f"{run['status']}:", "b red"), " ",
                                     safe_text(run["error"], 4000, keep_newlines=True)))
            err.display = True
        else:
            err.display = False

    def reuse_note(self) -> str:
        """' reused for accuracy (key …)' when this run reused an earlier baseline (issue #18: only one
        with the same fingerprint, younger than the limit); its key is what made it comparable."""
        for m in self.app.store.results.metrics(self.run_id):
            if m["name"] == "baseline_reuse" and m["value"] is not None:
                detail = json.loads(m["detail"] or "{}")
                return f" reused for {detail.get('applies_to', 'accuracy')} (key {detail.get('key', '?')})"
        return ""

    def draw_results(self) -> None:
        store = self.app.store
        table = self.query_one("#results-table", DataTable)
        rows: list[dict[str, Any]] = []
        if self.run and self.run.get("parent_run_id"):
            rows += store.results.task_results(self.run["parent_run_id"], "vanilla")
        rows += store.results.task_results(self.run_id)
        # One meter for every task (the usual case) is said once, above the table, in full; the column
        # is there only when the meters differ. (A meter's name is long, "codecarbon:cpu_load-estimate":
        # as a column it was cut at 80 and 120 columns and pushed acc_norm, items and seconds off.)
        meters = {r["meter"] for r in rows}
        one_meter = len(meters) <= 1
        label = "per-task results"
        if one_meter and rows:
            label += f" · meter: {next(iter(meters)) or 'none (no energy figure)'}"
        self.query_one("#results-label", Label).update(plain(label, 200))
        columns = [("variant", "variant"), ("task", "task"), ("acc", "acc"), ("se", "±se"), ("wh", "Wh"),
                   ("meter", "meter"), ("acc_norm", "acc_norm"), ("n", "items"), ("s", "seconds")]
        if one_meter:
            columns.remove(("meter", "meter"))
        table.clear(columns=True)
        for key, title in columns:
            table.add_column(Text(title), key=key)
        for r in rows:
            wh = None if r["energy_kwh"] is None else r["energy_kwh"] * 1000
            cells = {"variant": r["variant"], "task": SHORT.get(r["task"], r["task"]), "acc": num(r["acc"]),
                     "se": num(r["acc_stderr"]), "wh": num(wh, 4), "meter": r["meter"] or "—",
                     "acc_norm": num(r["acc_norm"]), "n": r["n_samples"] or "—", "s": num(r["seconds"], 1)}
            table.add_row(*plain_cells(*(cells[key] for key, _ in columns)))
        if self.run is not None:
            self.query_one("#energy-panel", EnergyPanel).refresh_from(store, self.run)

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_compare(self) -> None:
        self.app.open_compare([self.run_id])

    def action_clone(self) -> None:
        self.app.clone_run(self.run_id)

    def action_export_model(self) -> None:
        run = self.app.store.runs.get(self.run_id)
        if run is None or run["kind"] != "experiment" or run["status"] in ("queued", "running"):
            why = ("it has not finished" if run and run["status"] in ("queued", "running")
                   else "it pruned nothing")
            self.notify(f"run {self.run_id} has no pruned model to export ({why})", severity="warning")
            return
        from .export_model import ExportModelScreen
        self.app.push_screen(ExportModelScreen(run))

    def action_requeue(self) -> None:
        try:
            (new,) = requeue(self.app.store, [self.run_id])
        except GreentuiError as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.ensure_runner()
        self.notify(f"queued run {new} with the same config")

    def action_cancel_run(self) -> None:
        cancel_runs(self, [self.run_id])
