"""Issue #22 items 2.1 and 2.10: a name from outside (an imported lm-eval JSON or table, a folder, an
error message, a log line) is text, never markup or terminal code, on every CLI command and every
screen. The names arrive through the real import (``greentui import``) into a real store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.store import Store
from backend.text import NAME_LIMIT, safe_text
from backend.workspace import db_path

from .conftest import pause_until

CLICK = "[@click=app.quit]CLICKME[/]"
OSC52 = "clip\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07board"
ANSI = "\x1b[31mred\x1b[0m\x1b[2J"
MARKUP = "[bold red]x[/]"
UNBALANCED = "oops[/] [/"
LONG = "L" * 10_000
HOSTILE = [CLICK, OSC52, ANSI, MARKUP, UNBALANCED, LONG]
#: a control character that must never reach a terminal raw (ESC, BEL, CSI, …)
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def lm_eval_file(folder: Path, name: str, index: int) -> Path:
    doc = {"model_name": name,
           "results": {"arc_easy": {"acc,none": 0.5 + index / 100, "acc_stderr,none": 0.01,
                                    "energy_wh": 1.0 + index, "meter": name},
                       "boolq": {"acc,none": 0.6, "acc_stderr,none": 0.01}}}
    path = folder / f"results_{index}.json"
    path.write_text(json.dumps(doc))
    return path


def import_hostile(cli, folder: Path) -> list[int]:
    """Every hostile name imported as an lm-eval run (its model name and its meter)."""
    files = [str(lm_eval_file(folder, name, i)) for i, name in enumerate(HOSTILE)]
    proc = cli("import", *files)
    assert proc.returncode == 0, proc.stderr
    return [int(line) for line in proc.stdout.split()]


def test_safe_text_escapes_controls_and_cuts() -> None:
    assert safe_text("a\x1b[31mb\x07\n") == "a\\x1b[31mb\\x07\\n"
    assert safe_text("x\u202ey") == "x\\u202ey"  # a bidi override reorders what follows: escaped
    assert safe_text("line\nnext", keep_newlines=True) == "line\nnext"
    assert safe_text(MARKUP) == MARKUP  # brackets are left as they are: the caller shows plain text
    cut = safe_text(LONG, NAME_LIMIT)
    assert len(cut) == NAME_LIMIT and cut.endswith("…")
    assert safe_text(None) == ""


def assert_terminal_safe(out: str, where: str) -> None:
    assert not RAW_CONTROL.search(out), f"{where}: a raw control character reached the terminal: {out!r}"[:400]


def test_every_cli_command_prints_hostile_names_as_text(cli, workspace, tmp_path) -> None:
    ids = import_hostile(cli, tmp_path)
    s = Store(db_path(workspace))
    s.runs.update(ids[0], status="failed", error=f"boom {UNBALANCED} {OSC52}")  # an error with both
    s.results.save_metric(ids[1], "vanilla", f"ppl {MARKUP}", 42.0)  # a metric name from outside too
    mid = s.models.upsert(f"/models/{MARKUP}", name=MARKUP)
    queued = s.runs.create(mid, "experiment", {"model": f"/models/{MARKUP}"})  # in show's config JSON
    s.close()
    ls = cli("ls")
    assert ls.returncode == 0, ls.stderr
    assert_terminal_safe(ls.stdout + ls.stderr, "ls")
    assert "Traceback" not in ls.stderr
    flat = "".join(ls.stdout.split())  # the table may wrap a name over lines
    assert "".join(MARKUP.split()) in flat and "[@click=app.quit]" in flat  # shown as written
    assert "\\x1b]52" in flat  # the escape is shown escaped
    assert LONG[:200] not in flat  # cut, with …
    for run_id in ids:
        show = cli("show", str(run_id))
        assert show.returncode == 0, show.stderr
        assert_terminal_safe(show.stdout + show.stderr, f"show {run_id}")
        as_json = cli("show", str(run_id), "--json")
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["run"]["id"] == run_id
        assert_terminal_safe(as_json.stdout, f"show {run_id} --json")
    show = cli("show", str(ids[HOSTILE.index(MARKUP)])).stdout
    assert show.startswith(f"run {ids[HOSTILE.index(MARKUP)]}") and MARKUP in show.splitlines()[0]
    show = cli("show", str(queued)).stdout
    assert f'"model": "/models/{MARKUP}"' in show.split("config:")[-1]  # the config JSON as written
    failed = cli("show", str(ids[0])).stdout
    assert "oops[/] [/" in failed and "\\x1b]52" in failed
    for args in (["models"], ["doctor"], ["cancel", str(ids[0])], ["ls", "--filter", "[/"]):
        proc = cli(*args)
        assert "Traceback" not in proc.stderr, args
        assert_terminal_safe(proc.stdout + proc.stderr, " ".join(args))


def test_a_one_line_error_never_carries_raw_control_characters(cli, workspace) -> None:
    Store(db_path(workspace)).close()
    for args in (["import", f"{workspace}/no{OSC52}.json"], ["models", "rm", OSC52]):
        proc = cli(*args)
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
        assert_terminal_safe(proc.stderr, args[0])
        assert "\\x1b]52" in proc.stderr


def test_run_progress_shows_outside_text_as_text() -> None:
    """``greentui run``'s progress view: a log line, a message or an error with markup or escapes is
    printed as written (it raised MarkupError mid-run)."""
    import io

    from rich.console import Console

    from backend.cli.commands.run import _ProgressView

    out = io.StringIO()
    view = _ProgressView(Console(file=out, force_terminal=True, width=120))
    with view.progress:
        view("stage_start", {"stage": "load"})
        view("progress", {"stage": "load", "fraction": 0.5, "message": f"loading {UNBALANCED}"})
        view("log", {"line": f"{CLICK} {OSC52}"})
        view("result", {"variant": "vanilla", "task": "boolq", "acc": 0.5, "wh": None, "meter": ANSI})
        view("error", {"message": f"{UNBALANCED} {ANSI}"})
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # rich's own colours and cursor moves
    assert "[@click=app.quit]CLICKME[/]" in text and "oops[/] [/" in text
    assert "\\x1b]52" in text and "\x07" not in text and "\x1b]" not in text


@pytest.mark.slow
def test_run_on_a_path_with_markup_ends_done_not_interrupted(cli, workspace, tmp_path, demo_model_dir) -> None:
    """``greentui run`` printed the model path as markup after recording the run `running`: a MarkupError
    traceback, and the run read `interrupted` afterwards. Now the path is text and the run finishes."""
    import shutil

    from backend.schema.tasks import bundled_data_dir

    model = tmp_path / "model [/] x"
    shutil.copytree(demo_model_dir("llama"), model)
    proc = cli("run", str(model), "--no-prune", "--tasks", "boolq", "--limit", "2", "--data-dir",
               str(bundled_data_dir()), "--ppl-limit", "64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "[/] x" in " ".join(proc.stderr.split())  # rich may wrap it
    with Store(db_path(workspace)) as s:
        assert [r["status"] for r in s.runs.list()] == ["done"]


# ------------------------------------------------------------------------------------------ the TUI

FOLDER = "/models/[@click=screen.requeue]requeue-me"


def hostile_store(ws: Path, tmp_path: Path) -> dict[str, int]:
    """The hostile names through the real importer, plus a model folder, a queued and a failed run with
    a log, progress and an error that quote them, and a 10,000-character name with stages to reach."""
    from backend.results.importer import import_files

    s = Store(db_path(ws))
    imported = import_files(s, [lm_eval_file(tmp_path, name, i) for i, name in enumerate(HOSTILE)])
    folder = s.models.upsert(FOLDER, name=FOLDER)
    long_model = s.models.upsert("/models/long", name=LONG)
    cfg = {"model": FOLDER, "tasks": ["boolq"]}
    failed = s.runs.create(folder, "experiment", cfg, status="running")
    for kind, payload in [("stage_start", {"stage": "load"}),
                          ("log", {"line": f"loading {CLICK} {OSC52} {ANSI}"}),
                          ("progress", {"stage": "load", "fraction": 0.5, "message": f"{UNBALANCED} {MARKUP}"}),
                          ("error", {"message": f"boom {UNBALANCED} {OSC52}"})]:
        s.events.add(failed, kind, payload)
    s.runs.finish(failed, "failed", f"boom {UNBALANCED} {OSC52}")
    queued = s.runs.create(folder, "experiment", cfg)
    long_run = s.runs.create(long_model, "experiment", {"model": "/models/long", "tasks": ["boolq"]}, status="done")
    s.close()
    return {"imported": imported, "failed": failed, "queued": queued, "long": long_run,
            "click": imported[HOSTILE.index(CLICK)]}


def terminal_output(app) -> tuple[str, set[str]]:
    """What the screen would write to the terminal (escape sequences included), and the actions of
    every clickable cell on it."""
    import io

    from rich.console import Console

    width, height = app.size
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    actions = {str(seg.style.meta.get("@click")) for line in update.strips for strip in line for seg in strip
               if seg.style is not None and seg.style.meta and "@click" in seg.style.meta}
    return update.render_segments(console), actions


def assert_screen_safe(app, where: str) -> str:
    from tests.snapshot import screen_text

    raw, actions = terminal_output(app)
    # what Textual itself writes: colours (SGR), cursor moves; anything else came from the data
    leftover = re.sub(r"\x1b\[[0-9;:]*[mHJK]|\x1b\[\?[0-9;]*[hl]", "", raw)
    assert not RAW_CONTROL.search(leftover.replace("\n", "")), f"{where}: raw control characters reach the terminal"
    assert not any("quit" in a or "requeue" in a for a in actions), f"{where}: outside text became a link {actions}"
    return screen_text(app)


@pytest.mark.parametrize("size, every", [((80, 24), False), pytest.param((120, 40), True, marks=pytest.mark.slow)])
async def test_every_screen_shows_hostile_names_as_text(workspace, tmp_path, size, every) -> None:
    """Runs (and its filter box), Queue, Models (each model's details), Run detail, Compare's tabs, New
    run and a toast with the hostile names: nothing crashes, no name becomes a link, no control
    character reaches the terminal, a long name leaves the stages on screen. The fast tier opens the
    runs that differ (a markup name, the failed run, the long name); the slow one every run and tab."""
    from textual.widgets import DataTable, Input

    from greentui.app import GreentuiApp

    ids = hostile_store(workspace, tmp_path)
    app = GreentuiApp(workspace, manage_runner=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        text = assert_screen_safe(app, "Runs")
        assert "[@click" in text and LONG[:300] not in text
        await pilot.press("slash")
        await pilot.press("left_square_bracket", "slash")  # "[/" in the filter box crashed the TUI
        await pilot.pause()
        assert app.screen.query_one("#filter", Input).value == "[/"
        assert_screen_safe(app, "Runs filtered by [/")
        await pilot.press("escape")
        await pilot.pause()
        for key, name in (("2", "Queue"), ("3", "Models")):
            await pilot.press(key)
            await pilot.pause()
            assert_screen_safe(app, name)
        table = app.screen.query_one(DataTable)
        for row in range(table.row_count):  # each model's details pane
            table.move_cursor(row=row)
            await pilot.pause()
            assert_screen_safe(app, f"Models row {row}")
        await pilot.press("1")
        runs = [*ids["imported"], ids["queued"]] if every else []
        for run_id in [*runs, ids["click"], ids["failed"], ids["long"]]:
            app.open_run(run_id)
            await pause_until(pilot, lambda: app.screen.query("#stages > *") and app.screen.query_one("#run-title")
                              .render().plain, what=f"run {run_id}'s stages", timeout=30)
            await pilot.pause()
            text = assert_screen_safe(app, f"Run detail {run_id}")
            if run_id == ids["long"]:
                assert "load" in text and "evaluate" in text, "a long name hid the stages"
            if run_id == ids["failed"]:
                assert "boom oops[/] [/" in text.replace("\n", "") or "oops[/]" in text
            app.pop_screen()
        app.open_compare([ids["click"]])
        await pilot.pause(0.1)
        for tab in ("radar", "bars", "table", "pareto", "energy") if every else ("table", "energy"):
            app.screen.action_tab(tab)
            await pilot.pause(0.1)
            assert_screen_safe(app, f"Compare {tab}")
        app.pop_screen()
        app.action_new_run(model=FOLDER)  # the plan panel and errors quote the folder
        await pilot.pause(0.3)
        assert_screen_safe(app, "New run")
        app.notify(f"a toast quoting {CLICK} and {OSC52}")
        await pilot.pause()
        assert_screen_safe(app, "a toast")
        assert app.is_running and app.return_code is None
