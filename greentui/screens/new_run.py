"""New run: a form with the study's defaults, validated inline as you type, queued with Enter.

Validation is ``RunConfig.problems()`` — the same rules as ``greentui run/queue`` — plus the model
check of ``prepare_run`` (an unknown path or id is refused with its reason under the field). Queueing
runs ``prepare_run`` in a thread worker with its own connection, then starts the detached runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, SelectionList, Static

from backend.errors import GreentuiError
from backend.runconfig import DEVICES, IMPORTANCES, STUDY_TASKS, RunConfig

D = RunConfig()
# (field, label, default text, hint)
TEXT_FIELDS: list[tuple[str, str, str, str]] = [
    ("prune_ratio", "prune ratio", "2/7", "fraction of parameters to remove, e.g. 2/7 or 0.25"),
    ("ignore_first", "ignore first", str(D.ignore_first), "leading layers kept whole"),
    ("ignore_last", "ignore last", str(D.ignore_last), "trailing layers kept whole"),
    ("round_to", "round widths to", str(D.round_to), "keep head/channel counts multiples of this"),
    ("calib_samples", "calibration samples", str(D.calib_samples), "Taylor importance batches"),
    ("calib_seq_len", "calibration length", str(D.calib_seq_len), "tokens per calibration sample"),
    ("lora_r", "LoRA r", str(D.lora_r), "rank"),
    ("lora_alpha", "LoRA α", str(D.lora_alpha), "scaling"),
    ("lora_steps", "LoRA steps", str(D.lora_steps), "optimizer steps; empty when epochs are given"),
    ("lora_epochs", "LoRA epochs", "", "passes over the data instead of steps; empty = use steps"),
    ("lora_lr", "LoRA learning rate", f"{D.lora_lr:g}", "AdamW peak learning rate"),
    ("lora_batch_size", "LoRA batch", str(D.lora_batch_size), "examples per optimizer step"),
    ("lora_cutoff_len", "LoRA cutoff", str(D.lora_cutoff_len), "tokens per training example"),
    ("limit", "limit", "", "items per task; empty = whole split"),
    ("num_fewshot", "few-shot", str(D.num_fewshot), "examples in the prompt"),
    ("batch_size", "eval batch", D.batch_size, "'auto' or an integer"),
    ("data_dir", "data dir", "", "local DIR/<task>.jsonl (offline); empty = lm-eval's datasets"),
    ("ppl_limit", "perplexity tokens", str(D.ppl_limit), "WikiText-2 tokens; 0 skips"),
]
INT_FIELDS = {"ignore_first", "ignore_last", "round_to", "calib_samples", "calib_seq_len", "lora_r", "lora_alpha",
              "lora_steps", "lora_batch_size", "lora_cutoff_len", "limit", "num_fewshot", "ppl_limit"}
FLOAT_FIELDS = {"lora_epochs", "lora_lr"}
OPTIONAL = {"limit", "lora_steps", "lora_epochs", "ppl_limit", "data_dir"}


def parse_ratio(text: str) -> float:
    text = text.strip()
    if "/" in text:
        a, b = text.split("/", 1)
        return float(a) / float(b)
    return float(text)


class NewRunScreen(Screen):
    """The New-run form; Escape goes back without queueing."""

    BINDINGS = [
        Binding("ctrl+s", "queue", "Queue", priority=True, tooltip="Queue the run (Enter in a field too)"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "reset", "Study defaults", tooltip="Reset every field to the study's defaults"),
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.initial_model = model or ""
        self.model_error: str | None = None
        self.busy = False

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        known = [m["ref"] for m in self.app.store.list_models()]
        with VerticalScroll(id="form"):
            yield Static("[b]New run[/b] — defaults are the GreenPruning study's "
                         "(Taylor 2/7, ignore 4/4, LoRA r8/α16, seven tasks). Enter queues.", id="form-title")
            with Horizontal(classes="field"):
                yield Label("model", classes="field-label")
                with Vertical(classes="field-input"):
                    yield Input(self.initial_model, placeholder="HF id (org/name) or local model directory",
                                id="f-model", suggester=SuggestFromList(known, case_sensitive=False))
                    yield Label("", id="err-model", classes="error")
            with Horizontal(classes="field"):
                yield Label("method", classes="field-label")
                with Vertical(classes="field-input"):
                    yield Select([(i, i) for i in IMPORTANCES], value=D.importance, allow_blank=False,
                                 id="f-importance")
                    yield Label("", id="err-importance", classes="error")
            with Horizontal(classes="field"):
                yield Label("stages", classes="field-label")
                with Horizontal(classes="field-input checks"):
                    yield Checkbox("prune", True, id="f-prune")
                    yield Checkbox("LoRA recovery", True, id="f-lora")
            for name, label, default, hint in TEXT_FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    with Vertical(classes="field-input"):
                        yield Input(default, placeholder=hint, id=f"f-{name}", tooltip=hint)
                        yield Label("", id=f"err-{name}", classes="error")
            with Horizontal(classes="field"):
                yield Label("tasks", classes="field-label")
                with Vertical(classes="field-input"):
                    yield SelectionList[str](*[(t, t, True) for t in STUDY_TASKS], id="f-tasks")
                    yield Label("", id="err-tasks", classes="error")
            with Horizontal(classes="field"):
                yield Label("device", classes="field-label")
                with Vertical(classes="field-input"):
                    yield Select([(d, d) for d in DEVICES], value=D.device, allow_blank=False, id="f-device")
                    yield Label("", id="err-device", classes="error")
            with Horizontal(id="form-buttons"):
                yield Button("Queue (Enter)", id="queue", variant="primary")
                yield Button("Back (Esc)", id="back")
            yield Static("", id="form-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-model", Input).focus()
        self.validate()

    # ------------------------------------------------------------------ reading the form
    def value(self, name: str) -> str:
        return self.query_one(f"#f-{name}", Input).value.strip()

    def read(self) -> tuple[RunConfig, dict[str, str]]:
        """The config the form describes, and field → reason for values that do not parse."""
        bad: dict[str, str] = {}
        data: dict[str, Any] = {"model": self.value("model")}
        try:
            data["prune_ratio"] = parse_ratio(self.value("prune_ratio"))
        except (ValueError, ZeroDivisionError):
            bad["prune_ratio"] = f"{self.value('prune_ratio')!r} is not a ratio (e.g. 0.25 or 2/7)"
        for name in INT_FIELDS:
            text = self.value(name)
            if not text and name in OPTIONAL:
                data[name] = None
                continue
            try:
                data[name] = int(text)
            except ValueError:
                bad[name] = f"{text!r} is not a whole number"
        for name in FLOAT_FIELDS:
            text = self.value(name)
            if not text and name in OPTIONAL:
                data[name] = None
                continue
            try:
                data[name] = float(text)
            except ValueError:
                bad[name] = f"{text!r} is not a number"
        if data.get("ppl_limit") == 0:
            data["ppl_limit"] = None
        data["batch_size"] = self.value("batch_size") or "auto"
        data["data_dir"] = self.value("data_dir") or None
        data["importance"] = self.query_one("#f-importance", Select).value
        data["device"] = self.query_one("#f-device", Select).value
        data["no_prune"] = not self.query_one("#f-prune", Checkbox).value
        data["no_lora"] = not self.query_one("#f-lora", Checkbox).value
        data["tasks"] = list(self.query_one("#f-tasks", SelectionList).selected)
        cfg = RunConfig(**data)  # a field that does not parse keeps its default; its reason is in bad
        if data["data_dir"] and not Path(data["data_dir"]).expanduser().is_dir():
            bad["data_dir"] = f"no such directory: {data['data_dir']}"
        return cfg, bad

    def validate(self) -> dict[str, str]:
        """Show every problem under its field; return them (empty = the form is valid)."""
        cfg, bad = self.read()
        problems = {**cfg.problems(), **bad}
        if self.model_error and "model" not in problems:
            problems["model"] = self.model_error
        for label in self.query("Label.error"):
            name = (label.id or "")[4:]
            reason = problems.get(name, "")
            label.update(reason)
            label.display = bool(reason)
        # problems of fields without their own label, if any
        orphans = {k: v for k, v in problems.items() if not self.query(f"#err-{k}")}
        summary = cfg.summary() if not problems else (
            f"{len(problems)} field(s) to fix" + ("".join(f"\n{k}: {v}" for k, v in orphans.items())))
        self.query_one("#form-summary", Static).update(summary)
        self.query_one("#queue", Button).disabled = bool(problems) or self.busy
        return problems

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "f-model":
            self.model_error = None
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
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
        for name, _, default, _ in TEXT_FIELDS:
            self.query_one(f"#f-{name}", Input).value = default
        self.query_one("#f-importance", Select).value = D.importance
        self.query_one("#f-device", Select).value = D.device
        self.query_one("#f-prune", Checkbox).value = True
        self.query_one("#f-lora", Checkbox).value = True
        self.query_one("#f-tasks", SelectionList).select_all()
        self.validate()

    def action_queue(self) -> None:
        if self.busy:
            return
        problems = self.validate()
        if problems:
            name = next(iter(problems))
            self.notify(f"not queued — {name}: {problems[name]}", severity="error")
            widget = self.query(f"#f-{name}")
            if widget:
                widget.first().focus()
            return
        cfg, _ = self.read()
        self.busy = True
        self.query_one("#form-summary", Static).update("checking the model and queueing…")
        self.submit(cfg)

    @work(thread=True, exclusive=True, group="queue-run")
    def submit(self, cfg: RunConfig) -> None:
        from backend.commands.run_options import prepare_run
        store = self.app.open_store()
        try:
            run_id = prepare_run(store, cfg, status="queued")
        except GreentuiError as exc:
            self.app.call_from_thread(self._refused, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user, never crashes the UI
            self.app.call_from_thread(self._refused, f"{type(exc).__name__}: {exc}")
            return
        finally:
            store.close()
        self.app.call_from_thread(self._queued, run_id)

    def _refused(self, reason: str) -> None:
        self.busy = False
        model_problem = any(w in reason.lower() for w in ("model", "directory", "hugging face", "config.json",
                                                          "causal lm", "hub"))
        field = "model" if model_problem and "--data-dir" not in reason else None
        if "--data-dir" in reason or "data dir" in reason.lower():
            field = "data_dir"
        if field == "model":
            self.model_error = reason
            self.validate()
            self.query_one("#f-model", Input).focus()
        elif field:
            label = self.query_one(f"#err-{field}", Label)
            label.update(reason)
            label.display = True
            self.query_one("#queue", Button).disabled = False
        else:
            self.query_one("#form-summary", Static).update(f"[b red]not queued:[/] {reason}")
            self.query_one("#queue", Button).disabled = False
        self.notify(f"not queued: {reason}", severity="error", timeout=10)

    def _queued(self, run_id: int) -> None:
        self.busy = False
        pid = self.app.ensure_runner()
        paused = self.app.store.queue_paused()
        self.notify(f"run {run_id} queued" + (" (the queue is paused: Queue screen, p resumes)" if paused
                                              else f"; runner pid {pid}" if pid else ""))
        self.app.poll_store()
        self.dismiss(run_id)
        self.app.open_run(run_id)
