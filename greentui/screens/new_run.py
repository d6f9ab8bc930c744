"""New run: a form generated from the run schema, validated inline as you type, queued with Enter.

Every field comes from ``backend.schema.runconfig.SETTINGS`` (label, widget, placeholder, parser, rule), so
the form and ``greentui run/queue`` can never disagree on a setting, a default or a rule. Validation is
``RunConfig.problems()`` plus the text parsers; queueing calls the service layer
(``backend.service.runs.queue_run``, the same as ``greentui queue``) in a thread worker. A refusal arrives as ``SettingError`` naming its
field: the reason is shown under that field and the notification names it by its label.

Opening at once (issue #12: ``n`` to a usable form in < 0.5 s on a 2-core machine). Textual styles,
lays out and renders every widget in the DOM, so the form builds only what it shows:

* the settings marked ``essential`` in the schema are built when the form opens; every group's other
  settings sit in a :class:`~greentui.widgets.fold.Fold`, composed the first time it is opened (by the
  user, or by the form to show a refused value). A setting whose fold is not built keeps its value in
  ``held`` (from the starting config, a preset or a clone), so reading, validating and queueing
  always see every setting; a fold's title says which of its values differ from the study's and how
  many need fixing;
* the plan panel and the time estimate (the planner, the past runs' stage times) are computed in a
  thread worker started after the form's first frame, with a "computing…" placeholder until then;
* the form is validated once when it opens and then only when a value really changed (a field
  reporting its initial value is not a change), and only the error lines whose text changed are
  redrawn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.events import ScreenResume
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, SelectionList, Static
from textual.worker import get_current_worker

from backend.errors import GreentuiError
from backend.results.fmt import plain
from backend.schema.runconfig import GROUP_NOTES, GROUPS, SETTING, SETTINGS, RunConfig
from backend.schema.settings import Setting, SettingError
from backend.service.form_advice import (
    PRESETS,
    estimate,
    finished_runs,
    last_config,
    model_checks,
    model_size,
    preset_config,
)
from backend.service.form_advice import rates as past_rates
from backend.text import safe_text
from greentui.keymap import binding
from greentui.widgets.fold import Fold
from greentui.widgets.keys import KeyFooter
from greentui.widgets.onoff import OnOffCheckbox
from greentui.widgets.path_suggester import PathSuggester
from greentui.widgets.plan_panel import PlanPanel, plan_lines

from ._live import AppScreen

#: group -> its settings, in declaration order
GROUP_SETTINGS: dict[str, list[Setting]] = {g: [s for s in SETTINGS if s.group == g] for g in GROUPS}
#: setting name -> the group whose fold holds it (essential settings are in no fold)
FOLD_OF: dict[str, str] = {s.name: s.group for s in SETTINGS if not s.essential}
ESTIMATING = "time estimate: computing…"


def fold_id(group: str) -> str:
    return "fold-" + group.lower().replace(" ", "-")


def field_widget(s: Setting, value: Any, known_models: list[str], classes: str | None = None) -> Widget:
    """The widget that edits setting ``s`` (id ``f-<name>``), showing ``value``. (CSS classes go in here:
    a class added after construction restyles the widget once more.)"""
    wid = f"f-{s.name}"
    if s.widget == "checkbox":  # on/off in words, not only by colour
        return OnOffCheckbox(s.label, (not value) if s.invert else bool(value), id=wid, classes=classes,
                             tooltip=f"{s.flag}: {s.help}")
    if s.widget == "select":
        return Select([(c, c) for c in s.choices], value=value, allow_blank=False, id=wid, classes=classes,
                      tooltip=s.help)
    if s.widget == "tasks":
        return SelectionList[str](*[(c, c, c in value) for c in s.choices], id=wid, classes=classes)
    suggester = PathSuggester(known_models) if s.widget == "model" else None  # a folder or a known model
    return Input(s.to_text(value), placeholder=s.help, id=wid, classes=classes, tooltip=s.help, suggester=suggester)


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


def raw_value(widget: Widget) -> Any:
    """What the widget holds, unparsed (to tell a real change from a widget reporting its first value)."""
    if isinstance(widget, SelectionList):
        return tuple(widget.selected)
    return widget.value  # Input, Checkbox, Select


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


def value_text(s: Setting, value: Any) -> str:
    """A changed value as a fold's title lists it: ``partition gpu``, ``GPU cooldown on``."""
    if s.widget == "checkbox":
        return f"{s.label} {'on' if ((not value) if s.invert else value) else 'off'}"
    return f"{s.label} {s.to_text(value) or '(empty)'}"


