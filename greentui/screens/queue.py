"""Queue: queued and running runs in execution order; cancel, reorder, pause and resume.

Every row says where it runs: the executor, the device slot or the node, and the columns the
executors add (``backend.service.execution.queue_columns``: a scheduler's job id and state, with its
reason while it waits and its restarts). Cancel goes through the service layer, which asks the run's
executor (the run's own flag for a local process, the scheduler for a job).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from backend.errors import GreentuiError
from backend.results.fmt import method_label, method_with_ratio, model_label, ratio_label, status_cell, when
from backend.service.execution import live_runners, queue_columns
from backend.service.runs import cancel as cancel_run
from greentui.widgets.confirm import ConfirmScreen
from greentui.widgets.keys import KeyFooter

from ._live import LiveTableScreen
from ._table import NarrowColumns, cursor_id, ellipsis, plain_cells


class QueueScreen(NarrowColumns, LiveTableScreen):
    reload_on_every_change = True  # small table; its stage column moves with every stage event
    #: the executors' own columns (job id, job state) go between "device/node" and "queued at"
    BASE_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("kind", "kind"), ("method", "method"),
                    ("ratio", "ratio"), ("status", "status"), ("stage", "stage"), ("executor", "executor"),
                    ("where", "device/node")]
    #: at 80 columns: the method carries the ratio, "where" the executor, device or node and job id
    NARROW_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("method", "method"),
                      ("status", "status"), ("stage", "stage"), ("where", "where")]
    NARROW_WIDTHS = {"model": 14, "where": 20}

    BINDINGS = [
        Binding("enter", "open", "Detail", show=False),
        Binding("K,shift+up", "move(-1)", "Move up", tooltip="Run this one earlier"),
        Binding("J,shift+down", "move(1)", "Move down", tooltip="Run this one later"),
        Binding("x", "cancel", "Cancel run", tooltip="Cancel a queued run, or stop the running one"),
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause or resume the queue"),
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.executor_columns = queue_columns()
        self.WIDE_COLUMNS = [*self.BASE_COLUMNS, *((c.key, c.label) for c in self.executor_columns),
                             ("created", "queued at")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="queue-state")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static("The runner is a detached process: closing greentui (or an SSH drop) does not stop it.",
                     id="queue-hint")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.add_columns(table, self.app.size.width)
        self.reload()
        table.focus()

    def reload(self) -> None:
        tables = self.query(DataTable)
        if not tables:  # the app's poll can land before compose or after teardown
            return
        table = tables.first()
        keep = self.cursor_run()
        rows = self.store.queue.queued()
        rows.sort(key=lambda r: (r["status"] != "running", r["position"] or 0, r["id"]))
        table.clear()
        for i, r in enumerate(rows, 1):
            asked = r.get("cancel_requested") or r.get("job_cancel_requested")
            status = status_cell("cancelling" if r["status"] in ("queued", "running") and asked
                                 else r["status"])
            table.add_row(*self.cells(i, r, status), key=str(r["id"]))
        if keep is not None and str(keep) in {str(r["id"]) for r in rows}:
            table.move_cursor(row=table.get_row_index(str(keep)), animate=False)
        paused = self.store.queue.paused()
        runners = live_runners(self.store)
        state = "[b yellow]PAUSED[/] (p resumes)" if paused else "[b green]active[/]"
        runner = ("; ".join(f"runner pid {x['pid']} on {', '.join(x['devices']) or x['requested']}"
                            for x in runners) if runners else "no runner alive")
        queued = sum(r["status"] == "queued" for r in rows)
        self.query_one("#queue-state", Static).update(
            f"queue {state} · {runner} · {queued} queued · {len(rows) - queued} running")

    def cells(self, position: int, r: dict, status: Text) -> list[Text]:
        if self.narrow:
            job = f" job {r['job_id']}" if r.get("job_id") else ""
            where = executor_label(r) + ("" if where_label(r) == "—" else f" {where_label(r)}") + job
            return plain_cells(position, r["id"], ellipsis(model_label(r)), method_with_ratio(r), status,
                               r["stage"] or "—", ellipsis(where))
        return plain_cells(position, r["id"], model_label(r), r["kind"], method_label(r), ratio_label(r), status,
                           r["stage"] or "—", executor_label(r), where_label(r),
                           *(c.cell(r) for c in self.executor_columns), when(r["created_at"]))

    def cursor_run(self) -> int | None:
        return cursor_id(self.query_one(DataTable))

    def action_open(self) -> None:
        run = self.cursor_run()
        if run is not None:
            self.app.open_run(run)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))

    def action_move(self, delta: int) -> None:
        run = self.cursor_run()
        if run is None:
            return
        try:
            self.store.queue.move(run, delta)
        except GreentuiError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.reload()

    def action_cancel(self) -> None:
        run = self.cursor_run()
        if run is None:
            return
        row = self.store.runs.get(run)

        def go(yes: bool | None = True) -> None:
            if not yes:
                return
            try:
                what = cancel_run(self.store, run)
            except GreentuiError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"run {run}: {what}")
            self.reload()

        if row and row["status"] == "running":
            self.app.push_screen(ConfirmScreen(f"Stop running run {run}? Finished tasks are kept.", yes="Stop"), go)
        else:
            go()

    def action_toggle_pause(self) -> None:
        paused = not self.store.queue.paused()
        self.store.queue.set_paused(paused)
        if paused:
            self.notify("queue paused: the current run finishes, nothing new starts")
        else:
            pid = self.app.ensure_runner()
            self.notify("queue resumed" + (f"; runner pid {pid}" if pid else ""))
        self.reload()


def executor_label(row: dict) -> str:
    """The executor that took the run once claimed; what the run asked for while queued."""
    return row.get("executor") or row.get("asked_executor") or "local"


def where_label(row: dict) -> str:
    """The node of a scheduler's run, else the device slot(s) it holds (``cuda:0,1``, ``cpu#1``)."""
    return row.get("node") or row.get("slot") or row.get("device") or "—"
