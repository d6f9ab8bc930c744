"""Models: the workspace's models, the local HF cache and the demo model; add one; see its shape.

Describing a model reads ``config.json`` and safetensors headers only (``backend.stages.models.describe``,
no torch), but scanning the HF cache or probing the hub can take a moment, so both happen in
thread workers. A worker's unexpected failure (a corrupt safetensors header, say) is the app's
to report (``GreentuiApp.on_worker_state_changed``): a notification, never a crash.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Input, Label, Static

from backend.errors import GreentuiError
from backend.results.fmt import params, plain, size
from backend.service.runs import demo_model_built, demo_model_dir
from backend.text import safe_name, safe_text
from greentui.keymap import binding
from greentui.widgets.keys import KeyFooter
from greentui.widgets.path_suggester import PathSuggester

from ._live import LiveTableScreen
from ._table import cursor_key, plain_cells

DEMO_KEY = "demo:"


class ModelsScreen(LiveTableScreen):
    BINDINGS = [binding("add_model"), binding("new_run", "new_run_with"),
                binding("back", "cancel_add", description="Close", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.cached: list[str] = []
        self.described: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="models-body"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="model-side"):
                yield Static("", id="model-details")
        with Vertical(id="add-box"):
            # → takes the greyed completion (a folder, or a model the workspace knows); the typed text
            # stays when the field takes the focus again (Textual selects it all, so a key replaced it)
            yield Input(placeholder="HF id (org/name) or local model directory; → completes, Enter adds, "
                        "Esc closes", id="add-model", select_on_focus=False,
                        suggester=PathSuggester(m["ref"] for m in self.app.store.models.list()))
            yield Label("", id="add-error", classes="error")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (("source", "source"), ("name", "model"), ("arch", "arch"), ("params", "params"),
                           ("layers", "layers"), ("heads", "heads"), ("kv", "kv heads"),
                           ("size", "size"), ("runs", "runs")):
            table.add_column(label, key=key)
        self.query_one("#add-box").display = False
        self.reload()
        table.focus()
        self.scan_cache()

    # ------------------------------------------------------------------ data
    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        store = self.app.store
        out: list[tuple[str, dict[str, Any]]] = []
        refs = set()
        for m in store.models.list():
            out.append((m["ref"], m))
            refs.add(m["ref"])
        for ref in self.cached:
            if ref not in refs:
                out.append((ref, self.described.get(ref) or {"ref": ref, "name": ref, "source": "cache"}))
        demo = str(demo_model_dir(self.app.workspace))
        if demo not in refs:
            built = demo_model_built(self.app.workspace)
            out.append((DEMO_KEY, {"ref": demo, "name": "tiny demo model", "source": "demo",
                                   "info": "built, not registered" if built else "not built: press d"}))
        return out

    def reload(self) -> None:
        table = self.query_one(DataTable)
        keep = self.cursor_key()
        table.clear()
        self.entries = dict(self.rows())
        for key, m in self.entries.items():
            table.add_row(*plain_cells(m.get("source") or "—", m.get("name") or m["ref"], m.get("arch") or "—",
                                       params(m.get("params")), _n(m.get("layers")), _n(m.get("heads")),
                                       _n(m.get("kv_heads")), size(m.get("size_bytes")), _n(m.get("runs"))),
                          key=key)
        if keep in self.entries:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self.show_details()

    def cursor_key(self) -> str | None:
        return cursor_key(self.query_one(DataTable))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_details()

    def show_details(self) -> None:
        key = self.cursor_key()
        box = self.query_one("#model-details", Static)
        if key is None:
            box.update("No models yet. Press [b]a[/b] to add one, or [b]d[/b] to build the demo model.")
            return
        m = self.entries.get(key, {})
        if m.get("source") == "cache" and key not in self.described:
            self.describe_cached(key)
        # Text, never markup: a name or a folder may hold brackets ("[@click=…]") or escapes
        name = Text(safe_name(m.get("name") or m.get("ref")), "bold")
        lines = [f"ref: {m.get('ref')}", f"source: {m.get('source') or '—'}"]
        if m.get("info") and "params" not in m:
            lines.append(str(m["info"]))
        lines += [
            f"architecture: {m.get('arch') or '—'}",
            f"parameters: {params(m.get('params'))}" + (f" ({m['params']:,})" if m.get("params") else ""),
            f"layers: {_n(m.get('layers'))}",
            f"attention heads: {_n(m.get('heads'))}",
            f"kv heads: {_n(m.get('kv_heads'))}" + (" (GQA)" if m.get("kv_heads") and m.get("heads")
                                                   and m["kv_heads"] < m["heads"] else ""),
            f"hidden / intermediate: {_n(m.get('hidden'))} / {_n(m.get('intermediate'))}",
            f"dtype: {m.get('dtype') or '—'}",
            f"size on disk: {size(m.get('size_bytes'))}",
        ]
        if m.get("runs") is not None:
            lines.append(f"runs: {m['runs']}")
        box.update(name.append("".join("\n" + safe_text(line, 400) for line in lines)))

    @work(thread=True, exclusive=True, group="cache-scan", name="scanning the HF cache", exit_on_error=False)
    def scan_cache(self) -> None:
        from backend.service.models import cached_models
        cached = cached_models()
        self.app.call_from_thread(self._cache_scanned, cached)

    def _cache_scanned(self, cached: list[str]) -> None:
        self.cached = cached
        if cached:
            self.reload()

    def describe_cached(self, ref: str) -> None:
        """Describe a cache entry once, in a worker (the placeholder stops a second attempt)."""
        self.described[ref] = {"ref": ref, "name": ref, "source": "cache", "info": "could not be described"}
        self._describe(ref)

    @work(thread=True, group="describe", name="describing a cached model", exit_on_error=False)
    def _describe(self, ref: str) -> None:
        from backend.service.models import describe_model
        info = describe_model(ref)  # any failure: the app's notification, the placeholder stays
        self.app.call_from_thread(self._described, ref, info)

    def _described(self, ref: str, info: dict[str, Any]) -> None:
        self.described[ref] = info
        self.reload()

    # ------------------------------------------------------------------ actions
    def action_add(self) -> None:
        self.query_one("#add-box").display = True
        self.query_one("#add-error", Label).update("")
        self.query_one("#add-model", Input).focus()

    def action_cancel_add(self) -> None:
        self.query_one("#add-box").display = False
        self.query_one(DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "add-model":
            ref = event.value.strip()
            if not ref:
                self.query_one("#add-error", Label).update("give an HF id (org/name) or a local directory")
                return
            self.query_one("#add-error", Label).update("checking…")
            self.add_model(ref)

    @work(thread=True, exclusive=True, group="add-model", name="adding the model", exit_on_error=False)
    def add_model(self, ref: str) -> None:
        from backend.service.models import add_model
        store = self.app.open_store()
        try:
            model = add_model(store, ref)
        except GreentuiError as exc:
            self.app.call_from_thread(self._add_failed, str(exc))
            return
        finally:
            store.close()
        self.app.call_from_thread(self._added, model)

    def _add_failed(self, reason: str) -> None:
        self.query_one("#add-error", Label).update(plain(reason, 400))  # it quotes the typed path

    def on_worker_state_changed(self, event) -> None:
        """An add that failed unexpectedly (the app notifies) must not leave "checking…" behind."""
        if event.worker.group == "add-model" and event.state.name == "ERROR":
            self.query_one("#add-error", Label).update("could not add it (see the notification)")

    def _added(self, model: dict[str, Any]) -> None:
        self.notify(f"added {model['ref']}")
        self.query_one("#add-model", Input).value = ""
        self.action_cancel_add()
        self.reload()
        table = self.query_one(DataTable)
        if model["ref"] in self.entries:
            table.move_cursor(row=table.get_row_index(model["ref"]))

    def action_new_run_with(self) -> None:
        key = self.cursor_key()
        m = self.entries.get(key or "", {})
        if key == DEMO_KEY and not demo_model_built(self.app.workspace):
            self.notify("the demo model is not built yet: press d", severity="warning")
            return
        self.app.action_new_run(model=m.get("ref"))


def _n(x: Any) -> str:
    return "—" if x is None else str(x)