class NewRunScreen(AppScreen):
    """The New-run form; Escape goes back without queueing."""

    BINDINGS = [binding("queue_run", priority=True), binding("back"), binding("reset_form")]
    #: what ``?`` adds to the bindings: Enter is a text field's own key here
    HELP_NOTES = [("in a text field", "⏎", "Next field",
                   "Enter moves to the next field and never queues: Ctrl+S queues the run")]
    # The first field takes the focus as the screen is composed. (Textual's default would focus the
    # scrolling form first and the model field after it: two restyles of every widget in the form.)
    AUTO_FOCUS = "#f-model"
    #: settings the form does not show (the New-study form lists its models apart)
    OMITTED: tuple[str, ...] = ()
    QUEUE_LABEL = "Queue (Ctrl+S)"

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
        self.rates: dict[str, float] | None = None  # from past runs, read once by the advice worker
        self.finished = 0
        self.warnings: list[str] = []
        self.estimate_line = ESTIMATING
        self._advice_text = ""
        self.fields: dict[str, Widget] = {}         # setting -> its widget, once built
        self.error_labels: dict[str, Label] = {}    # setting -> its error line, once built
        self.held: dict[str, Any] = {}              # every setting's value while its widget is not built
        self.shown: dict[str, str] = {}             # setting -> the reason on (or due on) its error line
        self.folds: dict[str, Fold] = {}            # group -> the fold of its non-essential settings
        self.fold_titles: dict[str, str] = {}
        self.known: list[str] = []
        self._validated: tuple | None = None        # the raw values the last validation saw
        self._advice_key: tuple | None = None
        self._advice_request = 0
        self._advice_started = False  # the first advice waits for the form's first frame
        self._advice_pending: tuple | None = None
        self._resumed = False  # (the size classes were taken in AppScreen.__init__)

    def on_screen_resume(self, event: ScreenResume) -> None:
        """The first show: every widget was styled as it was mounted, a moment ago, so Textual's restyle
        of the whole screen on resume is skipped then (``refresh_styles``; kept on every later resume).
        This handler runs before ``Screen``'s own, which reads the flag."""
        if not self._resumed:
            self._resumed = True
            event.refresh_styles = False

    def starting_point(self) -> tuple[RunConfig, list[tuple[str, str]], str]:
        """(config, preset choices, chosen): a clone, else the last run's config, else the study recipe."""
        choices = [(label, name) for name, label in PRESETS.items()]
        if self.cloned is not None:
            return self.cloned, [(f"{self.source}'s config", "clone"), *choices], "clone"
        last = last_config(self.app.store)
        if last is not None:
            self.cloned = last
            return last, [("last run's config", "clone"), *choices], "clone"
        return self.study_recipe(), choices, "study"

    def study_recipe(self, model: str = "") -> RunConfig:
        """The study preset under the workspace's ``greentui.toml`` [energy] defaults. A file that does not
        read is said once and the schema's defaults are shown: queueing refuses it by name anyway."""
        try:
            return preset_config("study", model, self.app.workspace)
        except GreentuiError as exc:
            self.notify(f"greentui.toml: {exc}", severity="error", timeout=10, markup=False)
            return preset_config("study", model)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        self.known = [m["ref"] for m in self.app.store.models.list()]
        self.initial, choices, chosen = self.starting_point()
        if self.model:
            self.initial.model = self.model
        self.preset = chosen
        self.held = self.initial.to_dict()
        with VerticalScroll(id="form"):
            yield from self.form_head(choices, chosen)
            yield Static("", id="form-advice")
            for group in GROUPS:
                first = [s for s in GROUP_SETTINGS[group] if s.essential and s.name not in self.OMITTED]
                rest = [s for s in GROUP_SETTINGS[group] if not s.essential]
                if first:
                    if group != "model":
                        note = GROUP_NOTES.get(group)
                        yield Static(group + (f" [dim]— {note}[/]" if note else ""), classes="form-group")
                    yield from self.rows(first)
                if group == "pruning":  # what these settings make of the model, from its config.json
                    yield PlanPanel(id="plan-panel")
                if rest:
                    fold = Fold(lambda rest=rest: self.rows(rest), title=self.fold_title(group, self.initial, {}),
                                id=fold_id(group), classes="form-fold")
                    self.folds[group] = fold
                    yield fold
            with Horizontal(id="form-buttons"):
                yield Button(self.QUEUE_LABEL, id="queue", variant="primary")
                yield Button("Back (Esc)", id="back")
            yield Static("", id="form-summary")
        yield KeyFooter()

    def form_head(self, choices: list[tuple[str, str]], chosen: str) -> ComposeResult:
        """The form's title and its "start from" preset (the New-study form adds its own fields here)."""
        yield Static("[b]New run[/b] — the study recipe is GreenPruning's "
                     "(Taylor 2/7, ignore 4/4, LoRA r8/α16, seven tasks). Enter: next field · "
                     "Ctrl+S: queue.", id="form-title")
        yield from self.preset_row(choices, chosen)

    def preset_row(self, choices: list[tuple[str, str]], chosen: str) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label("start from", classes="field-label")
            yield Select(choices, value=chosen, allow_blank=False, id="preset", classes="field-input",
                         tooltip="Fill every field but the model from this preset")

    def rows(self, settings: Iterable[Setting]) -> list[Widget]:
        """A labelled row and an error line per setting, showing the held value (and a reason already due)."""
        out: list[Widget] = []
        for s in settings:
            widget = field_widget(s, self.held[s.name], self.known, classes="field-input")
            self.fields[s.name] = widget
            out.append(Horizontal(Label("" if s.widget == "checkbox" else s.label, classes="field-label"), widget,
                                  classes="field"))
            reason = self.shown.get(s.name, "")
            error = Label(plain(reason, 400), id=f"err-{s.name}", classes="error field-error")
            error.display = bool(reason)
            self.error_labels[s.name] = error
            out.append(error)
        return out

    def fold_title(self, group: str, cfg: RunConfig, problems: dict[str, str]) -> Text:
        """``more pruning settings``, or the group's name (and note) when all of it is folded; then the
        values that differ from the study's and how many fields need fixing, so a folded clone shows."""
        settings = [s for s in GROUP_SETTINGS[group] if not s.essential]
        if len(settings) < len(GROUP_SETTINGS[group]):
            title = f"more {group} settings"
            detail = ", ".join(s.label for s in settings)
        else:
            title = group
            detail = GROUP_NOTES.get(group) or ", ".join(s.label for s in settings)
        changed = [value_text(s, getattr(cfg, s.name)) for s in settings if getattr(cfg, s.name) != s.default]
        # Text, never markup: a typed value ("[/" in a path) is shown as typed
        text = Text.assemble(title, (f" — {detail}", "dim"))
        if changed:
            more = f" +{len(changed) - 3}" if len(changed) > 3 else ""
            text.append(f" · set: {safe_text(', '.join(changed[:3]), 200)}{more}")
        bad = sum(1 for s in settings if s.name in problems)
        if bad:
            text.append(" · ").append(f"{bad} to fix", "b red")
        return text

    def on_mount(self) -> None:
        self.query_one(self.AUTO_FOCUS).focus()
        self.validate()
        self.call_after_refresh(self._start_advice)

    def _start_advice(self) -> None:
        """After the first frame: the advice worker's thread would otherwise hold the GIL while the form
        is laid out and drawn."""
        self._advice_started = True
        if self._advice_pending is not None:
            self.advise(*self._advice_pending)
            self._advice_pending = None

    def apply_preset(self, name: str) -> None:
        """Every field but the model from the preset (``clone``: the cloned or last run's config)."""
        model = self.fields["model"].value.strip() if "model" in self.fields else str(self.held.get("model") or "")
        if name == "clone" and self.cloned is not None:
            cfg = self.cloned
        else:
            cfg = self.study_recipe(model) if name == "study" else preset_config(name, model)
        values = cfg.to_dict()
        for s in SETTINGS:
            if s.name == "model":
                continue
            self.held[s.name] = values[s.name]
            if s.name in self.fields:
                set_widget_value(s, self.fields[s.name], values[s.name])
        self.preset = name
        self.validate()

    def model_size(self, ref: str) -> tuple[int, int] | None:
        if ref not in self.sizes:
            self.sizes[ref] = model_size(ref) if ref.strip() else None
        return self.sizes[ref]

    # ------------------------------------------------------------------ folds
    async def open_fold(self, group: str) -> None:
        """Open the fold of ``group``, building its fields the first time; returns once they are mounted."""
        waiter = self.folds[group].expand()
        if waiter is not None:
            await waiter

    async def open_folds(self) -> None:
        """Open every fold (see :meth:`open_fold`)."""
        for group in self.folds:
            await self.open_fold(group)

    def reveal(self, name: str) -> None:
        """Focus the field of setting ``name``, opening (and building) its fold first."""
        self.call_later(self._reveal, name)

    async def _reveal(self, name: str) -> None:
        if name in FOLD_OF:
            await self.open_fold(FOLD_OF[name])
        widget = self.fields.get(name)
        if widget is not None:
            self.call_after_refresh(widget.focus)

    # ------------------------------------------------------------------ reading the form
    def read(self) -> tuple[RunConfig, dict[str, str]]:
        """The config the form describes, and field → reason for values that do not parse."""
        bad: dict[str, str] = {}
        data: dict[str, Any] = {}
        for s in SETTINGS:
            widget = self.fields.get(s.name)
            if widget is None or not widget.is_mounted:  # in a fold not built (or not mounted) yet
                data[s.name] = self.held[s.name]
                continue
            try:
                data[s.name] = widget_value(s, widget)
            except ValueError as exc:
                bad[s.name] = str(exc)
        return RunConfig(**data), bad  # a field that does not parse keeps its default; its reason is in bad

    def _state(self) -> tuple:
        return (tuple(raw_value(w) if w.is_mounted else None for w in self.fields.values()), self.model_error,
                len(self.fields))

    def validate(self) -> dict[str, str]:
        """Show every problem under its field (or on its fold's title); return them (empty = valid)."""
        self._validated = self._state()
        cfg, bad = self.read()
        size = self.model_size(cfg.model or "")
        checks, self.warnings = model_checks(cfg, size)
        problems = {**checks, **cfg.problems(), **bad}
        if self.model_error and "model" not in problems:
            problems["model"] = self.model_error
        for name in set(problems) | {n for n, r in self.shown.items() if r}:
            self._show_error(name, problems.get(name, ""))
        for group, fold in self.folds.items():
            title = self.fold_title(group, cfg, problems)
            if self.fold_titles.get(group) != title:
                self.fold_titles[group] = fold.title = title
        summary = cfg.summary() if not problems else f"{len(problems)} field(s) to fix: " + ", ".join(
            SETTING[name].label for name in problems)
        self.query_one("#form-summary", Static).update(plain(summary, 400))
        self.query_one("#queue", Button).disabled = bool(problems) or self.busy
        params = size[1] if size else (self.app.store.models.get(cfg.model or "") or {}).get("params")
        self.request_advice(cfg, params)
        self.show_advice()
        return problems

    def _show_error(self, name: str, reason: str) -> None:
        """The reason on the field's error line (kept for the line until its fold is built)."""
        if self.shown.get(name, "") == reason:
            return
        self.shown[name] = reason
        label = self.error_labels.get(name)
        if label is not None:
            label.update(plain(reason, 400))  # a reason may quote the typed value: text, not markup
            label.display = bool(reason)

    def changed(self) -> None:
        """A widget reported a value: validate when the form's values really moved."""
        if self._state() != self._validated:
            self.validate()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "f-model":
            self.model_error = None
        self.changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            if event.value != self.preset:
                self.apply_preset(str(event.value))
            return
        self.changed()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.changed()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.changed()

    # ------------------------------------------------------------------ advice (a thread worker)
    def show_advice(self) -> None:
        text = Text("\n").join([Text.assemble(("warning:", "b yellow"), " ", safe_text(w, 400)) for w in self.warnings]
                                + [plain(self.estimate_line, 400)])
        if text != self._advice_text:
            self._advice_text = text
            self.query_one("#form-advice", Static).update(text)

    def request_advice(self, cfg: RunConfig, params: int | None) -> None:
        """Recompute the plan panel and the time estimate in the background when their inputs moved."""
        values = cfg.to_dict()
        key = (json.dumps(values, sort_keys=True, default=str), params)
        if key == self._advice_key:
            return
        self._advice_key = key
        self._advice_request += 1
        if self._advice_started:
            self.advise(self._advice_request, values, params)
        else:
            self._advice_pending = (self._advice_request, values, params)

    # Not exclusive: an older request's result is dropped by its number (``_advised``); cancelling it would
    # not stop its thread anyway.
    @work(thread=True, group="form-advice", name="the plan and time estimate", exit_on_error=False)
    def advise(self, request: int, values: dict[str, Any], params: int | None) -> None:
        """The planner's figures and the estimate from this machine's past runs (read once, with the
        worker's own store connection); a failure is the app's worker handler's to show."""
        worker = get_current_worker()
        rates, finished = self.rates, self.finished
        if rates is None:
            store = self.app.open_store()
            try:
                rates, finished = past_rates(store), finished_runs(store)
            finally:
                store.close()
        lines = plan_lines(values)
        line = estimate(RunConfig.from_dict(values), params, rates, finished)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._advised, request, rates, finished, lines, line)

    def _advised(self, request: int, rates: dict[str, float], finished: int, lines: list[str], line: str) -> None:
        self.rates, self.finished = rates, finished
        if request != self._advice_request or not self.is_attached:
            return  # a newer request is on its way, or the form is gone
        self.query_one(PlanPanel).show(lines)
        self.estimate_line = line
        self.show_advice()

    # ------------------------------------------------------------------ actions
    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field moves on, as in any form; queueing is its own key (Ctrl+S) or the button, so
        Enter pressed to confirm a value never queues a run nobody meant."""
        event.stop()
        self.focus_next()

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
            self.reveal(name)
            return
        cfg, _ = self.read()
        self.busy = True
        self.query_one("#form-summary", Static).update("checking the model and queueing…")
        self.submit(cfg)

    @work(thread=True, exclusive=True, group="queue-run", name="queueing the run", exit_on_error=False)
    def submit(self, cfg: RunConfig) -> None:
        """A refusal goes under its field; anything unexpected is the app's worker handler's to show."""
        from backend.service.runs import queue_run
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
        """After an unexpected failure (the app notifies it) the form is usable again; a failed plan or
        estimate says so instead of "computing…"."""
        if event.state.name != "ERROR":
            return
        if event.worker.group == "queue-run":
            self.busy = False
            self.query_one("#form-summary", Static).update("[b red]not queued[/] (see the notification)")
            self.validate()
        elif event.worker.group == "form-advice":
            self.query_one(PlanPanel).show(["no plan: the planner failed (see the notification)"])
            self.estimate_line = "time estimate: not available (see the notification)"
            self.show_advice()

    def _refused(self, exc: GreentuiError) -> None:
        """Put the reason under the field it belongs to (``SettingError.field``), or in the summary."""
        self.busy = False
        field = exc.field if isinstance(exc, SettingError) else None
        reason = exc.reason if isinstance(exc, SettingError) else str(exc)
        if field == "model":
            self.model_error = reason
            self.validate()
        elif field in SETTING:
            self._show_error(field, reason)  # a field in a fold not built yet gets it when revealed
            self.query_one("#queue", Button).disabled = False
        else:
            self.query_one("#form-summary", Static).update(Text.assemble(("not queued:", "b red"), " ",
                                                                         safe_text(reason, 400)))
            self.query_one("#queue", Button).disabled = False
        if field in SETTING:
            self.reveal(field)
        where = f"{SETTING[field].label}: " if field in SETTING else ""
        self.notify(f"not queued — {where}{reason}", severity="error", timeout=10)

    def _queued(self, run_id: int) -> None:
        self.busy = False
        pid = self.app.ensure_runner()
        paused = self.app.store.queue.paused()
        self.notify(f"run {run_id} queued" + (" (the queue is paused: Queue screen, p resumes)" if paused
                                              else f"; runner pid {pid}" if pid else ""))
        self.app.poll_store()
        self.dismiss(run_id)
        self.app.open_run(run_id)
