"""The workbench's one key map: every key the app binds, declared once with an id, as data.

Why one table: a key must mean one thing wherever it works (``x`` cancels a run on Runs, Queue and
Run detail; ``p`` is Pareto on Runs and in Compare; ``q`` quits), and a screen's ``BINDINGS`` are
built from this table (:func:`binding`), so two screens cannot drift apart. Each binding carries an
id (posting's pattern, ``Binding(..., id=...)``): the user's keymap in the workspace's
``greentui.toml`` rebinds by id through Textual's keymap support (``App.set_keymap``)::

    [keys]
    quit = "ctrl+q,q"
    cancel_run = "ctrl+x"

One id may sit on several screens (``cancel_run`` on three): rebinding it rebinds it everywhere.
:func:`check_keymap` refuses an unknown id or a key Textual cannot name, in one line, before the
app starts; ``tests/test_keymap.py`` holds the rule that a key means one thing across screens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

from backend.errors import GreentuiError
from backend.schema.catalog import DEMO_DURATION


@dataclass(frozen=True)
class Key:
    """One meaning: its id (for the keymap), default keys, default action, and what ``?`` says."""

    id: str
    keys: str
    action: str
    description: str
    tooltip: str = ""
    show: bool = True


_KEYS = [
    # everywhere (GreentuiApp)
    Key("help", "question_mark,f1", "help", "Help", "Every key of this screen and the app (Esc closes)"),
    Key("runs", "1", "go('runs')", "Runs", "All runs with their averages and ratios"),
    Key("queue", "2", "go('queue')", "Queue", "Queued and running runs"),
    Key("models", "3", "go('models')", "Models", "Models in the workspace and HF cache"),
    Key("studies", "4", "go('studies')", "Studies", "Studies: grids of runs, their progress and their answer"),
    Key("quit", "ctrl+q,q", "quit", "Quit", "Close greentui; queued and running runs go on in the runner "
        "(q types into a text field, Ctrl+Q works there too)"),
    Key("new_run", "n", "new_run", "New run", "Open the New-run form (on Models: with the highlighted model)"),
    Key("demo", "d", "demo", "Demo", f"Queue a demo run of the tiny trained demo model ({DEMO_DURATION})"),
    # on a run, or on the selected runs (Runs, Queue, Run detail)
    Key("open", "enter", "open", "Detail", "Open the highlighted run's detail", show=False),
    Key("compare", "c", "compare", "Compare", "Compare the selected runs (or the run vs its baseline)"),
    Key("cancel_run", "x", "cancel_run", "Cancel run", "Cancel a queued run, or stop a running one (asks "
        "first); finished tasks are kept"),
    Key("delete", "delete,D", "delete", "Delete", "Delete the selected runs with their folders (asks first)"),
    Key("requeue", "R", "requeue", "Re-queue", "Queue the run(s) again with the same config"),
    Key("clone", "f", "clone", "Clone", "Open New run filled with this run's config"),
    Key("export_model", "E", "export_model", "Export model", "Write the run's pruned model for stock "
        "transformers, pipelines, lm-eval or vLLM (greentui export-model)"),
    Key("pareto", "p", "pareto", "Pareto", "Average accuracy vs average Wh of the model's runs"),
    # Runs
    Key("select", "space", "toggle_select", "Select", "Select or unselect the highlighted run (the cursor "
        "stays; ↓ moves on)"),
    Key("sort", "s", "sort", "Sort", "Sort by the next column (the header shows ▼/▲)"),
    Key("reverse", "S", "reverse", "Reverse", "Reverse the sort order"),
    Key("filter", "slash", "filter", "Filter", "Filter runs by model, status, method, kind, id…"),
    Key("next_page", "right_square_bracket", "page(1)", "Next page", "The next 100 runs", show=False),
    Key("prev_page", "left_square_bracket", "page(-1)", "Prev page", "The previous 100 runs", show=False),
    Key("clear", "escape", "clear", "Clear", "Clear the filter, then the selection", show=False),
    # Queue
    Key("move_up", "K,shift+up", "move(-1)", "Move up", "Run this one earlier"),
    Key("move_down", "J,shift+down", "move(1)", "Move down", "Run this one later"),
    Key("pause_queue", "P", "toggle_pause", "Pause/resume", "Pause the queue (the running run finishes) or "
        "resume it"),
    # Models
    Key("add_model", "a", "add", "Add model", "Add a model by HF id or local path (→ takes the completion of a path)"),
    # Run detail, Compare, New run, Models' add box
    Key("back", "escape", "back", "Back", "Back to the screen before (Compare: first closes the details)"),
    # Compare
    Key("details", "i", "details", "Details", "Show or hide the full header: each run's measurement quality "
        "(meter, shortest window, idle, repeats CV, temperature drift, device sharing), merged baselines, "
        "perplexity and notes (folded into two lines below 100 columns)"),
    Key("tab_radar", "r", "tab('radar')", "Radar", "Radar of accuracy and Wh per task"),
    Key("tab_bars", "b", "tab('bars')", "Bars", "Grouped bars per task with ±stderr"),
    Key("tab_table", "t", "tab('table')", "Table", "Ratio table and which differences are noise (↑↓←→ "
        "scroll it)"),
    Key("tab_energy", "e", "tab('energy')", "Energy", "Energy per task, paper vs yours, J/token"),
    Key("swap_chart", "w", "swap_chart", "Acc/Wh", "Narrow terminals show one radar/bar chart at a time: "
        "switch between accuracy and energy"),
    # New run
    Key("queue_run", "ctrl+s", "queue", "Queue", "Queue the run (Enter in a field only moves to the next "
        "field)"),
    Key("reset_form", "ctrl+r", "reset", "Study defaults", "Reset every field to the study's defaults"),
    # Studies and one study
    Key("new_study", "N", "new_study", "New study", "Write a study file (models × swept settings) and queue "
        "its cells"),
    Key("tab_grid", "g", "tab('grid')", "Grid", "Each cell's state, stage and result so far"),
    Key("tab_answer", "o", "tab('answer')", "Answer", "The energy-optimal cell under the accuracy floor, what "
        "pruning and LoRA cost, when it pays back, the crossover batch"),
    Key("next_model", "m", "next_model", "Model", "Show the next model of the study in Radar and Bars"),
    Key("write_report", "W", "report", "Report", "Write the study's report (Markdown, SVG/PNG figures, CSV and "
        "LaTeX tables) into the workspace's studies folder"),
    # the help screen, a New-run group's title
    Key("close_help", "escape,question_mark,f1", "dismiss", "Close", "Close the help", show=False),
    Key("toggle_fold", "enter", "toggle", "Open/close the group", "Open or close a group of settings",
        show=False),
    # a yes/no dialog
    Key("yes", "y", "answer(True)", "Yes", "Do what the highlighted button says"),
    Key("no", "n,escape", "answer(False)", "No", "Leave things as they are"),
]
KEYS: dict[str, Key] = {k.id: k for k in _KEYS}
assert len(KEYS) == len(_KEYS), "two keys share an id"

#: keys bound under several ids that mean the same thing wherever they work: Esc closes or goes back,
#: Enter opens what is under the cursor, ? and F1 toggle the help; and a dialog's n, which answers No
#: there (the dialog covers the screens where n is New run)
SHARED_KEYS = {"escape": {"clear", "back", "no", "close_help"}, "enter": {"open", "toggle_fold"},
               "question_mark": {"help", "close_help"}, "f1": {"help", "close_help"}, "n": {"new_run", "no"}}


def binding(id: str, action: str | None = None, *, description: str | None = None, show: bool | None = None,
            priority: bool = False, group: Binding.Group | None = None) -> Binding:
    """The ``Binding`` of key ``id`` (its keys, description and tooltip from :data:`KEYS`); ``action``
    when the screen's action has another name."""
    k = KEYS[id]
    return Binding(k.keys, action or k.action, description or k.description, show=k.show if show is None else show,
                   tooltip=k.tooltip, id=id, priority=priority, group=group)


