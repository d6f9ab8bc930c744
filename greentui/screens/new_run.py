"""New run: a form generated from the run schema, validated inline as you type, queued with Enter.

Every field comes from ``backend.runconfig.SETTINGS`` (label, widget, placeholder, parser, rule), so
the form and ``greentui run/queue`` can never disagree on a setting, a default or a rule. Validation is
``RunConfig.problems()`` plus the text parsers; queueing calls the service layer
(``backend.runs.queue_run``, the same as ``greentui queue``) in a thread worker. A refusal arrives as ``SettingError`` naming its
field: the reason is shown under that field and the notification names it by its label.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, SelectionList, Static

from backend.errors import GreentuiError
from backend.form_advice import (PRESETS, estimate, finished_runs, last_config, model_checks, model_size,
                                 preset_config, rates)
from backend.runconfig import GROUP_NOTES, GROUPS, SETTING, SETTINGS, RunConfig
from backend.schema import Setting, SettingError

from ..widgets.keys import KeyFooter
from ..widgets.plan_panel import PlanPanel
from ._live import AppScreen


def field_widget(s: Setting, value: Any, known_models: list[str]) -> Widget:
    """The widget that edits setting ``s`` (id ``f-<name>``), showing ``value``."""
    wid = f"f-{s.name}"
    if s.widget == "checkbox":
        return Checkbox(s.label, (not value) if s.invert else bool(value), id=wid,
                        tooltip=f"{s.flag}: {s.help}")
    if s.widget == "select":
        return Select([(c, c) for c in s.choices], value=value, allow_blank=False, id=wid, tooltip=s.help)
    if s.widget == "tasks":
        return SelectionList[str](*[(c, c, c in value) for c in s.choices], id=wid)
    suggester = SuggestFromList(known_models, case_sensitive=False) if s.widget == "model" else None
    return Input(s.to_text(value), placeholder=s.help, id=wid, tooltip=s.help, suggester=suggester)


def widget_value(s: Setting, widget: Widget) -> Any:
    """The setting's value from its widget; ValueError (with the reason) when the text does not parse."""
    if isinstance(widget, Checkbox):
        return (not widget.value) if s.invert else widget.value
    if isinstance(widget, Select):
        return widget.value
    if isinstance(widget, SelectionList):
        return list(widget.selected)
    assert isinstance(widget, Input)
    return s.from_text(widget.value)


def set_widget_value(s: Setting, widget: Widget, value: Any) -> None:
    if isinstance(widget, Checkbox):
        widget.value = (not value) if s.invert else bool(value)
    elif isinstance(widget, Select):
        widget.value = value
    elif isinstance(widget, SelectionList):
        widget.deselect_all()
        for v in value:
            widget.select(v)
    elif isinstance(widget, Input):
        widget.value = s.to_text(value)


