"""Runs: one row per run with its averages and its ratios against its vanilla baseline.

The table is paged (``PAGE`` rows per query, ``[``/``]`` to turn pages): ``Store.list_runs`` sorts
and filters in SQL, so the first screen shows at once with 10,000 runs in the store.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Header, Input, Static
from textual.widgets.data_table import ColumnKey

from backend.errors import GreentuiError
from backend.results.fmt import (
    PARTIAL_NOTE,
    method_label,
    method_with_ratio,
    model_label,
    num,
    partial_mark,
    ratio_cell,
    ratio_label,
    short_when,
    status_cell,
    when,
)
from backend.results.ratios import attach
from backend.schema.catalog import DEMO_DURATION
from backend.text import safe_text
from greentui.keymap import binding
from greentui.widgets.keys import KeyFooter

from ._live import LiveTableScreen
from ._table import NarrowColumns, cursor_id, ellipsis, plain_cells

PAGE = 100
#: Rows drawn on the very first frame; the rest of the page follows once that frame is on the screen
#: (``GreentuiApp.after_first_frame``), so it is composited before the other rows are measured. DataTable
#: renders every visible cell through Rich on its first paint (~0.3 ms a cell, 11 columns), which was
#: the largest part of the UI's start (issue #12, P2). Later reloads draw the whole page at once.
FIRST_PAINT_ROWS = 12


# (key, header, sort key for Store.list_runs or None)
COLUMNS: list[tuple[str, str, str | None]] = [
    ("id", "id", "id"), ("model", "model", "model"), ("kind", "kind", None),
    ("method", "method", "method"), ("ratio", "ratio", "ratio"), ("status", "status", "status"),
    ("avg_acc", "avg acc", "avg_acc"), ("avg_wh", "avg Wh", "avg_wh"),
    ("acc_ratio", "acc ×base", "acc_ratio"), ("wh_ratio", "Wh ×base", "wh_ratio"),
    ("created", "date", "created"),
]
#: Below ``RunsScreen.NARROW_BELOW`` columns the table keeps what answers the question, accuracy and
#: energy against the baseline, and drops kind and date: the method carries the ratio ("taylor 2/7"),
#: the model is cut with "…". In both sets the id carries the selection mark (●).
NARROW_RUN_COLUMNS: list[tuple[str, str, str | None]] = [
    ("id", "id", "id"), ("model", "model", "model"), ("method", "method", "method"),
    ("status", "status", "status"), ("avg_acc", "acc", "avg_acc"), ("avg_wh", "Wh", "avg_wh"),
    ("acc_ratio", "acc×", "acc_ratio"), ("wh_ratio", "Wh×", "wh_ratio"),
]
#: From 100 to 127 columns (120 among them) the wide set does not fit: kind, the method with its ratio
#: and a short date stay beside the figures (the narrow set left ~45 columns blank there).
MEDIUM_RUN_COLUMNS: list[tuple[str, str, str | None]] = [
    ("id", "id", "id"), ("model", "model", "model"), ("kind", "kind", None), ("method", "method", "method"),
    ("status", "status", "status"), ("avg_acc", "acc", "avg_acc"), ("avg_wh", "Wh", "avg_wh"),
    ("acc_ratio", "acc×", "acc_ratio"), ("wh_ratio", "Wh×", "wh_ratio"), ("created", "date", "created"),
]
#: statuses in at most 9 cells for the narrow set ("interrupted" is the one longer word)
SHORT_STATUS = {"interrupted": "interr."}


def short_status(status: str | None) -> Text:
    """The status cell of the narrow set: same colour, a word that fits 9 cells."""
    cell = status_cell(status)
    cell.plain = SHORT_STATUS.get(cell.plain, cell.plain)
    return cell


#: kind in a word that fits the medium set
SHORT_KIND = {"baseline": "base", "experiment": "exp", "reference": "ref"}
SORT_KEYS = [c[2] for c in COLUMNS if c[2]]
EMPTY_TEXT = ("[b]No runs in this workspace yet.[/b]\n\n"
              "Press [b reverse] d [/] to queue a demo run: a tiny trained model, pruned, LoRA-recovered "
              f"and evaluated on the bundled real items ({DEMO_DURATION}; it fills every screen),\n"
              "or [b reverse] n [/] to queue a run of your own model. [b reverse] ? [/] lists every key.")


class RunsScreen(NarrowColumns, LiveTableScreen):
    """All runs; filter, sort, multi-select, compare, re-queue, delete."""

    # every key from the app's one key map (greentui/keymap.py): same key, same meaning on every screen
    BINDINGS = [binding(i) for i in ("open", "compare", "cancel_run", "delete", "select", "sort", "reverse",
                                     "filter", "pareto", "requeue", "clone", "next_page", "prev_page", "clear")]
    #: what ``?`` says Enter does in the table (Textual calls the table's own Enter "Select")
    HELP_NOTES = [("in the table", "⏎", "Detail", "Enter opens the highlighted run's detail")]

    WIDE_COLUMNS = COLUMNS
    NARROW_COLUMNS = NARROW_RUN_COLUMNS
    MEDIUM_COLUMNS = MEDIUM_RUN_COLUMNS
    NARROW_WIDTHS = {"model": 14, "method": 15}
    # at 80 columns the ratios carry their intervals (0.91±.03, 8 cells each): model and method give way
    NARROWEST_WIDTHS = {"model": 11, "method": 13}
    NARROW_BELOW = 128  # the wide set needs up to ~125 columns (long statuses and methods) and a scrollbar
    LABEL_PAD = " "  # room for the sort arrow

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.order = "id"
        self.descending = True
        self.page = 0
        self.total = 0
        self.selected: set[int] = set()
        self.rows: dict[int, dict] = {}
        self._fill_generation = 0  # a reload cancels the first page's pending fill

    def compose(self) -> ComposeResult:
        yield Header()  # the filter box (#filter) is mounted here on the first `/` (filter_box)
        yield Static(EMPTY_TEXT, id="empty")
        table: DataTable = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Horizontal(id="runs-status-bar"):
            yield Static("", id="runs-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.add_columns(table, self.app.size.width)
        if not self.app.store_ready():  # a damaged store: the app ends with its one-line error
            return
        self.reload(first_paint=True)
        table.focus()

    # ------------------------------------------------------------------ data
    def reload(self, first_paint: bool = False) -> None:
        """Query the page and show it; on the first paint only the top rows, the rest after the frame."""
        self._fill_generation += 1
        table = self.query_one(DataTable)
        text = self.filter_text or None
        self.total = self.store.runs.count(text=text)
        pages = max(1, -(-self.total // PAGE))
        self.page = min(self.page, pages - 1)
        # each ratio with its interval, for the whole page in two queries (bench P2: 10,000 runs)
        rows = attach(self.store, self.store.runs.list(limit=PAGE, offset=self.page * PAGE, text=text,
                                                       order=self.order, descending=self.descending))
        cursor_key = self.cursor_run()
        table.clear()
        self.rows = {r["id"]: r for r in rows}
        shown = rows[:FIRST_PAINT_ROWS] if first_paint else rows
        for r in shown:
            table.add_row(*self.cells(r), key=str(r["id"]))
        if len(shown) < len(rows):
            self.app.after_first_frame(lambda rest=rows[len(shown):], gen=self._fill_generation:  # noqa: B008 (bound now, on purpose)
                                       self._fill_rest(rest, gen))
        self.mark_sort_column(table)
        if cursor_key in self.rows:
            table.move_cursor(row=table.get_row_index(str(cursor_key)), animate=False)
        empty = self.total == 0 and not self.filter_text
        self.query_one("#empty").display = empty
        table.display = not empty
        self.update_status()

    def _fill_rest(self, rows: list[dict], generation: int) -> None:
        """The rest of the first page, once the first frame is out (skipped if a reload came first)."""
        if generation != self._fill_generation or not self.is_attached:
            return
        table = self.query_one(DataTable)
        for r in rows:
            table.add_row(*self.cells(r), key=str(r["id"]))

    def cells(self, r: dict) -> list[Text]:
        partial = partial_mark(r)
        mark = "●" if r["id"] in self.selected else " "
        if self.tier == "narrow":
            return plain_cells(
                f"{mark}{r['id']}", ellipsis(model_label(r)), ellipsis(method_with_ratio(r)),
                short_status(r["status"]), num(r["avg_acc"]) + partial, num(r["avg_wh"], 4) + partial,
                ratio_cell(r["acc_ratio_ci"], compact=True), ratio_cell(r["wh_ratio_ci"], compact=True))
        if self.tier == "medium":
            return plain_cells(
                f"{mark}{r['id']}", ellipsis(model_label(r)), SHORT_KIND.get(r["kind"], r["kind"]),
                ellipsis(method_with_ratio(r)), status_cell(r["status"]), num(r["avg_acc"]) + partial,
                num(r["avg_wh"], 4) + partial, ratio_cell(r["acc_ratio_ci"], compact=True),
                ratio_cell(r["wh_ratio_ci"], compact=True), short_when(r["created_at"]))
        return plain_cells(
            f"{mark}{r['id']}", model_label(r), r["kind"], method_label(r), ratio_label(r), status_cell(r["status"]),
            num(r["avg_acc"]) + partial, num(r["avg_wh"], 4) + partial,
            ratio_cell(r["acc_ratio_ci"]), ratio_cell(r["wh_ratio_ci"]), when(r["created_at"]))

    def mark_sort_column(self, table: DataTable) -> None:
        """The sorted column's header carries ▼ (descending) or ▲, so ``s`` shows what it did."""
        for key, label, sort_key in self.columns:
            column = table.columns.get(ColumnKey(key))
            if column is None:
                continue
            arrow = ("▼" if self.descending else "▲") if sort_key == self.order else ""
            column.label = Text(label + (arrow or " "), style="bold" if arrow else "")
        table.refresh()

    def update_status(self) -> None:
        first = self.page * PAGE + 1 if self.total else 0
        last = min(self.total, (self.page + 1) * PAGE)
        header = {c[2]: c[1] for c in COLUMNS if c[2]}.get(self.order, self.order)
        sort = f"sorted by {header} {'▼' if self.descending else '▲'}"
        parts = [f"runs {first}–{last} of {self.total}", sort + " (s: next column)"]
        if any(partial_mark(r) for r in self.rows.values()):
            parts.append(PARTIAL_NOTE)
        if self.filter_text:
            parts.append(f"filter “{safe_text(self.filter_text, 40)}”")
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        if self.total > PAGE:
            parts.append("[ ] pages")
        # one line that fits: the key hints go first when it would not (80 columns, a filter, a selection)
        room = (self.app.size.width or 80) - 2
        if len(" · ".join(parts)) > room:
            parts = [sort if p.startswith(sort) else p for p in parts if p != "[ ] pages"]
        if len(" · ".join(parts)) > room:
            parts = [("* part of the tasks" if p.startswith("*") else p) for p in parts]
        # Text, never markup: the filter is what the user typed ("[/" crashed the markup parser)
        self.query_one("#runs-status", Static).update(Text(" · ".join(parts), no_wrap=True, overflow="ellipsis"))

    def cursor_run(self) -> int | None:
        return cursor_id(self.query_one(DataTable))

    def targets(self) -> list[int]:
        if self.selected:
            return sorted(self.selected)
        run = self.cursor_run()
        return [run] if run is not None else []

    # ------------------------------------------------------------------ actions
    def filter_box(self, create: bool = True) -> Input | None:
        """The filter box, mounted on the first ``/``: the first frame needs neither an Input nor its
        stylesheet (P2)."""
        boxes = self.query("#filter").results(Input)
        box = next(boxes, None)
        if box is None and create:
            box = Input(placeholder="filter: model, status, method, kind, id… (Enter applies, Esc clears)",
                        id="filter")
            self.mount(box, before="#empty")
        return box

    def action_filter(self) -> None:
        box = self.filter_box()
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self.page = 0
            self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.display = False
            self.query_one(DataTable).focus()

    def action_clear(self) -> None:
        box = self.filter_box(create=False)
        if box is not None and (box.has_focus or self.filter_text):
            box.value = ""
            box.display = False
            self.filter_text = ""
        else:
            self.selected.clear()
        self.query_one(DataTable).focus()
        self.reload()

    def action_sort(self, key: str | None = None) -> None:
        if key is None:
            key = SORT_KEYS[(SORT_KEYS.index(self.order) + 1) % len(SORT_KEYS)]
        self.order = key
        self.page = 0
        self.reload()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.reload()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = {c[0]: c[2] for c in self.columns}.get(str(event.column_key.value))
        if key is None:
            return
        if key == self.order:
            self.descending = not self.descending
        else:
            self.order = key
        self.reload()

    def action_page(self, delta: int) -> None:
        pages = max(1, -(-self.total // PAGE))
        self.page = max(0, min(pages - 1, self.page + delta))
        self.reload()

    def action_toggle_select(self) -> None:
        run = self.cursor_run()
        if run is None:
            return
        self.selected ^= {run}
        table = self.query_one(DataTable)
        table.update_cell(str(run), "id", Text(f"{'●' if run in self.selected else ' '}{run}"))
        self.update_status()  # the cursor stays on the run: Space selects, ↓ moves (two keys, two meanings)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.open_run(int(event.row_key.value))

    def action_open(self) -> None:
        run = self.cursor_run()
        if run is not None:
            self.app.open_run(run)

    def action_clone(self) -> None:
        run = self.cursor_run()
        if run is not None:
            self.app.clone_run(run)

    def action_compare(self) -> None:
        ids = self.targets()
        if not ids:
            self.notify("no run to compare", severity="warning")
            return
        self.app.open_compare(ids)

    def action_pareto(self) -> None:
        ids = self.targets()
        if not ids:
            self.notify("no run selected", severity="warning")
            return
        self.app.open_compare(ids, tab="pareto")

    def action_requeue(self) -> None:
        ids = self.targets()
        new = []
        for run_id in ids:
            try:
                from backend.service import runs  # the run service (schema, validation): not at start-up
                new += runs.requeue(self.store, [run_id])
            except GreentuiError as exc:
                self.notify(str(exc), severity="error")
        if new:
            self.notify(f"queued {', '.join(map(str, new))} (same config as {', '.join(map(str, ids))})")
            self.selected.clear()
            self.app.ensure_runner()
            self.reload()

    def action_cancel_run(self) -> None:
        """``x``: cancel the selected (or highlighted) queued/running runs, as on Queue and Run detail."""
        from ._cancel import cancel_runs
        cancel_runs(self, self.targets(), done=self.reload)

    def action_delete(self) -> None:
        ids = self.targets()
        if not ids:
            return
        shown = ", ".join(map(str, ids[:10])) + ("…" if len(ids) > 10 else "")
        msg = (f"Delete {len(ids)} run(s) ({shown}) with their results, events, power samples and run "
               "folders (pruned weights, logs)? This cannot be undone.")
        # a baseline that a queued or running experiment measures itself against: say so first
        waiting = [d for d in self.store.runs.dependents(ids) if d["id"] not in ids]
        if waiting:
            deps = ", ".join(f"run {d['id']} ({d['status']}) uses baseline {d['parent_run_id']}" for d in waiting[:4])
            msg = (f"Warning: {deps}{' …' if len(waiting) > 4 else ''}; deleting the baseline leaves it without "
                   "its vanilla figures (ratios, perplexity).\n\n" + msg)

        def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                from backend.service import runs
                n, kept = runs.remove(self.app.workspace, self.store, ids)  # like greentui rm: folders too
            except GreentuiError as exc:
                self.notify(str(exc), severity="error")
                return
            self.selected.difference_update(ids)
            if kept:
                self.notify(f"deleted {n} run(s); could not remove {', '.join(kept)}", severity="warning")
            else:
                self.notify(f"deleted {n} run(s) and their folders")
            self.reload()

        from greentui.widgets.confirm import ConfirmScreen  # imports the chart widgets' package: not at start-up
        self.app.push_screen(ConfirmScreen(msg, yes="Delete", no="Keep them"), done)
