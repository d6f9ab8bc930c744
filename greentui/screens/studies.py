"""Studies (``4``) and one study's screen: the grid as it runs, then the study's answer.

The Studies screen lists the workspace's studies (cells done of all); Enter opens one, ``n`` writes a
new one (``screens/new_study.py``). The Study screen shows, in tabs:

* **Grid** — each cell's state, stage and result so far (``backend.service.studies.study_grid``, the
  same as ``greentui study status``); Enter opens the cell's run;
* **Answer** — per model the energy-optimal cell under the accuracy floor (or "none qualifies"), and
  per cell its distance from the floor and the optimal cell, its J/token ratio, what pruning and LoRA
  cost and when it pays back, the crossover batch and whether it is on the Pareto front
  (``backend.results.study``, the same as ``greentui study show``);
* **Tables** — Table 1 (accuracy) and Table 2 (Wh) with Avg and Ratio and its interval;
* **Radar** / **Bars** — one model at a time (``m`` for the next), vanilla against each cell, per task;
* **Pareto** — every finished cell's average accuracy against its average Wh.

``R`` runs the study again (queues only the cells without a finished run); ``W`` writes the report
(Markdown, SVG/PNG figures, CSV/LaTeX) in a subprocess — the UI never imports matplotlib. The
Studies screen's ``N`` opens the New-study form (``n`` stays New run, as everywhere).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane

from backend.errors import GreentuiError
from backend.results.fmt import num, status_cell, when
from backend.schema.tasks import task_label
from backend.text import safe_name, safe_text
from greentui.keymap import binding
from greentui.signals import StoreChange
from greentui.widgets.bars import GroupedBars, ScatterPareto
from greentui.widgets.keys import KeyFooter
from greentui.widgets.radar import RadarChart

from ._live import LiveTableScreen, WatchingScreen
from ._table import NarrowColumns, cursor_key, ellipsis, plain_cells

EMPTY = ("[b]No studies in this workspace yet.[/b]\n\nA study is a grid of runs in one file: press "
         "[b reverse] N [/] to write one, or run [b]greentui study run FILE.toml[/b] (or "
         "[b]--preset demo[/b]) in a shell.")


class StudiesScreen(LiveTableScreen):
    """The workspace's studies; Enter opens one, ``n`` writes a new one."""

    BINDINGS = [binding("open", description="Open"), binding("new_study")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(EMPTY, id="studies-empty")
        yield DataTable(id="studies-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for key, label in (("name", "study"), ("done", "cells done"), ("models", "models"),
                           ("updated", "last run")):
            table.add_column(label, key=key)
        self.reload()
        table.focus()

    def reload(self) -> None:
        tables = self.query(DataTable)
        if not tables:
            return
        table = tables.first()
        keep = cursor_key(table)
        table.clear()
        rows = self.store.studies.list()
        for r in rows:
            cells = self.store.studies.cells(r["id"])
            models = len({c["model"] for c in cells})
            table.add_row(*plain_cells(r["name"], f"{r['done'] or 0}/{r['cells']}", models, when(r["updated_at"])),
                          key=r["name"])
        if keep in {r["name"] for r in rows}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self.query_one("#studies-empty").display = not rows
        table.display = bool(rows)

    def action_open(self) -> None:
        name = cursor_key(self.query_one(DataTable))
        if name is not None:
            self.app.push_screen(StudyScreen(name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(StudyScreen(str(event.row_key.value)))

    def action_new_study(self) -> None:
        from .new_study import NewStudyScreen
        self.app.push_screen(NewStudyScreen())


_TABS = Binding.Group("Tabs", compact=True)


class StudyScreen(NarrowColumns, WatchingScreen):
    """One study: its grid as it runs, and its answer once cells finish."""

    WIDE_COLUMNS = [("pos", "#"), ("model", "model"), ("cell", "cell"), ("run", "run"), ("state", "state"),
                    ("stage", "stage"), ("tasks", "tasks"), ("acc", "avg acc"), ("wh", "avg Wh")]
    NARROW_COLUMNS = [("pos", "#"), ("cell", "cell"), ("state", "state"), ("stage", "stage"),
                      ("tasks", "tasks"), ("acc", "acc"), ("wh", "Wh")]
    NARROW_WIDTHS = {"cell": 14, "stage": 16}

    BINDINGS = [
        binding("back"),
        *(binding(i, group=_TABS) for i in ("tab_grid", "tab_answer", "tab_table", "tab_radar", "tab_bars")),
        binding("pareto", "tab('pareto')", group=_TABS),
        binding("next_model"),
        binding("open", description="Run"),
        binding("requeue", "run_again", description="Run again"),
        binding("write_report"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.study_name = name
        self.model_index = 0
        self.answer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="study-title")
        with TabbedContent(initial="grid", id="study-tabs"):
            with TabPane("Grid", id="grid"):
                yield DataTable(id="study-grid", cursor_type="row", zebra_stripes=True)
            with TabPane("Answer", id="answer"):
                with Vertical():
                    yield Static("", id="study-verdict")
                    yield DataTable(id="study-answer", cursor_type="row", zebra_stripes=True)
            with TabPane("Tables", id="table"):
                yield DataTable(id="study-tables", cursor_type="row", zebra_stripes=True)
            with TabPane("Radar", id="radar"):
                with Horizontal(classes="charts"):
                    yield RadarChart("accuracy (per task, normalised)", [], {}, id="study-radar-acc")
                    yield RadarChart("energy Wh (per task, normalised)", [], {}, id="study-radar-wh",
                                     classes="second")
            with TabPane("Bars", id="bars"):
                yield GroupedBars("accuracy per task (±stderr)", id="study-bars", y_label="acc")
            with TabPane("Pareto", id="pareto"):
                with Vertical():
                    yield ScatterPareto("avg accuracy vs avg Wh — every cell", id="study-pareto")
                    yield Static("", id="study-pareto-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        super().on_mount()
        self.add_columns(self.query_one("#study-grid", DataTable), self.app.size.width)
        self.reload()
        self.query_one("#study-grid", DataTable).focus()

    def store_change(self, change: StoreChange) -> None:
        if self.is_mounted:
            self.reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted and self.is_attached:
            self.reload()

    # ------------------------------------------------------------------ data
    def reload(self) -> None:
        from backend.results.study import study_answer
        from backend.service.studies import study_grid
        store = self.app.store
        try:
            study, cells = study_grid(store, self.study_name)
        except GreentuiError as exc:
            self.query_one("#study-title", Static).update(Text(safe_text(exc), style="bold red"))
            return
        self.fill_grid(cells)
        done = sum(c.status == "done" for c in cells)
        running = sum(c.status == "running" for c in cells)
        queued = sum(c.status == "queued" for c in cells)
        title = Text.assemble(("Study ", "bold"), (study["name"], "bold"),
                              f" · {done}/{len(cells)} cells done · {running} running · {queued} queued")
        self.answer = ans = study_answer(store, self.study_name)
        title.append(f" · floor {ans.accuracy_floor:.0%} of vanilla accuracy")
        self.query_one("#study-title", Static).update(title)
        self.fill_answer(ans)
        self.fill_tables(ans)
        self.fill_charts(ans)

    def fill_grid(self, cells: list) -> None:
        table = self.query_one("#study-grid", DataTable)
        keep = cursor_key(table)
        table.clear()
        for c in cells:
            stage = f"waits for run {c.waits_for}" if c.waits_for else (
                (c.error or "") if c.status in ("failed", "interrupted") else (c.stage or "—"))
            model = c.model.rsplit("/", 1)[-1] if c.model.startswith("/") else c.model
            if self.narrow:
                row = plain_cells(c.index, ellipsis(c.label), status_cell(c.status), ellipsis(stage),
                                  f"{c.tasks_done}/{c.tasks_planned}", num(c.avg_acc), num(c.avg_wh, 4))
            else:
                row = plain_cells(c.index, model, c.label, c.run_id or "—", status_cell(c.status), stage,
                                  f"{c.tasks_done}/{c.tasks_planned}", num(c.avg_acc), num(c.avg_wh, 4))
            table.add_row(*row, key=f"{c.run_id or ''}:{c.index}")
        if keep is not None and keep in {f"{c.run_id or ''}:{c.index}" for c in cells}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)

    def fill_answer(self, ans) -> None:
        from backend.results.study_report import answer_table
        lines = Text()
        for m in ans.models:
            lines.append(safe_name(m.model), style="bold")
            lines.append(f": {safe_text(m.verdict)}\n")
        if ans.pareto_wh:
            lines.append("Pareto front (accuracy vs Wh, beyond noise): " + safe_text(", ".join(
                f"{model} {'vanilla' if cell is None else f'cell {cell}'}" for model, cell in ans.pareto_wh)))
        self.query_one("#study-verdict", Static).update(lines)
        table = answer_table(ans)
        # below 100 columns: the cell, its accuracy, how short of the floor, Wh against the optimal, payback
        keep = [1, 2, 3, 5, 8] if self.narrow else list(range(len(table.header)))
        self._fill_table("#study-answer", [table.header[i] for i in keep],
                         [[row[i] for i in keep] for row in table.rows])

    def fill_tables(self, ans) -> None:
        """Table 1 and Table 2 in one grid; below 100 columns Avg and Ratio come first and the model
        and run columns go, so what answers the question is on screen without scrolling."""
        from backend.results.study_report import study_tables
        t1, t2 = study_tables(ans)
        n = len(t1.header)
        order = [1, n - 2, n - 1, *range(3, n - 2)] if self.narrow else list(range(n))
        rows = [[name, *[row[i] for i in order]] for name, t in (("acc", t1), ("Wh", t2)) for row in t.rows]
        self._fill_table("#study-tables", ["table", *[t1.header[i] for i in order]], rows)

    def _fill_table(self, selector: str, header: list[str], rows: list[list[str]]) -> None:
        table = self.query_one(selector, DataTable)
        table.clear(columns=True)
        for i, h in enumerate(header):
            table.add_column(Text(h), key=f"c{i}")
        for j, row in enumerate(rows):
            table.add_row(*plain_cells(*row), key=str(j))

    def fill_charts(self, ans) -> None:
        if not ans.models:
            return
        m = ans.models[self.model_index % len(ans.models)]
        model = safe_name(m.model)
        labels = [task_label(t) for t in ans.tasks]
        rows = [*m.vanilla[:1], *[c for c in m.cells if c.acc]]
        name = {id(r): ("vanilla" if r.variant == "vanilla" else f"{r.cell} {r.label}") for r in rows}
        acc = {name[id(r)]: [r.acc.get(t) for t in ans.tasks] for r in rows}
        wh = {name[id(r)]: [r.wh.get(t) for t in ans.tasks] for r in rows}
        err = {name[id(r)]: [r.acc_stderr.get(t) for t in ans.tasks] for r in rows}
        more = f" (m: next of {len(ans.models)})" if len(ans.models) > 1 else ""
        self.query_one("#study-radar-acc", RadarChart).update_data(
            labels, acc, title=f"{model}: accuracy per task, normalised{more}")
        self.query_one("#study-radar-wh", RadarChart).update_data(
            labels, wh, title=f"{model}: energy per task, normalised")
        self.query_one("#study-bars", GroupedBars).update_data(labels, acc, err,
                                                               title=f"{model}: accuracy per task (±stderr){more}")
        from backend.results.study import _acc_noise, _energy_noise
        shown = [(mm, r, f"{safe_name(mm.model, 12)} {'v' if r.variant == 'vanilla' else r.cell}")
                 for mm in ans.models for r in (*mm.vanilla, *mm.cells)
                 if r.avg_wh is not None and r.avg_acc is not None]
        points = [(label, r.avg_wh, r.avg_acc) for _, r, label in shown]
        chart = self.query_one("#study-pareto", ScatterPareto)
        # the front the answer judged (beyond noise) and each row's intervals as whiskers
        chart.front_labels = [label for mm, r, label in shown if (mm.model, r.cell) in set(ans.pareto_wh)]
        chart.errors = {label: (_acc_noise(r), _energy_noise(r, r.avg_wh)) for _, r, label in shown}
        chart.update_data(
            points, title=f"avg accuracy vs avg Wh — {len(points)} finished row(s); v = vanilla, n = cell n")
        front = safe_text(", ".join(f"{mm} {'vanilla' if c is None else f'cell {c}'}" for mm, c in ans.pareto_wh))
        self.query_one("#study-pareto-note", Static).update(
            Text("Upper left is better. Front (dominated only beyond noise): " + (front or "—")))

    # ------------------------------------------------------------------ actions
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_back(self) -> None:
        self.dismiss(None)

    def action_next_model(self) -> None:
        self.model_index += 1
        if self.answer is not None:
            self.fill_charts(self.answer)

    def action_open(self) -> None:
        key = cursor_key(self.query_one("#study-grid", DataTable))
        run = key.split(":", 1)[0] if key else ""
        if run:
            self.app.open_run(int(run))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "study-grid":
            run = str(event.row_key.value).split(":", 1)[0]
            if run:
                self.app.open_run(int(run))

    def action_run_again(self) -> None:
        self.notify(f"queueing the cells of study {self.study_name} without a finished run…")
        self._run_again()

    @work(thread=True, exclusive=True, group="study-run", name="running the study again", exit_on_error=False)
    def _run_again(self) -> None:
        from backend.schema.study import parse
        from backend.service.studies import run_study
        store = self.app.open_store()
        try:
            study = store.studies.require(self.study_name)
            spec = parse(study["text"], source=f"study {self.study_name}")
            done = run_study(self.app.workspace, store, spec, preset=study["preset"], source=study["source"],
                             start=self.app.manage_runner)
        finally:
            store.close()
        text = (f"queued {len(done.queued)} run(s)" if done.queued else "nothing to queue: every cell has a "
                "finished, queued or running run")
        self.app.call_from_thread(self.notify, f"study {self.study_name}: {text}")
        self.app.call_from_thread(self.app.poll_store)

    def action_report(self) -> None:
        self.notify(f"writing the report of study {self.study_name}…")
        self._report()

    @work(thread=True, exclusive=True, group="study-report", name="writing the study report", exit_on_error=False)
    def _report(self) -> None:
        """``greentui study report`` in a subprocess: the figures need matplotlib, which the UI never imports."""
        from backend.service.studies import write_report_subprocess
        out = write_report_subprocess(self.app.workspace, self.study_name)
        self.app.call_from_thread(self.notify, f"report written: {out / 'report.md'}", timeout=15)
