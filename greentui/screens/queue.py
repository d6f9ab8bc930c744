"""Queue: queued and running runs in execution order; cancel, reorder, pause and resume.

Every row says where it runs: the executor (``local`` or ``slurm``), the device slot or the node,
and for a Slurm run its job id and the scheduler's state. Cancel raises the run's cancel flag in
the store whatever the executor (the run's process, or the runner for a Slurm job, acts on it).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Static

from backend.errors import GreentuiError
from backend.execution.supervisor import live_runners
from backend.results.fmt import method_label, method_with_ratio, model_label, ratio_label, status_cell, when
from greentui.keymap import binding
from greentui.widgets.keys import KeyFooter

from ._cancel import cancel_runs
from ._live import LiveTableScreen
from ._table import NarrowColumns, cursor_id, ellipsis, plain_cells


class QueueScreen(NarrowColumns, LiveTableScreen):
    reload_on_every_change = True  # small table; its stage column moves with every stage event
    WIDE_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("kind", "kind"), ("method", "method"),
                    ("ratio", "ratio"), ("status", "status"), ("stage", "stage"), ("executor", "executor"),
                    ("where", "device/node"), ("job", "job id"), ("job_state", "job state"),
                    ("created", "queued at")]
    #: at 80 columns: the method carries the ratio, "where" the executor, device or node and Slurm job
    NARROW_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("method", "method"),
                      ("status", "status"), ("stage", "stage"), ("where", "where")]
    NARROW_WIDTHS = {"model": 14, "where": 20}

    BINDINGS = [binding(i) for i in ("open", "move_up", "move_down", "cancel_run", "pause_queue")]
    HELP_NOTES = [("in the table", "⏎", "Detail", "Enter opens the highlighted run's detail")]

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
        state = "[b yellow]PAUSED[/] (P resumes)" if paused else "[b green]active[/]"
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
                           r["stage"] or "—", executor_label(r), where_label(r), r.get("job_id") or "—",
                           r.get("job_state") or "—", when(r["created_at"]))

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

    def action_cancel_run(self) -> None:
        run = self.cursor_run()
        if run is not None:
            cancel_runs(self, [run], done=self.reload)

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
    """``local`` or ``slurm`` once claimed; what the run asked for while queued."""
    return row.get("executor") or row.get("asked_executor") or "local"


def where_label(row: dict) -> str:
    """The node of a scheduler's run, else the device slot(s) it holds (``cuda:0,1``, ``cpu#1``)."""
    return row.get("node") or row.get("slot") or row.get("device") or "—"
