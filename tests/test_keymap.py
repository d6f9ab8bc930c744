"""Issue #22 3.1 and #19 item 7: one key map for the app. Every key has an id (posting's pattern) and
means one thing on every screen; the workspace's ``greentui.toml`` rebinds keys by id through
Textual's keymap; an unknown id or a key Textual cannot name is one line naming it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import Button, DataTable, Input

from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.keymap import KEYS, SHARED_KEYS, bad_key, check_keymap
from greentui.screens.compare import CompareScreen
from greentui.screens.export_model import ExportModelScreen
from greentui.screens.models import ModelsScreen
from greentui.screens.new_run import NewRunScreen
from greentui.screens.queue import QueueScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.screens.runs import RunsScreen
from greentui.screens.studies import StudiesScreen, StudyScreen
from greentui.widgets.confirm import ConfirmScreen
from greentui.widgets.fold import FoldTitle
from greentui.widgets.keys import HelpScreen, key_rows

from .conftest import pause_until, tiered
from .test_tui import seed

OWNERS = [GreentuiApp, RunsScreen, QueueScreen, ModelsScreen, RunDetailScreen, CompareScreen, NewRunScreen,
          ConfirmScreen, HelpScreen, FoldTitle, StudiesScreen, StudyScreen, ExportModelScreen]


def every_binding() -> list[tuple[type, Binding]]:
    return [(owner, b) for owner in OWNERS for b in owner.BINDINGS if isinstance(b, Binding)]


def test_every_binding_has_an_id_from_the_one_key_map() -> None:
    for owner, b in every_binding():
        assert b.id in KEYS, f"{owner.__name__}: {b.key} → {b.action} has no id in greentui/keymap.py"
        assert b.key == KEYS[b.id].keys, f"{owner.__name__}: {b.id} is bound to {b.key}, the key map says " \
                                         f"{KEYS[b.id].keys}"


def test_a_key_means_one_thing_on_every_screen() -> None:
    """x cancelled on Queue and deleted on Runs; p was Pareto on Runs and Pause on Queue: a key bound under
    two ids must be one of the few that mean the same everywhere (Esc goes back…)."""
    ids_of_key: dict[str, set[str]] = defaultdict(set)
    for _owner, b in every_binding():
        for key in b.key.split(","):
            ids_of_key[key.strip()].add(b.id)
    for key, ids in ids_of_key.items():
        if len(ids) > 1:
            assert ids <= SHARED_KEYS.get(key, set()), f"{key!r} means {sorted(ids)}"
    assert ids_of_key["x"] == {"cancel_run"} and ids_of_key["p"] == {"pareto"} and "quit" in ids_of_key["q"]


def test_keymap_check_names_every_bad_id_and_key() -> None:
    assert check_keymap({"quit": "ctrl+q, q", "cancel_run": "ctrl+x"}) == {"quit": "ctrl+q,q", "cancel_run": "ctrl+x"}
    assert not bad_key("question_mark") and not bad_key("?") and not bad_key("shift+f5") and not bad_key("D")
    assert bad_key("ctrl+nope") and bad_key("hyperdrive+q") and bad_key("") and bad_key("ctrl+ctrl+q")
    with pytest.raises(Exception) as err:
        check_keymap({"quitt": "q", "delete": "ctrl+nope", "help": 5})
    message = str(err.value)
    assert "\n" not in message and "'quitt'" in message and "ctrl+nope" in message and "keys.help" in message


def write_keys(ws: Path, text: str) -> None:
    (ws / "greentui.toml").write_text(text)


@pytest.mark.parametrize("table, needles", [
    ('[keys]\nquitt = "q"\n', ["'quitt'", "unknown key id"]),
    ('[keys]\ncancel_run = "ctrl+nope"\n', ["keys.cancel_run = 'ctrl+nope'", "not a key"]),
    ('keys = "q"\n', ["[keys] must be a table"]),
])
def test_a_bad_keymap_is_one_line_before_the_workbench_opens(cli, workspace, table, needles) -> None:
    Store(db_path(workspace)).close()
    write_keys(workspace, table)
    proc = cli("tui")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert "greentui.toml" in proc.stderr


@pytest.mark.parametrize("size", tiered([(80, 24), (120, 40)], fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_the_workspace_keymap_rebinds_by_id_everywhere(tmp_path: Path, size) -> None:
    """``cancel_run = "ctrl+x"`` moves x's cancel to Ctrl+X on Queue (and every screen that cancels), the
    footer and ? show it, and x does nothing any more; q quits, except where it types."""
    ids = seed(tmp_path)
    write_keys(tmp_path, '[keys]\ncancel_run = "ctrl+x"\n')
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        table = await pause_until(pilot, lambda: app.screen.query(DataTable).first()
                                  if isinstance(app.screen, QueueScreen) else None, timeout=30)
        table.move_cursor(row=table.get_row_index(str(ids["q1"])))
        await pilot.press("x")
        await pilot.pause()
        assert app.store.runs.get(ids["q1"])["status"] == "queued"
        assert ("this screen", "^x", "Cancel run") in [r[:3] for r in key_rows(app.screen)]
        await pilot.press("ctrl+x")
        await pilot.pause()
        assert app.store.runs.get(ids["q1"])["status"] == "cancelled"
        await pilot.press("1", "slash", "q")  # q types into the filter box…
        await pilot.pause()
        assert app.screen.query_one("#filter", Input).value == "q" and app.is_running
        await pilot.press("escape", "q")  # …and quits from the table
        await pilot.pause()
        assert not app.is_running


@pytest.mark.parametrize("size", tiered([(80, 24), (120, 40)], fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_x_cancels_on_runs_too_and_the_dialog_says_what_its_buttons_do(tmp_path: Path, size) -> None:
    import os

    from backend.execution.control import process_start_time

    ids = seed(tmp_path)
    s = Store(db_path(tmp_path))
    s.runs.update(ids["q1"], status="running", pid=os.getpid(), pid_start=process_start_time())  # alive
    s.close()
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=size) as pilot:
        table = await pause_until(pilot, lambda: app.screen.query_one(DataTable).row_count and
                                  app.screen.query_one(DataTable), timeout=30)
        table.move_cursor(row=table.get_row_index(str(ids["q1"])))
        await pilot.press("x")
        await pause_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        assert [str(b.label) for b in app.screen.query(Button)] == ["Keep it running (n)", "Stop the run (y)"]
        await pilot.press("n")
        await pilot.pause()
        assert not app.store.runs.get(ids["q1"])["cancel_requested"]
        await pilot.press("x", "y")
        await pilot.pause()
        assert app.store.runs.get(ids["q1"])["cancel_requested"]
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))  # a finished run: nothing to cancel
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("nothing to cancel" in n.message for n in app._notifications)
        await pilot.press("question_mark")
        await pause_until(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=30)
        help_table = app.screen.query_one(DataTable)
        rows = [[str(c) for c in help_table.get_row_at(i)] for i in range(help_table.row_count)]
        assert ["⏎", "Detail"] == rows[[r[1] for r in rows].index("Detail")][:2]  # what Enter does
        assert all(help_table.region.right <= size[0] for _ in [0])


async def test_keys_typed_while_the_app_closes_do_nothing(tmp_path: Path) -> None:
    """In a terminal, keys typed right after q ("question_mark" typed by mistake) reached the closing app:
    n opened New run half-built (a NoMatches traceback after the exit) and the goodbye printed twice."""
    seed(tmp_path)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.run_action("quit")
        assert await app.run_action("new_run") is False and await app.run_action("quit") is False
        assert len(app._exit_renderables) == 1