# ---------------------------------------------------------------------------------- the user's keymap

_MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}


def _key_names() -> set[str]:
    """Every key name Textual knows without its modifiers (``escape``, ``f5``, ``question_mark``…)."""
    from textual.keys import Keys, _character_to_key

    names = {k.value.rsplit("+", 1)[-1] for k in Keys if not k.value.startswith("<")}
    names |= {chr(c) for c in range(33, 127)} | {_character_to_key(chr(c)) for c in range(33, 127)}
    return names


def bad_key(key: str, names: set[str] | None = None) -> bool:
    """Whether ``key`` (one key, ``ctrl+shift+x``) is not a key Textual can name."""
    parts = key.strip().split("+")
    *modifiers, name = parts
    if not name or len(set(modifiers)) != len(modifiers) or not set(modifiers) <= _MODIFIERS:
        return True
    return name not in (names if names is not None else _key_names())


def check_keymap(keymap: Mapping[str, object], where: str | Path = "greentui.toml") -> dict[str, str]:
    """The keymap ``{id: "key,key"}`` checked: every id known, every key nameable. Raises a one-line
    ``GreentuiError`` naming each bad id and key; returns the keymap as Textual takes it."""
    names = _key_names()
    unknown = [i for i in keymap if i not in KEYS]
    not_text = [i for i, v in keymap.items() if i in KEYS and not isinstance(v, str)]
    bad = [(i, k) for i, v in keymap.items() if i in KEYS and isinstance(v, str)
           for k in (v.split(",") if v.strip() else [""]) if bad_key(k, names)]
    problems = []
    if unknown:
        problems.append("unknown key id(s) " + ", ".join(repr(i) for i in unknown)
                        + " (known: " + ", ".join(KEYS) + ")")
    if not_text:
        problems.append(", ".join(f"keys.{i}" for i in not_text) + " must be a string like \"ctrl+q,q\"")
    if bad:
        problems.append("not a key: " + ", ".join(f"keys.{i} = {k.strip()!r}" for i, k in bad))
    if problems:
        from backend.text import safe_text
        raise GreentuiError(safe_text(f"{where}: [keys] " + "; ".join(problems), 600))
    return {i: ",".join(k.strip() for k in str(v).split(",")) for i, v in keymap.items()}