class NewRunScreen(AppScreen):
    """The New-run form; Escape goes back without queueing."""

    BINDINGS = [
        Binding("ctrl+s", "queue", "Queue", priority=True, tooltip="Queue the run (Enter in a field too)"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "reset", "Study defaults", tooltip="Reset every field to the study's defaults"),
    ]

    def __init__(self, model: str | None = None, config: RunConfig | None = None,
                 source: str | None = None) -> None:
        """``config`` pre-fills the form (clone a run; ``source`` names it, e.g. "run 7"); without it the
        form starts from the last run's config, or the study recipe in a workspace with no runs.
        ``model`` fills only the model field."""
        super().__init__()
        self.model = model
        self.cloned = RunConfig.from_dict(config.to_dict()) if config else None
        self.source = source or "cloned run"
        self.model_error: str | None = None
        self.busy = False
        self.sizes: dict[str, tuple[int, int] | None] = {}  # model ref -> (layers, params) from config.json
        self.rates: dict[str, float] = {}
        self.finished = 0
        self.warnings: list[str] = []

    def starting_point(self) -> tuple[RunConfig, list[tuple[str, str]], str]:
        """(config, preset choices, chosen): a clone, else the last run's config, else the study recipe."""
        choices = [(label, name) for name, label in PRESETS.items()]
        if self.cloned is not None:
            return self.cloned, [(f"{self.source}'s config", "clone"), *choices], "clone"
        last = last_config(self.app.store)
        if last is not None:
            self.cloned = last
            return last, [("last run's config", "clone"), *choices], "clone"
        return RunConfig(), choices, "study"

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        known = [m["ref"] for m in self.app.store.list_models()]
        self.initial, choices, chosen = self.starting_point()
        if self.model:
            self.initial.model = self.model
        self.preset = chosen
        with VerticalScroll(id="form"):
            yield Static("[b]New run[/b] — the study recipe is GreenPruning's "
                         "(Taylor 2/7, ignore 4/4, LoRA r8/α16, seven tasks). Enter queues.", id="form-title")
            with Horizontal(classes="field"):
                yield Label("start from", classes="field-label")
                yield Select(choices, value=chosen, allow_blank=False, id="preset", classes="field-input",
                             tooltip="Fill every field but the model from this preset")
            yield Static("", id="form-advice")
            for group in GROUPS:
                if group != "model":
                    note = GROUP_NOTES.get(group)
                    yield Static(group + (f" [dim]— {note}[/]" if note else ""), classes="form-group")
                for s in (s for s in SETTINGS if s.group == group):  # few widgets per field: 40 of them
                    with Horizontal(classes="field"):
                        yield Label("" if s.widget == "checkbox" else s.label, classes="field-label")
                        yield field_widget(s, getattr(self.initial, s.name), known).add_class("field-input")
                    yield Label("", id=f"err-{s.name}", classes="error field-error")
                if group == "pruning":  # what these settings make of the model, from its config.json
                    yield PlanPanel(id="plan-panel")
            with Horizontal(id="form-buttons"):
                yield Button("Queue (Enter)", id="queue", variant="primary")
                yield Button("Back (Esc)", id="back")
            yield Static("", id="form-summary")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.rates, self.finished = rates(self.app.store), finished_runs(self.app.store)
        self.query_one("#f-model", Input).focus()
        self.validate()

    def apply_preset(self, name: str) -> None:
        """Every field but the model from the preset (``clone``: the cloned or last run's config)."""
        model = self.query_one("#f-model", Input).value.strip()
        cfg = self.cloned if name == "clone" and self.cloned is not None else preset_config(name, model)
        for s in SETTINGS:
            if s.name != "model":
                set_widget_value(s, self.query_one(f"#f-{s.name}"), getattr(cfg, s.name))
        self.preset = name
        self.validate()

    def model_size(self, ref: str) -> tuple[int, int] | None:
        if ref not in self.sizes:
            self.sizes[ref] = model_size(ref) if ref.strip() else None
        return self.sizes[ref]

    # ------------------------------------------------------------------ reading the form
    def read(self) -> tuple[RunConfig, dict[str, str]]:
        """The config the form describes, and field → reason for values that do not parse."""
        bad: dict[str, str] = {}
        data: dict[str, Any] = {}
        for s in SETTINGS:
            try:
                data[s.name] = widget_value(s, self.query_one(f"#f-{s.name}"))
            except ValueError as exc:
                bad[s.name] = str(exc)
        return RunConfig(**data), bad  # a field that does not parse keeps its default; its reason is in bad

    def validate(self) -> dict[str, str]:
        """Show every problem under its field; return them (empty = the form is valid)."""
        cfg, bad = self.read()
        size = self.model_size(cfg.model or "")
        checks, self.warnings = model_checks(cfg, size)
        problems = {**checks, **cfg.problems(), **bad}
        if self.model_error and "model" not in problems:
            problems["model"] = self.model_error
        for label in self.query("Label.error"):
            reason = problems.get((label.id or "")[4:], "")
            label.update(reason)
            label.display = bool(reason)
        summary = cfg.summary() if not problems else f"{len(problems)} field(s) to fix: " + ", ".join(
            SETTING[name].label for name in problems)
        self.query_one("#form-summary", Static).update(summary)
        self.query_one("#queue", Button).disabled = bool(problems) or self.busy
        self.query_one(PlanPanel).refresh_plan(cfg.to_dict())
        advice = [f"[b yellow]warning:[/] {w}" for w in self.warnings]
        params = size[1] if size else (self.app.store.get_model(cfg.model or "") or {}).get("params")
        advice.append(estimate(cfg, params, self.rates, self.finished))
        self.query_one("#form-advice", Static).update("\n".join(advice))
        return problems

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "f-model":
            self.model_error = None
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            if event.value != self.preset:
                self.apply_preset(str(event.value))
            return
        self.validate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.validate()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.validate()

    # ------------------------------------------------------------------ actions
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_queue()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "queue":
            self.action_queue()
        else:
            self.action_back()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reset(self) -> None:
        """Every field but the model back to the study's default (the "study recipe" preset)."""
        self.apply_preset("study")
        self.query_one("#preset", Select).value = "study"

    def action_queue(self) -> None:
        if self.busy:
            return
        problems = self.validate()
        if problems:
            name = next(iter(problems))
            self.notify(f"not queued — {SETTING[name].label}: {problems[name]}", severity="error")
            self.query_one(f"#f-{name}").focus()
            return
        cfg, _ = self.read()
        self.busy = True
        self.query_one("#form-summary", Static).update("checking the model and queueing…")
        self.submit(cfg)

    @work(thread=True, exclusive=True, group="queue-run", name="queueing the run", exit_on_error=False)
    def submit(self, cfg: RunConfig) -> None:
        """A refusal goes under its field; anything unexpected is the app's worker handler's to show."""
        from backend.runs import queue_run
        store = self.app.open_store()
        try:
            queued = queue_run(self.app.workspace, store, cfg, start=False)
        except GreentuiError as exc:
            self.app.call_from_thread(self._refused, exc)
            return
        finally:
            store.close()
        self.app.call_from_thread(self._queued, queued.run_id)

    def on_worker_state_changed(self, event) -> None:
        """After an unexpected failure (the app notifies it) the form is usable again."""
        if event.worker.group == "queue-run" and event.state.name == "ERROR":
            self.busy = False
            self.query_one("#form-summary", Static).update("[b red]not queued[/] (see the notification)")
            self.validate()

    def _refused(self, exc: GreentuiError) -> None:
        """Put the reason under the field it belongs to (``SettingError.field``), or in the summary."""
        self.busy = False
        field = exc.field if isinstance(exc, SettingError) else None
        reason = exc.reason if isinstance(exc, SettingError) else str(exc)
        if field == "model":
            self.model_error = reason
            self.validate()
        elif field and self.query(f"#err-{field}"):
            label = self.query_one(f"#err-{field}", Label)
            label.update(reason)
            label.display = True
            self.query_one("#queue", Button).disabled = False
        else:
            self.query_one("#form-summary", Static).update(f"[b red]not queued:[/] {reason}")
            self.query_one("#queue", Button).disabled = False
        if field and self.query(f"#f-{field}"):
            self.query_one(f"#f-{field}").focus()
        where = f"{SETTING[field].label}: " if field in SETTING else ""
        self.notify(f"not queued — {where}{reason}", severity="error", timeout=10)

    def _queued(self, run_id: int) -> None:
        self.busy = False
        pid = self.app.ensure_runner()
        paused = self.app.store.queue_paused()
        self.notify(f"run {run_id} queued" + (" (the queue is paused: Queue screen, p resumes)" if paused
                                              else f"; runner pid {pid}" if pid else ""))
        self.app.poll_store()
        self.dismiss(run_id)
        self.app.open_run(run_id)
