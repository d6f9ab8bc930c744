"""Run detail: stage progress, a live log tail, live power, per-task results, the error when failed.

Everything comes from the store the runner writes: events (``after_id`` cursors, so each tick reads
only what is new), power samples, task results. Nothing here talks to the runner directly, so the
screen can be closed and reopened (or the whole UI restarted after an SSH drop) at any time.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Header, Label, ProgressBar, RichLog, Static

from backend.errors import GreentuiError
from backend.results.fmt import model_label, num, status_cell, when
from backend.results.report import SHORT
from backend.schema.runconfig import RunConfig
from backend.service.execution import JobView, job_view
from backend.service.runs import cancel as cancel_run
from backend.service.runs import requeue
from greentui.signals import StoreChange
from greentui.widgets.confirm import ConfirmScreen
from greentui.widgets.energy_panel import EnergyPanel
from greentui.widgets.job_log import JobLog
from greentui.widgets.keys import KeyFooter
from greentui.widgets.power import PowerPanel

from ._live import WatchingScreen
from ._ppl import chance_note, perplexity_line
from ._table import NarrowColumns, ellipsis, plain_cells

LOG_LINES = 1000
FINAL = ("done", "failed", "cancelled", "interrupted")


def stages_for(run: dict[str, Any]) -> list[str]:
    """The pipeline's stages for this run (same order as ``backend.execution.pipeline``)."""
    return RunConfig.from_dict(run.get("config") or {}).stages(run.get("kind") or "experiment")


