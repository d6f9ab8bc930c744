"""The Studies screens with Pilot on a real store (issue #20): the list, one study's grid and answer,
and the New-study form writing the same file ``greentui study run`` reads. No runner is started."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label, Select, Static

from backend.schema.study import parse
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.new_study import NewStudyScreen
from greentui.screens.studies import StudiesScreen, StudyScreen

from .conftest import pause_until
from .test_studies import known, model, store, study_text  # noqa: F401  (fixtures: the 2×2 study with known results)

SIZE = (120, 40)


def _app(ws: Path) -> GreentuiApp:
    return GreentuiApp(ws, manage_runner=False)


def _cell_texts(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.slow  # fast-tier budget; the same screens: the snapshot walk's studies part (fast)
async def test_the_studies_list_opens_a_study_with_its_grid_and_answer(workspace, store, known):  # noqa: F811
    store.close()
    app = _app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = await pause_until(pilot, lambda: isinstance(app.screen, StudiesScreen) and app.screen)
        rows = _cell_texts(screen.query_one(DataTable))
        assert rows == [["grid", "5/5", "1", rows[0][3]]]
        await pilot.press("enter")
        study = await pause_until(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen)
        grid = _cell_texts(study.query_one("#study-grid", DataTable))
        assert [r[2] for r in grid] == ["vanilla", "taylor 1/7", "taylor 2/7", "l1 1/7", "l1 2/7"]
        assert all(r[4] == "done" for r in grid)
        await pilot.press("o")
        verdict = str(study.query_one("#study-verdict", Static).render())
        assert "cell 4 l1 1/7" in verdict and "Wh ratio 0.850 (n=1)" in verdict
        answer = _cell_texts(study.query_one("#study-answer", DataTable))
        assert [r[3] for r in answer] == ["qualifies", "0.007", "optimal", "0.107"]
        assert answer[2][8] == "2k tokens"
        await pilot.press("t")
        tables = _cell_texts(study.query_one("#study-tables", DataTable))
        assert len(tables) == 10 and tables[1][-1] == "≈1 (inconclusive: 0.992 ±0.031)" and tables[5][-1] == ""
        await pilot.press("escape")
        assert isinstance(app.screen, StudiesScreen)


async def test_the_new_study_form_writes_the_file_study_run_reads(workspace, model):  # noqa: F811
    app = _app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pause_until(pilot, lambda: isinstance(app.screen, StudiesScreen))
        await pilot.press("N")
        form = await pause_until(pilot, lambda: isinstance(app.screen, NewStudyScreen) and app.screen.query("#s-name")
                                 and app.screen)
        form.query_one("#s-name", Input).value = "from-form"
        form.query_one("#s-models", Input).value = model
        form.query_one("#f-limit", Input).value = "3"
        form.query_one("#f-ignore_first", Input).value = "1"
        form.query_one("#f-ignore_last", Input).value = "1"
        await pilot.pause()
        form.query_one("#g-values-1", Input).value = "1/7, 2/x"
        error = form.query_one("#serr-grid-1", Label)
        await pause_until(pilot, lambda: error.display, what="the grid row's error")
        assert "'2/x' is not a ratio" in str(error.render())
        form.query_one("#g-values-1", Input).value = "1/7, 2/7"
        await pause_until(pilot, lambda: not error.display, what="the error to go")
        await pilot.press("ctrl+s")
        await pause_until(pilot, lambda: isinstance(app.screen, StudyScreen), timeout=20)
    path = workspace / "studies" / "from-form.toml"
    spec = parse(path.read_text())
    assert spec.models == [model] and spec.grid == {"importance": ["taylor", "l1"], "prune_ratio": [1 / 7, 2 / 7]}
    assert spec.run["limit"] == 3 and spec.run["ignore_first"] == 1
    with Store(db_path(workspace)) as s:
        study = s.studies.require("from-form")
        assert study["text"] == path.read_text() and len(s.studies.cells(study["id"])) == 5
        assert s.runs.count(statuses=["queued"]) == 5


async def test_the_form_refuses_a_cell_the_schema_refuses_and_records_nothing(workspace, model):  # noqa: F811
    app = _app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(NewStudyScreen())
        form = await pause_until(pilot, lambda: isinstance(app.screen, NewStudyScreen) and app.screen.query("#s-name")
                                 and app.screen)
        form.query_one("#s-name", Input).value = "bad"
        form.query_one("#s-models", Input).value = model
        form.query_one("#g-name-2", Select).value = "limit"
        form.query_one("#g-values-2", Input).value = "5, 0"
        error = form.query_one("#serr-grid-2", Label)
        await pause_until(pilot, lambda: error.display and "cell 2:" in str(error.render()),
                          what="the grid row's error")
        assert "limit must be 1 or more" in str(error.render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert isinstance(app.screen, NewStudyScreen)
    assert not (workspace / "studies").exists()
    with Store(db_path(workspace)) as s:
        assert s.runs.count() == 0 and s.studies.list() == []
