"""New study: the New-run form plus a name, the models and the swept settings; it writes the study file.

The same form as New run (every field from the run schema, folds, inline checks, the plan panel for
the first model): those fields are the study's ``[run]`` (only the values that differ from the
study's defaults are written). Above them: the study's name, its models (comma-separated) and up to
three swept settings, each a setting and its values (comma-separated: ``taylor, l1``; ``1/7, 2/7``).
Queueing writes ``<workspace>/studies/<name>.toml`` — the very file ``greentui study run`` takes
(``backend.schema.study.dump``) — parses it back with the CLI's rules (a refusal goes under the
field it names: ``grid.prune_ratio`` under that swept row, ``run.limit`` under the limit field) and
runs it with the service layer, then opens the Study screen.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Select, Static

from backend.errors import GreentuiError
from backend.schema.runconfig import SETTING, SETTINGS, RunConfig
from backend.schema.settings import parse_list
from backend.schema.study import StudyError, dump, parse, setting_for

from .new_run import NewRunScreen

#: settings that can be swept from the form: scalar run settings (lists and placement stay fixed)
SWEEPABLE = tuple(s.name for s in SETTINGS if s.type != "list" and s.group not in ("model", "executor")
                  and s.name not in ("trust_remote_code",))
GRID_ROWS = 3
DEFAULT_GRID = (("importance", "taylor, l1"), ("prune_ratio", "1/7, 2/7"))


class NewStudyScreen(NewRunScreen):
    """The New-study form; Escape goes back without writing anything."""

    AUTO_FOCUS = "#s-name"
    OMITTED = ("model",)
    QUEUE_LABEL = "Write and run (Ctrl+S)"

    def __init__(self) -> None:
        super().__init__()
        self.study_errors: dict[str, str] = {}

    def starting_point(self) -> tuple[RunConfig, list[tuple[str, str]], str]:
        """The study recipe (never the last run's config: a study states its own [run])."""
        from backend.service.form_advice import PRESETS
        return self.study_recipe(), [(label, name) for name, label in PRESETS.items()], "study"

    # ------------------------------------------------------------------ layout
    def form_head(self, choices: list[tuple[str, str]], chosen: str) -> ComposeResult:
        yield Static("[b]New study[/b] — a grid of runs: each model × every combination of the swept values. "
                     "The fields below are the settings every cell shares. Ctrl+S writes the study file and "
                     "queues the cells.", id="form-title")
        yield from self._row("study name", Input("", placeholder="letters, digits, - _ . (the study's handle)",
                                                 id="s-name", classes="field-input"), "name")
        suggest = SuggestFromList(self.known, case_sensitive=False)
        yield from self._row("models", Input("", placeholder="HF ids or local folders, comma-separated",
                                             id="s-models", classes="field-input", suggester=suggest), "models")
        yield Static("swept settings [dim]— values comma-separated; each combination is a cell[/]",
                     classes="form-group")
        options = [(SETTING[n].label, n) for n in SWEEPABLE]
        for i in range(GRID_ROWS):
            name, values = DEFAULT_GRID[i] if i < len(DEFAULT_GRID) else (Select.NULL, "")
            with Horizontal(classes="field"):
                yield Select(options, value=name, allow_blank=True, prompt="(none)", id=f"g-name-{i}",
                             classes="grid-setting")
                yield Input(values, placeholder="e.g. 1/7, 2/7", id=f"g-values-{i}", classes="field-input")
            yield self._error(f"grid-{i}")
        yield Static("every cell's settings", classes="form-group")
        yield from self.preset_row(choices, chosen)

    def _row(self, label: str, widget: Any, key: str) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label, classes="field-label")
            yield widget
        yield self._error(key)

    def _error(self, key: str) -> Label:
        error = Label("", id=f"serr-{key}", classes="error field-error")
        error.display = False
        return error

    # ------------------------------------------------------------------ reading
    def models(self) -> list[str]:
        return [m.strip() for m in self.query_one("#s-models", Input).value.split(",") if m.strip()]

    def grid(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i in range(GRID_ROWS):
            name = self.query_one(f"#g-name-{i}", Select).value
            if name is Select.NULL or not isinstance(name, str):
                continue
            out[name] = parse_list(self.query_one(f"#g-values-{i}", Input).value.replace(" ", ","))
        return out

    def study_text(self) -> str:
        """The study file the form describes (TOML, what ``greentui study run`` reads)."""
        cfg, _ = self.read()
        grid = self.grid()
        defaults = RunConfig().to_dict()
        run = {k: v for k, v in cfg.to_dict().items()
               if k not in ("model", *grid) and v != defaults.get(k)}
        name = self.query_one("#s-name", Input).value.strip()
        return dump(name, self.models(), grid, run)

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, str]:
        """The run fields' checks (on the first model) plus the study's own: name, models, grid."""
        models = self.models() if self.is_mounted else []
        self.held["model"] = models[0] if models else ""
        problems = super().validate()
        problems.pop("model", None)
        self.study_errors = self.check_study() if self.is_mounted else {}
        for key in ("name", "models", *[f"grid-{i}" for i in range(GRID_ROWS)]):
            self._show_study_error(key, self.study_errors.get(key, ""))
        problems.update({f"study:{k}": v for k, v in self.study_errors.items()})
        self.query_one("#queue").disabled = bool(problems) or self.busy
        if problems and all(k.startswith("study:") for k in problems):
            self.query_one("#form-summary", Static).update(f"{len(problems)} study field(s) to fix")
        return problems

    def check_study(self) -> dict[str, str]:
        """Where the study file would be refused: form key -> reason (the CLI's own parser decides)."""
        if not self.models():
            return {"models": "list one or more models (HF ids or local folders)"}
        try:
            parse(self.study_text(), source="the form")
        except StudyError as exc:
            return {self.form_key(exc.key): exc.reason + (f" (cell {exc.cell.index}: {exc.cell.description})"
                                                          if exc.cell is not None else "")}
        except GreentuiError as exc:
            return {"name": str(exc)}
        return {}

    def form_key(self, key: str) -> str:
        """``study.name`` → name, ``grid.prune_ratio[2]`` → the grid row of prune_ratio, ``run.x`` → x."""
        table, _, rest = key.partition(".")
        rest = rest.split("[", 1)[0].split(" ", 1)[0]
        if table == "study":
            return "models" if rest == "models" else "name"
        if table == "grid":
            for i in range(GRID_ROWS):
                if self.query_one(f"#g-name-{i}", Select).value == setting_for(rest):
                    return f"grid-{i}"
        name = setting_for(rest) or rest
        return name if name in SETTING else "name"

    def _show_study_error(self, key: str, reason: str) -> None:
        if key in SETTING:
            self._show_error(key, reason)
            return
        label = self.query_one(f"#serr-{key}", Label)
        label.update(reason)
        label.display = bool(reason)

    def _state(self) -> tuple:
        study = tuple(w.value for w in self.query("#s-name, #s-models, .grid-setting, Input"))
        return (super()._state(), study)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id and event.select.id.startswith("g-name-"):
            self.changed()
            return
        super().on_select_changed(event)

    # ------------------------------------------------------------------ queueing
    def action_queue(self) -> None:
        if self.busy:
            return
        problems = self.validate()
        if problems:
            key = next(iter(problems))
            what = key.removeprefix("study:")
            label = SETTING[what].label if what in SETTING else what.replace("-", " ")
            self.notify(f"not written — {label}: {problems[key]}", severity="error")
            if what in SETTING:
                self.reveal(what)
            return
        self.busy = True
        self.query_one("#form-summary", Static).update("writing the study file and queueing its cells…")
        self.submit_study(self.study_text())

    @work(thread=True, exclusive=True, group="queue-run", name="queueing the study", exit_on_error=False)
    def submit_study(self, text: str) -> None:
        from backend.service.studies import save_study_file
        store = self.app.open_store()
        try:
            path, done = save_study_file(self.app.workspace, store, text, start=False)
        except StudyError as exc:
            self.app.call_from_thread(self._study_refused, exc)
            return
        except GreentuiError as exc:
            self.app.call_from_thread(self._refused, exc)
            return
        finally:
            store.close()
        self.app.call_from_thread(self._study_queued, path, done)

    def _study_refused(self, exc: StudyError) -> None:
        self.busy = False
        key = self.form_key(exc.key)
        self._show_study_error(key, exc.reason)
        self.query_one("#queue").disabled = False
        self.notify(f"not queued — {exc}", severity="error", timeout=10)

    def _study_queued(self, path, done) -> None:
        from .studies import StudyScreen
        self.busy = False
        pid = self.app.ensure_runner()
        name = parse(path.read_text()).name
        self.notify(f"study {name}: wrote {path}, queued {len(done.queued)} run(s)"
                    + (f"; runner pid {pid}" if pid else ""), timeout=10)
        self.app.poll_store()
        self.dismiss(None)
        self.app.push_screen(StudyScreen(name))