class RunDetailScreen(WatchingScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("c", "compare", "Compare", tooltip="This run against its vanilla baseline"),
        Binding("x", "cancel_run", "Cancel run", tooltip="Cancel (queued) or stop (running) this run"),
        Binding("R", "requeue", "Re-queue", tooltip="Queue this run again with the same config"),
        Binding("f", "clone", "Clone", tooltip="Open New run filled with this run's config"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.last_event = 0
        self.last_power = 0
        self.stage_names: list[str] = []
        self.fractions: dict[str, float] = {}
        self.messages: dict[str, str] = {}
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
                    yield Label("per-task results", classes="section")
                    yield DataTable(id="results-table", cursor_type="row", zebra_stripes=True)
                    yield Label("energy (repeats, above idle, J/token, quality)", classes="section")
                    yield EnergyPanel(id="energy-panel")
                with Vertical(id="detail-right"):
                    yield Label("live power", classes="section", id="power-label")
                    yield PowerPanel(id="power")
                    yield Label("log", classes="section")
                    yield RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False, highlight=False)
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
            table = self.query_one("#results-table", DataTable)
        except NoMatches:
            self.call_after_refresh(self._setup)
            return
        # Wh and meter right after accuracy: they must fit at 80 columns, where the meter's long name
        # ("codecarbon:cpu_load-estimate") is cut with "…" so the columns after it show too
        narrow = self.app.size.width < NarrowColumns.NARROW_BELOW
        for key, label in (("variant", "variant"), ("task", "task"), ("acc", "acc"), ("se", "±se"),
                           ("wh", "Wh"), ("meter", "meter"), ("acc_norm", "acc_norm"), ("n", "items"),
                           ("s", "seconds")):
            table.add_column(Text(label), key=key, width=16 if narrow and key == "meter" else None)
        self.run = self.app.store.runs.get(self.run_id)
        if self.run is None:
            self.query_one("#run-title", Static).update(f"[b red]no run {self.run_id} in this workspace[/]")
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
        log = self.query_one("#log", RichLog)
        for ev in events:
            self.last_event = ev["id"]
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

    def apply_event(self, kind: str, p: dict[str, Any], log: RichLog) -> None:
        stage = p.get("stage")
        if kind == "stage_start" and stage:
            self.fractions.setdefault(stage, 0.0)
            for name in self.stage_names[: self.stage_names.index(stage)] if stage in self.stage_names else []:
                self.fractions[name] = 1.0
            log.write(f"── {stage} ──")
        elif kind == "progress" and stage:
            self.fractions[stage] = max(self.fractions.get(stage, 0.0), float(p.get("fraction") or 0.0))
            if p.get("message"):
                self.messages[stage] = str(p["message"])
        elif kind == "stage_end" and stage:
            self.fractions[stage] = 1.0
            self.messages[stage] = f"done in {p.get('seconds', 0):.1f} s"
        elif kind == "log":
            log.write(str(p.get("line", "")))
        elif kind == "loss":
            log.write("loss " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in p.items()))
        elif kind == "result":
            wh = p.get("wh")
            log.write(f"result {p.get('variant')} {p.get('task')}: acc {num(p.get('acc'))}, "
                      f"{num(wh, 4)} Wh ({p.get('meter') or 'no meter'})")
            self.results_dirty = True
        elif kind == "error":
            log.write(f"ERROR: {p.get('message')}")
        elif kind == "done":
            log.write(f"── run {p.get('status')} ──")

    def draw_stages(self) -> None:
        for name in self.stage_names:
            try:
                bar = self.query_one(f"#stage-{name}", ProgressBar)
                msg = self.query_one(f"#stage-msg-{name}", Label)
            except Exception:
                continue
            frac = self.fractions.get(name)
            bar.update(progress=frac or 0.0)
            current = self.run and self.run.get("stage") == name and self.run["status"] == "running"
            text = self.messages.get(name, "")
            if frac is None:
                text = "skipped" if self.run and self.run.get("status") in FINAL else "waiting"
                if name == "load" and self.run and self.run.get("status") == "queued":
                    text = "queued: the runner starts (imports PyTorch)…"
            msg.update(("▶ " if current else "") + text)

    def draw_title(self) -> None:
        run = self.run or {}
        cfg = RunConfig.from_dict(run.get("config") or {})
        parts = [f"[b]run {self.run_id}[/b]", model_label(run), run.get("kind") or "",
                 cfg.summary(), f"tasks {len(cfg.tasks)}", f"limit {cfg.limit or 'all'}"]
        status = status_cell(run.get("status")).markup
        title = " · ".join(p for p in parts if p) + f"\nstatus {status}"
        if run.get("stage") and run.get("status") == "running":
            title += f" · stage {run['stage']}"
        if run.get("parent_run_id"):
            title += f" · baseline run {run['parent_run_id']}"
        if run.get("params_before") and run.get("params_after"):
            title += (f" · params {run['params_before']:,} → {run['params_after']:,} "
                      f"({run['params_after'] / run['params_before']:.3f})")
        if self.job is not None and self.job.summary:
            title += f" · {escape(self.job.summary)}"
        title += f" · queued {when(run.get('created_at'))}"
        if run.get("finished_at"):
            title += f" · finished {when(run['finished_at'])}"
        self.query_one("#run-title", Static).update(title)
        finished = run.get("status") in FINAL
        self.query_one("#power-label", Label).update("power (recorded)" if finished else "live power")
        self.query_one(PowerPanel).finished = finished
        for wid, text in (("#run-ppl", perplexity_line(self.app.store, run)), ("#run-note", chance_note(run))):
            box = self.query_one(wid, Static)
            box.update(text)
            box.display = bool(text)
        err = self.query_one("#run-error", Static)
        if run.get("error") and run.get("status") in ("failed", "interrupted", "cancelled"):
            err.update(f"[b red]{run['status']}:[/] {run['error']}")
            err.display = True
        else:
            err.display = False

    def draw_results(self) -> None:
        store = self.app.store
        table = self.query_one("#results-table", DataTable)
        rows: list[dict[str, Any]] = []
        if self.run and self.run.get("parent_run_id"):
            rows += store.results.task_results(self.run["parent_run_id"], "vanilla")
        rows += store.results.task_results(self.run_id)
        table.clear()
        for r in rows:
            wh = None if r["energy_kwh"] is None else r["energy_kwh"] * 1000
            table.add_row(*plain_cells(r["variant"], SHORT.get(r["task"], r["task"]), num(r["acc"]),
                                       num(r["acc_stderr"]), num(wh, 4), ellipsis(r["meter"] or "—"),
                                       num(r["acc_norm"]), r["n_samples"] or "—", num(r["seconds"], 1)))
        if self.run is not None:
            self.query_one("#energy-panel", EnergyPanel).refresh_from(store, self.run)

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_compare(self) -> None:
        self.app.open_compare([self.run_id])

    def action_clone(self) -> None:
        self.app.clone_run(self.run_id)

    def action_requeue(self) -> None:
        try:
            (new,) = requeue(self.app.store, [self.run_id])
        except GreentuiError as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.ensure_runner()
        self.notify(f"queued run {new} with the same config")

    def action_cancel_run(self) -> None:
        def go(yes: bool | None) -> None:
            if not yes:
                return
            try:
                what = cancel_run(self.app.store, self.run_id)
            except GreentuiError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"run {self.run_id}: {what}")
        self.app.push_screen(ConfirmScreen(f"Cancel run {self.run_id}? Finished tasks are kept.", yes="Cancel run"), go)
