"""Queue: queued and running runs in execution order; cancel, reorder, pause and resume."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from backend.errors import GreentuiError
from backend.fmt import method_label, model_label, ratio_label, status_cell, when
from backend.runs import cancel as cancel_run

from ..widgets.confirm import ConfirmScreen
from ..widgets.keys import KeyFooter
from ._live import LiveTableScreen
from ._table import cursor_id


class QueueScreen(LiveTableScreen):
    reload_on_every_change = True  # small table; its stage column moves with every stage event

    BINDINGS = [
        Binding("enter", "open", "Detail", show=False),
        Binding("K,shift+up", "move(-1)", "Move up", tooltip="Run this one earlier"),
        Binding("J,shift+down", "move(1)", "Move down", tooltip="Run this one later"),
        Binding("x", "cancel", "Cancel run", tooltip="Cancel a queued run, or stop the running one"),
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause or resume the queue"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="queue-state")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static("The runner is a detached process: closing greentui (or an SSH drop) does not stop it.",
                     id="queue-hint")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (("pos", "#"), ("id", "id"), ("model", "model"), ("kind", "kind"),
                           ("method", "method"), ("ratio", "ratio"), ("status", "status"),
                           ("stage", "stage"), ("created", "queued at")):
            table.add_column(label, key=key)
        self.reload()
        table.focus()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        keep = self.cursor_run()
        rows = self.store.queued_runs()
        rows.sort(key=lambda r: (r["status"] != "running", r["position"] or 0, r["id"]))
        table.clear()
        for i, r in enumerate(rows, 1):
            table.add_row(str(i), str(r["id"]), model_label(r), r["kind"], method_label(r), ratio_label(r),
                          status_cell(r["status"]), r["stage"] or "—", when(r["created_at"]), key=str(r["id"]))
        if keep is not None and str(keep) in {str(r["id"]) for r in rows}:
            table.move_cursor(row=table.get_row_index(str(keep)), animate=False)
        paused = self.store.queue_paused()
        pid = self.app.runner_pid()
        state = "[b yellow]PAUSED[/] (p resumes)" if paused else "[b green]active[/]"
        runner = f"runner pid {pid}" if pid else "no runner alive"
        queued = sum(r["status"] == "queued" for r in rows)
        self.query_one("#queue-state", Static).update(
            f"queue {state} · {runner} · {queued} queued · {len(rows) - queued} running")

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
            self.store.move_in_queue(run, delta)
        except GreentuiError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.reload()

    def action_cancel(self) -> None:
        run = self.cursor_run()
        if run is None:
            return
        row = self.store.get_run(run)

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
        paused = not self.store.queue_paused()
        self.store.set_queue_paused(paused)
        if paused:
            self.notify("queue paused: the current run finishes, nothing new starts")
        else:
            pid = self.app.ensure_runner()
            self.notify("queue resumed" + (f"; runner pid {pid}" if pid else ""))
        self.reload()
