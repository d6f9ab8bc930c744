"""Queue: queued and running runs in execution order; cancel, reorder, pause and resume.

Every row says where it runs: the executor, the device slot or the node, and the columns the
executors add (``backend.service.execution.queue_columns``: a scheduler's job id and state, with its
reason while it waits and its restarts). Cancel goes through the service layer, which asks the run's
executor (the run's own flag for a local process, the scheduler for a job).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Static

from backend.errors import GreentuiError
from backend.results.fmt import (
    method_label,
    method_with_ratio,
    model_label,
    ratio_label,
    short_when,
    status_cell,
    when,
)
from backend.service.execution import queue_columns
from backend.service.queue_state import QueueState, queue_state
from greentui.keymap import binding
from greentui.widgets.keys import KeyFooter

from ._cancel import cancel_runs
from ._live import LiveTableScreen
from ._table import NarrowColumns, cursor_id, ellipsis, plain_cells
from .runs import SHORT_KIND


class QueueScreen(NarrowColumns, LiveTableScreen):
    reload_on_every_change = True  # small table; its stage column moves with every stage event
    #: the executors' own columns (job id, job state) go between "device/node" and "queued at"
    BASE_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("kind", "kind"), ("method", "method"),
                    ("ratio", "ratio"), ("status", "status"), ("stage", "stage"), ("executor", "executor"),
                    ("where", "device/node")]
    #: at 80 columns: the method carries the ratio, "where" the executor, device or node and job id
    NARROW_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("method", "method"),
                      ("status", "status"), ("stage", "stage"), ("where", "where")]
    #: 100-139 columns (120 among them): kind and a short date stay, the executor joins "where"
    MEDIUM_COLUMNS = [("pos", "#"), ("id", "id"), ("model", "model"), ("kind", "kind"), ("method", "method"),
                      ("status", "status"), ("stage", "stage"), ("where", "where"), ("created", "queued at")]
    NARROW_BELOW = 140  # the wide set needs ~135 columns
    NARROW_WIDTHS = {"model": 14, "where": 20, "method": 15, "stage": 18}
    state: QueueState | None = None

    # in the footer's order: what fits at 80 columns comes first
    BINDINGS = [binding(i) for i in ("open", "cancel_run", "pause_queue", "move_up", "move_down")]
    HELP_NOTES = [("in the table", "⏎", "Detail", "Enter opens the highlighted run's detail")]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.executor_columns = queue_columns()
        self.WIDE_COLUMNS = [*self.BASE_COLUMNS, *((c.key, c.label) for c in self.executor_columns),
                             ("created", "queued at")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="queue-state")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static("Runs go on in the runner when greentui closes or the SSH connection drops.",
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
        self.state = state = queue_state(self.store)
        # the runs that hold a device first, each followed by the baseline it evaluates in its own
        # process; then the queue in order, each queued run saying what it waits for
        rows: list[dict] = []
        for r in state.running:
            rows.append(r)
            rows += [b for b in self.store.queue.queued() if state.inside.get(b["id"]) == r["id"]]
        rows += state.queued
        table.clear()
        for i, r in enumerate(rows, 1):
            asked = r.get("cancel_requested") or r.get("job_cancel_requested")
            status = status_cell("cancelling" if r["status"] in ("queued", "running") and asked
                                 else r["status"])
            table.add_row(*self.cells(i, r, status), key=str(r["id"]))
        if keep is not None and str(keep) in {str(r["id"]) for r in rows}:
            table.move_cursor(row=table.get_row_index(str(keep)), animate=False)
        head = (Text.assemble("queue ", ("PAUSED", "b yellow"), " (P resumes)") if state.paused
                else Text.assemble("queue ", ("active", "b green")))
        runner = ("; ".join(f"runner pid {x['pid']} on {', '.join(x['devices']) or x['requested']}"
                            for x in state.runners) if state.runners else "no runner alive")
        head.append(f" · {runner} · {len(state.queued)} queued · {state.running_text()}")
        self.query_one("#queue-state", Static).update(head)

    def stage_text(self, r: dict) -> str:
        """What the run is doing: its stage; for a baseline evaluated inside another run, that run; for
        a queued run, what it waits for."""
        if r["id"] in self.state.inside:
            return f"inside run {self.state.inside[r['id']]}"  # its experiment's process evaluates it
        if r["status"] == "queued":
            return self.state.wait_reason(r, short=True)
        return r["stage"] or "—"

    def cells(self, position: int, r: dict, status: Text) -> list[Text]:
        if self.tier != "wide":
            job = f" job {r['job_id']}" if r.get("job_id") else ""
            where = executor_label(r) + ("" if where_label(r) == "—" else f" {where_label(r)}") + job
            if self.tier == "medium":
                return plain_cells(position, r["id"], ellipsis(model_label(r)), SHORT_KIND.get(r["kind"], r["kind"]),
                                   ellipsis(method_with_ratio(r)), status, ellipsis(self.stage_text(r)),
                                   ellipsis(where), short_when(r["created_at"]))
            return plain_cells(position, r["id"], ellipsis(model_label(r)), method_with_ratio(r), status,
                               ellipsis(self.stage_text(r)), ellipsis(where))
        return plain_cells(position, r["id"], model_label(r), r["kind"], method_label(r), ratio_label(r), status,
                           self.stage_text(r), executor_label(r), where_label(r),
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
    """The executor that took the run once claimed; what the run asked for while queued."""
    return row.get("executor") or row.get("asked_executor") or "local"


def where_label(row: dict) -> str:
    """The node of a scheduler's run, else the device slot(s) it holds (``cuda:0,1``, ``cpu#1``)."""
    return row.get("node") or row.get("slot") or row.get("device") or "—"
