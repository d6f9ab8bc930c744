"""The workbench UI with Pilot on a real (seeded) store: every screen, its keys and its refusals.

These tests never start the detached runner (``manage_runner=False``); tests/test_tui_e2e.py does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, RichLog, SelectionList, Static

from backend.schema.runconfig import STUDY_TASKS, RunConfig
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.compare import CompareScreen, noise_verdicts
from greentui.screens.models import ModelsScreen
from greentui.screens.new_run import NewRunScreen
from greentui.screens.queue import QueueScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.screens.runs import PAGE, RunsScreen
from greentui.widgets.bars import GroupedBars, ScatterPareto
from greentui.widgets.confirm import ConfirmScreen
from greentui.widgets.power import PowerPanel
from greentui.widgets.radar import RadarChart

from .conftest import pause_until

REPO = Path(__file__).resolve().parent.parent
SIZE = (160, 48)
ACC = {"arc_challenge": 0.30, "arc_easy": 0.55, "boolq": 0.62, "hellaswag": 0.41, "piqa": 0.70,
       "openbookqa": 0.28, "winogrande": 0.52}



def ratio_value(cell: str) -> float:
    """The value of a ratio cell, which always carries its interval or says it has none
    (``0.85±.05``, ``0.700 (n=1)``, ``0.70 n=1``; tests/test_ratios.py holds the forms)."""
    assert "±" in cell or "n=1" in cell, cell
    return float(cell.split("±")[0].split()[0])

def results(scale_acc: float, scale_wh: float) -> list[dict]:
    return [{"variant": "", "task": t, "acc": a * scale_acc, "acc_stderr": 0.02, "acc_norm": a,
             "energy_kwh": 0.001 * (i + 1) * scale_wh, "meter": "codecarbon", "n_samples": 50, "seconds": 3.0}
            for i, (t, a) in enumerate(ACC.items())]


def seed(ws: Path) -> dict[str, int]:
    """A model, a baseline + experiment pair (done), a queued, a second queued, a failed run."""
    s = Store(db_path(ws))
    mid = s.models.upsert("org/tiny-llama", name="org/tiny-llama", arch="llama", params=1_234_567, layers=6,
                         heads=12, kv_heads=4, hidden=192, intermediate=384, size_bytes=5_000_000)
    exp_cfg = RunConfig(model="org/tiny-llama").to_dict()
    base_cfg = RunConfig(model="org/tiny-llama", no_prune=True).to_dict()
    base = s.runs.create(mid, "baseline", base_cfg, status="done")
    s.results.save_task_results(base, [dict(r, variant="vanilla") for r in results(1.0, 1.0)])
    exp = s.runs.create(mid, "experiment", exp_cfg, status="done", parent_run_id=base)
    rows = [dict(r, variant="pruned") for r in results(0.9, 0.7)]
    rows[0]["acc"] = 0.10  # a difference far beyond noise on arc_challenge
    s.results.save_task_results(exp, rows)
    s.runs.update(exp, params_before=1_234_567, params_after=900_000, stage="evaluate")
    s.events.add(exp, "stage_start", {"stage": "load", "index": 0, "total": 5})
    s.events.add(exp, "log", {"line": "loading org/tiny-llama on cpu"})
    s.events.add(exp, "stage_end", {"stage": "load", "seconds": 1.2})
    s.events.add(exp, "progress", {"stage": "prune", "fraction": 0.5, "message": "taylor importance"})
    s.events.add(exp, "result", {"variant": "pruned", "task": "boolq", "acc": 0.55, "wh": 3.0, "meter": "codecarbon"})
    s.events.add(exp, "done", {"status": "done"})
    for i in range(5):
        s.events.add_power_sample(exp, 1000.0 + i, 40.0 + i, "rapl", 65.0)
    q1 = s.runs.create(mid, "experiment", dict(exp_cfg, prune_ratio=0.5), status="queued")
    q2 = s.runs.create(mid, "experiment", dict(exp_cfg, prune_ratio=0.25), status="queued")
    failed = s.runs.create(mid, "experiment", exp_cfg, status="queued")
    s.runs.finish(failed, "failed", "CUDA out of memory while pruning layer 3")
    s.close()
    return {"model": mid, "base": base, "exp": exp, "q1": q1, "q2": q2, "failed": failed}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    return w


@pytest.fixture
def seeded(ws: Path) -> tuple[Path, dict[str, int]]:
    return ws, seed(ws)


def app_for(ws: Path) -> GreentuiApp:
    return GreentuiApp(ws, manage_runner=False)


def table_keys(table: DataTable) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


# ----------------------------------------------------------------------------------------- runs

async def test_empty_workspace_offers_demo_with_one_key(ws: Path) -> None:
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        empty = app.screen.query_one("#empty", Static)
        assert empty.display
        assert "press" in str(empty.render()).lower() and " d " in str(empty.render())
        called = []
        app._demo_worker = lambda: called.append(True)  # the real build is the e2e test's job
        await pilot.press("d")
        await pilot.pause()
        assert called == [True]


async def test_runs_rows_ratios_and_navigation(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 5
        row = [str(cell) for cell in table.get_row(str(ids["exp"]))]
        assert row[1] == "org/tiny-llama" and row[3] == "taylor" and row[4] == "2/7"
        assert str(row[5]) == "done"
        # acc ratio and Wh ratio against the baseline
        assert row[8].startswith("0.") and ratio_value(row[9]) == pytest.approx(0.7, abs=1e-3)
        assert str(table.get_row(str(ids["base"]))[3]) == "vanilla"
        # Enter opens the run detail; Escape comes back
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == ids["exp"]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        # mode keys
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("3")
        await pilot.pause()
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, NewRunScreen)


async def test_runs_filter_and_sort(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        await pilot.press("slash")
        assert screen.query_one("#filter", Input).has_focus
        await pilot.press(*"failed", "enter")
        await pilot.pause()
        assert table_keys(table) == [str(ids["failed"])]
        assert table.has_focus
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 5
        # default: newest first; S reverses; s cycles the sort column
        assert table_keys(table)[0] == str(ids["failed"])
        await pilot.press("S")
        await pilot.pause()
        assert table_keys(table)[0] == str(ids["base"])
        screen.action_sort("avg_wh")
        screen.descending = True
        screen.reload()
        await pilot.pause()
        assert table_keys(table)[0] == str(ids["base"])  # the baseline used the most energy
        await pilot.press("s")
        assert screen.order == "acc_ratio"
        # clicking a header sorts by it
        await pilot.click("#runs-table", offset=(2, 0))
        await pilot.pause()
        assert screen.order == "id"


async def test_runs_multiselect_requeue_and_delete_with_confirmation(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("space")
        await pilot.pause()
        assert table.cursor_row == table.get_row_index(str(ids["exp"]))  # Space selects; it does not move
        table.move_cursor(row=table.get_row_index(str(ids["failed"])))
        await pilot.press("space")
        await pilot.pause()
        assert screen.selected == {ids["exp"], ids["failed"]}
        assert str(table.get_row(str(ids["exp"]))[0]) == f"●{ids['exp']}"
        # re-queue with the same config
        before = app.store.runs.count()
        await pilot.press("R")
        await pilot.pause()
        assert app.store.runs.count() == before + 2
        newest = app.store.runs.list(limit=2)
        assert {r["status"] for r in newest} == {"queued"}
        assert {json.dumps(app.store.runs.get(r["id"])["config"], sort_keys=True) for r in newest} == \
            {json.dumps(app.store.runs.get(ids["exp"])["config"], sort_keys=True)}
        assert screen.selected == set()
        # delete (Delete, or D) asks first, its buttons saying what they do: n keeps, y deletes
        table.move_cursor(row=table.get_row_index(str(ids["failed"])))
        await pilot.press("space")
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert [str(b.label) for b in app.screen.query(Button)] == ["Keep them (n)", "Delete (y)"]
        await pilot.press("n")
        await pilot.pause()
        assert app.store.runs.get(ids["failed"]) is not None
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert app.store.runs.get(ids["failed"]) is None
        assert str(ids["failed"]) not in table_keys(screen.query_one(DataTable))


async def test_runs_picks_up_changes_from_another_process(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        other = Store(db_path(ws))  # the runner or a CLI command, elsewhere
        other.runs.update(ids["q1"], status="running", pid=os.getpid())
        other.events.add(ids["q1"], "stage_start", {"stage": "load"})
        other.close()
        await pause_until(pilot, lambda: str(app.screen.query_one(DataTable).get_row(str(ids["q1"]))[5]) == "running",
                          what="the change made elsewhere")  # the TUI polls the store twice a second
        row = app.screen.query_one(DataTable).get_row(str(ids["q1"]))
        assert str(row[5]) == "running"


async def test_runs_at_80_columns_keep_the_ratios_and_go_wide_again(seeded) -> None:
    """At 80 columns Runs drops kind and date, puts the ratio beside the method and the selection mark
    on the id, so accuracy and energy against the baseline stay on screen; at 160 all columns return."""
    from tests.snapshot import screen_text

    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        labels = [str(c.label).strip() for c in table.columns.values()]
        assert labels == ["id▼", "model", "method", "status", "acc", "Wh", "acc×", "Wh×"]
        header = next(line for line in screen_text(app).splitlines() if "id▼" in line)
        assert header.rstrip().endswith("Wh×") and len(header.rstrip()) <= 78  # not cut at the edge
        row = [str(c) for c in table.get_row(str(ids["exp"]))]
        assert row[2] == "taylor 2/7" and ratio_value(row[6]) == pytest.approx(0.85, abs=0.01)
        assert ratio_value(row[7]) == pytest.approx(0.7, abs=0.01)
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("space")
        await pilot.pause()
        assert str(table.get_row(str(ids["exp"]))[0]) == f"●{ids['exp']}"
        await pilot.press("s")  # sort by model: the arrow moves
        await pilot.pause()
        assert [str(c.label).strip() for c in table.columns.values()][1] == "model▼"
        await pilot.resize_terminal(160, 48)
        await pause_until(pilot, lambda: len(table.columns) == 11, what="the wide columns")
        labels = [str(c.label).strip() for c in table.columns.values()]
        assert "kind" in labels and "date" in labels and "model▼" in labels
        assert str(table.get_row(str(ids["exp"]))[0]) == f"●{ids['exp']}"  # the selection survived


async def test_footer_is_not_rebuilt_when_the_focus_moves(seeded) -> None:
    """The footer recomposes (a dozen widgets) only when the keys it shows change: a bindings refresh
    that changes nothing leaves the same key widgets in place; the filter box taking the focus (it
    swallows the letter keys) and giving it back do rebuild it."""
    from textual.widgets import Input
    from textual.widgets._footer import FooterKey

    from greentui.widgets.keys import KeyFooter

    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(KeyFooter)
        keys = list(footer.query(FooterKey))
        assert {k.action for k in keys} >= {"help", "quit", "new_run", "compare"}
        app.screen.refresh_bindings()  # what every focus move does
        await pilot.pause()
        assert list(footer.query(FooterKey)) == keys
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.focused, Input)
        assert "compare" not in {k.action for k in footer.query(FooterKey)}  # `c` types into the box
        await pilot.press("enter")
        await pilot.pause()
        assert "compare" in {k.action for k in footer.query(FooterKey)}


@pytest.mark.slow  # fast-tier budget; names as text on every screen: test_hostile_names (fast)
async def test_runs_show_names_with_brackets_as_they_are(ws: Path) -> None:
    """Cells are plain text: a model name that looks like Rich markup is shown, not interpreted."""
    from tests.snapshot import screen_text

    s = Store(db_path(ws))
    mid = s.models.upsert("/models/m[red]x[/red]", name="org/m[red]x[/red]")
    s.runs.create(mid, "baseline", {"model": "/models/m[red]x[/red]"}, status="done")
    s.runs.create(mid, "experiment", {"model": "/models/m[red]x[/red]"})  # queued
    s.close()
    app = app_for(ws)
    async with app.run_test(size=(160, 24)) as pilot:
        for key, screen in (("1", "RunsScreen"), ("2", "QueueScreen"), ("3", "ModelsScreen")):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == screen
            assert "org/m[red]x[/red]" in screen_text(app), screen


async def test_ten_thousand_runs_first_screen(ws: Path) -> None:
    s = Store(db_path(ws))
    mid = s.models.upsert("org/m", name="org/m")
    cfg = json.dumps(RunConfig(model="org/m").to_dict())
    t = time.time()
    s.insert_rows("runs", [{"model_id": mid, "kind": "experiment", "config": cfg, "status": "done",
                            "position": i, "created_at": t + i} for i in range(10_000)])
    s.insert_rows("task_results", [{"run_id": i, "variant": "pruned", "task": task, "acc": 0.5,
                                    "energy_kwh": 0.001} for i in range(1, 2001) for task in STUDY_TASKS])
    s.close()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        # the first frame draws FIRST_PAINT_ROWS, the rest of the page follows right after it
        assert 0 < table.row_count <= PAGE
        await pause_until(pilot, lambda: table.row_count == PAGE, what="the whole first page")
        assert "of 10000" in str(screen.query_one("#runs-status", Static).render())
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert screen.page == 1 and table_keys(table)[0] == str(10_000 - PAGE)


# ----------------------------------------------------------------------------------------- queue

async def test_queue_reorder_cancel_pause(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        assert table_keys(table) == [str(ids["q1"]), str(ids["q2"])]
        table.move_cursor(row=1)
        await pilot.press("K")
        await pilot.pause()
        assert table_keys(table) == [str(ids["q2"]), str(ids["q1"])]
        assert [r["id"] for r in app.store.queue.queued()] == [ids["q2"], ids["q1"]]
        await pilot.press("J")
        await pilot.pause()
        assert table_keys(table)[1] == str(ids["q2"])
        # pause / resume
        assert not app.store.queue.paused()
        await pilot.press("P")  # P: p is Pareto wherever it works
        await pilot.pause()
        assert app.store.queue.paused()
        assert "PAUSED" in str(screen.query_one("#queue-state", Static).render())
        await pilot.press("P")
        await pilot.pause()
        assert not app.store.queue.paused()
        # cancel a queued run
        table.move_cursor(row=table.get_row_index(str(ids["q1"])))
        await pilot.press("x")
        await pilot.pause()
        assert app.store.runs.get(ids["q1"])["status"] == "cancelled"
        assert table_keys(table) == [str(ids["q2"])]


async def test_queue_shows_executor_device_and_slurm_job(seeded) -> None:
    from backend.execution.control import process_start_time
    ws, ids = seeded
    s = Store(db_path(ws))
    # a local run on two GPUs, executed by this (live) process, and a Slurm run followed by its job
    s.runs.update(ids["q1"], status="running", pid=os.getpid(), pid_start=process_start_time(),
                 executor="local", slot="cuda:0,1", device="cuda", started_at=time.time())
    slurm = s.runs.create(ids["model"], "experiment",
                         RunConfig(model="org/tiny-llama", executor="slurm").to_dict(), status="queued")
    assert [j["run_id"] for j in s.jobs.claim_submissions("slurm", lambda rid: f"greentui-{rid}")] == [slurm]
    s.jobs.update(slurm, job_id="4242", state="RUNNING", node="node7")
    s.runs.mark_started(slurm)
    s.close()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[8:12] == ["executor", "device/node", "job id", "job state"]
        local, job, queued = ([str(c) for c in table.get_row(str(i))] for i in (ids["q1"], slurm, ids["q2"]))
        assert local[8:12] == ["local", "cuda:0,1", "—", "—"]
        assert job[8:12] == ["slurm", "node7", "4242", "RUNNING"]
        assert queued[8:12] == ["local", "—", "—", "—"]
        await pilot.resize_terminal(80, 24)  # 80 columns: executor, device/node and job in one column
        await pause_until(pilot, lambda: len(table.columns) == 7, what="the narrow queue columns")
        assert [str(c.label) for c in table.columns.values()][-1] == "where"
        assert [str(table.get_row(str(i))[-1]) for i in (ids["q1"], slurm, ids["q2"])] == \
            ["local cuda:0,1", "slurm node7 job 4242", "local"]
        await pilot.resize_terminal(*SIZE)
        await pause_until(pilot, lambda: len(table.columns) == 13, what="the wide queue columns")
        # cancelling a running local run raises its flag; the row says so until the run stops
        table.move_cursor(row=table.get_row_index(str(ids["q1"])))
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        row = app.store.runs.get(ids["q1"])
        assert row["status"] == "running" and row["cancel_requested"] is not None
        assert str(table.get_row(str(ids["q1"]))[6]) == "cancelling"
        assert app.store.runs.get(ids["q2"])["cancel_requested"] is None


async def test_start_shows_interrupted_run_and_paused_queue(seeded) -> None:
    ws, ids = seeded
    s = Store(db_path(ws))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s.runs.update(ids["q1"], status="running", pid=dead.pid, started_at=time.time())
    s.close()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.recovered == [ids["q1"]]
        assert app.store.runs.get(ids["q1"])["status"] == "interrupted"
        assert app.store.queue.paused()
        table = app.screen.query_one(DataTable)
        assert str(table.get_cell(str(ids["q1"]), "status")) == "interrupted"
        await pilot.press("2")
        await pilot.pause()
        assert "PAUSED" in str(app.screen.query_one("#queue-state", Static).render())


# ----------------------------------------------------------------------------------------- detail

async def test_run_detail_progress_log_power_results_error(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(ids["exp"])
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        assert screen.query_one("#stage-load", ProgressBar).progress == 1.0
        assert [b.id for b in screen.query(ProgressBar) if b.id and b.id.startswith("stage-")] == \
            ["stage-load", "stage-baseline", "stage-prune", "stage-lora", "stage-evaluate"]
        log_text = "\n".join(str(line.text) for line in screen.query_one("#log", RichLog).lines)
        assert "loading org/tiny-llama" in log_text and "result pruned boolq" in log_text
        power = screen.query_one(PowerPanel)
        assert power.trace.last_w == 44.0 and power.limit_w == 65.0 and power.wh > 0
        assert "RAPL" in power.source_text()
        results = screen.query_one("#results-table", DataTable)
        assert results.row_count == 14  # seven vanilla (the baseline) + seven pruned
        assert not screen.query_one("#run-error").display
        # live: a new log line and a result land while the screen is open
        other = Store(db_path(ws))
        other.events.add(ids["exp"], "log", {"line": "late line from the runner"})
        other.events.add_power_sample(ids["exp"], 1010.0, 50.0, "rapl", 65.0)
        other.close()

        def log_text() -> str:
            return "\n".join(str(line.text) for line in screen.query_one("#log", RichLog).lines)

        await pause_until(pilot, lambda: "late line from the runner" in log_text() and power.trace.last_w == 50.0,
                          what="the runner's late line and power sample")
        log_text = log_text()
        assert "late line from the runner" in log_text
        assert power.trace.last_w == 50.0
        await pilot.press("escape")
        app.open_run(ids["failed"])
        await pilot.pause(0.3)
        err = app.screen.query_one("#run-error", Static)
        assert err.display and "CUDA out of memory" in str(err.render())


# ----------------------------------------------------------------------------------------- compare

async def test_compare_run_vs_baseline_radar_bars_table_noise_pareto(seeded) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        radar = screen.query_one("#radar-acc", RadarChart)
        assert list(radar.series) == ["vanilla", "pruned"] and len(radar.axes) == 7
        wh_radar = screen.query_one("#radar-wh", RadarChart)
        assert list(wh_radar.series) == ["vanilla", "pruned"]
        rendered = radar.render().plain
        assert "vanilla" in rendered and "pruned" in rendered
        await pilot.press("b")
        await pilot.pause()
        bars = screen.query_one("#bars-acc", GroupedBars)
        assert list(bars.series) == ["vanilla", "pruned"] and bars.stderr is not None
        assert "vanilla" in str(bars.render())
        await pilot.press("t")
        await pilot.pause()
        ratio = screen.query_one("#ratio-table", DataTable)
        assert ratio.row_count == 4  # acc vanilla/pruned, Wh vanilla/pruned
        row = ratio.get_row(f"Wh-{ids['exp']}-pruned")
        assert ratio_value(row[-1].plain) == pytest.approx(0.7, abs=0.01)
        assert "±" in ratio.get_row(f"acc-{ids['exp']}-pruned")[4]
        noise = str(screen.query_one("#noise", Static).render())
        assert "beyond noise" in noise and "within noise" in noise
        await pilot.press("p")
        await pilot.pause()
        pareto = screen.query_one("#pareto-chart", ScatterPareto)
        assert len(pareto.points) == 2  # the baseline and the experiment (the others are not done)


@pytest.mark.slow  # fast-tier budget; Compare of several runs on every tab: the snapshot walk (fast)
async def test_compare_several_runs_and_palette_lists_actions(seeded) -> None:
    ws, ids = seeded
    s = Store(db_path(ws))
    exp2 = s.runs.create(ids["model"], "experiment", RunConfig(model="org/tiny-llama", prune_ratio=0.5).to_dict(),
                        status="done", parent_run_id=ids["base"])
    s.results.save_task_results(exp2, [dict(r, variant="pruned") for r in results(0.8, 0.5)])
    s.close()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        for key in (ids["exp"], exp2):
            table.move_cursor(row=table.get_row_index(str(key)))
            await pilot.press("space")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Filter", "Sort", "Compare", "Re-queue", "Delete", "Runs", "Queue", "Models",
                      "New run", "Demo", "Pareto"):
            assert title in titles
        # a palette command runs its action
        queue_cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Queue")
        queue_cmd.callback()
        await pilot.pause()
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        radar = app.screen.query_one("#radar-acc", RadarChart)
        assert list(radar.series) == [f"#{ids['base']} vanilla", f"#{ids['exp']} pruned", f"#{exp2} pruned"]
        ratio = app.screen.query_one("#ratio-table", DataTable)
        assert ratio_value(ratio.get_row(f"Wh-{exp2}-pruned")[-1].plain) == pytest.approx(0.5, abs=0.01)


def test_noise_verdicts_use_two_combined_stderr() -> None:
    from backend.results.report import Row
    v = Row("m", 1, "vanilla", {"a": 0.50, "b": 0.50}, {"a": 0.02, "b": 0.02})
    p = Row("m", 2, "pruned", {"a": 0.48, "b": 0.30}, {"a": 0.02, "b": 0.02})
    out = {t: noise for _, t, _, _, noise in noise_verdicts([v, p], ["a", "b"])}
    assert out == {"a": True, "b": False}


# ----------------------------------------------------------------------------------------- models

async def test_models_list_details_and_add_inline_error(seeded, tmp_path: Path) -> None:
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        keys = table_keys(table)
        assert "org/tiny-llama" in keys and "demo:" in keys
        details = str(screen.query_one("#model-details", Static).render())
        assert "llama" in details and "kv heads: 4 (GQA)" in details and "1.23M" in details
        await pilot.press("a")
        screen.query_one("#add-model", Input).value = str(tmp_path / "nope")  # typing: 1 key = 1 re-render
        await pilot.press("enter")
        await pause_until(pilot, lambda: "no such model directory" in str(screen.query_one("#add-error", Label).render()),
                          what="the inline error")
        # add a real model directory (config.json is all describe() needs)
        mdir = tmp_path / "mymodel"
        mdir.mkdir()
        (mdir / "config.json").write_text(json.dumps({
            "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 64, "intermediate_size": 128}))
        inp = screen.query_one("#add-model", Input)
        inp.value = str(mdir)
        await pilot.press("enter")
        await pause_until(pilot, lambda: str(mdir.resolve()) in table_keys(screen.query_one(DataTable)),
                          what="the added model's row")
        assert app.store.models.get(str(mdir.resolve()))["arch"] == "qwen2"


# ----------------------------------------------------------------------------------------- new run

async def open_form(app: GreentuiApp, pilot) -> NewRunScreen:
    """New run from the study recipe with an empty model field (the seeded workspace has runs, so the
    form would start from the last run's config: tests/test_new_run_form.py covers that)."""
    await pilot.press("n")
    await pilot.pause()
    assert isinstance(app.screen, NewRunScreen)
    app.screen.query_one("#preset").value = "study"
    app.screen.query_one("#f-model", Input).value = ""
    await pilot.pause()
    return app.screen


def err(screen: NewRunScreen, name: str) -> str:
    label = screen.query_one(f"#err-{name}", Label)
    return str(label.render()) if label.display else ""


@pytest.mark.slow  # fast-tier budget; the form's starting config: test_the_forms_starting_config_is_the_clis_defaults (fast)
async def test_new_run_defaults_are_the_study(seeded) -> None:
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        cfg, bad = screen.read()
        assert not bad
        study = RunConfig()
        assert cfg.prune_ratio == pytest.approx(2 / 7) and cfg.importance == "taylor"
        assert (cfg.ignore_first, cfg.ignore_last, cfg.lora_r, cfg.lora_alpha) == (4, 4, 8, 16)
        assert cfg.tasks == list(STUDY_TASKS) and cfg.lora_steps == study.lora_steps
        assert err(screen, "model")  # no model yet: refused with a reason
        assert screen.query_one("#queue", Button).disabled


@pytest.mark.slow  # fast-tier budget: the screen's other tests and its snapshot cover the common path
async def test_new_run_refuses_bad_ratio_and_empty_tasks_inline(seeded) -> None:
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await pilot.press(*"org/tiny-llama")
        await pilot.pause()
        assert not err(screen, "model")
        ratio = screen.query_one("#f-prune_ratio", Input)
        ratio.value = "1.5"
        await pilot.pause()
        assert "strictly between 0 and 1" in err(screen, "prune_ratio")
        ratio.value = "abc"
        await pilot.pause()
        assert "not a ratio" in err(screen, "prune_ratio")
        ratio.value = "0.25"
        await pilot.pause()
        assert not err(screen, "prune_ratio")
        screen.query_one("#f-tasks", SelectionList).deselect_all()
        await pilot.pause()
        assert "at least one task" in err(screen, "tasks")
        n = app.store.runs.count()
        screen.query_one("#f-model", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.store.runs.count() == n  # refused: nothing queued
        assert isinstance(app.screen, NewRunScreen)
        screen.query_one("#f-tasks", SelectionList).select_all()
        await pilot.pause()
        assert not err(screen, "tasks")


@pytest.mark.slow  # fast-tier budget; the folded fields' values reaching a queued run: test_new_run_form (fast)
async def test_new_run_lora_and_calibration_fields(seeded) -> None:
    """Every knob of the study's recipe is in the form, parsed and validated inline."""
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await screen.open_folds()  # these fields live in their groups' folds, built when opened
        screen.query_one("#f-model", Input).value = "org/tiny-llama"
        values = {"round_to": "64", "calib_seq_len": "128", "lora_lr": "1e-4", "lora_batch_size": "16",
                  "lora_cutoff_len": "512"}
        for name, text in values.items():
            screen.query_one(f"#f-{name}", Input).value = text
        await pilot.pause()
        cfg, bad = screen.read()
        assert not bad and not cfg.problems()
        assert (cfg.round_to, cfg.calib_seq_len, cfg.lora_batch_size, cfg.lora_cutoff_len) == (64, 128, 16, 512)
        assert cfg.lora_lr == pytest.approx(1e-4)
        screen.query_one("#f-lora_epochs", Input).value = "2"
        await pilot.pause()
        assert "not both" in err(screen, "lora_steps")
        screen.query_one("#f-lora_steps", Input).value = ""
        await pilot.pause()
        assert not err(screen, "lora_steps")
        cfg, _ = screen.read()
        assert (cfg.lora_steps, cfg.lora_epochs) == (None, 2.0)
        screen.query_one("#f-lora_lr", Input).value = "fast"
        await pilot.pause()
        assert "not a number" in err(screen, "lora_lr")
        screen.query_one("#f-round_to", Input).value = "0"
        await pilot.pause()
        assert "1 or more" in err(screen, "round_to")
        assert screen.query_one("#queue", Button).disabled


async def test_new_run_refuses_unknown_model_inline(seeded, tmp_path: Path) -> None:
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        screen.query_one("#f-model", Input).value = str(tmp_path / "no-such-model")
        await pilot.pause()
        n = app.store.runs.count()
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "no such model directory" in err(screen, "model")
        assert app.store.runs.count() == n
        assert isinstance(app.screen, NewRunScreen)


async def test_new_run_enter_moves_on_and_ctrl_s_queues_and_opens_detail(seeded) -> None:
    """Enter in a field moves to the next field and never queues (one unintended run was queued that
    way); Ctrl+S queues."""
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        screen.query_one("#f-model", Input).value = "org/tiny-llama"
        screen.query_one("#f-limit", Input).value = "10"
        screen.query_one("#f-tasks", SelectionList).deselect("hellaswag")
        await pilot.pause()
        n = app.store.runs.count()
        screen.query_one("#f-model", Input).focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.store.runs.count() == n and isinstance(app.screen, NewRunScreen)
        assert app.focused is not screen.query_one("#f-model", Input)  # the next field has the focus
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.store.runs.count() == n + 1
        run = app.store.runs.list(limit=1)[0]
        assert run["status"] == "queued" and run["kind"] == "experiment"
        cfg = app.store.runs.get(run["id"])["config"]
        assert cfg["limit"] == 10 and "hellaswag" not in cfg["tasks"] and len(cfg["tasks"]) == 6
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == run["id"]


# ----------------------------------------------------------------------------------------- process

HEAVY = ("torch", "transformers", "lm_eval", "peft", "torch_pruning", "codecarbon", "datasets", "accelerate")
WALK_EVERY_SCREEN = """
import asyncio, json, sys
from pathlib import Path
from greentui.app import GreentuiApp

STEPS = [("2", "QueueScreen"), ("3", "ModelsScreen"), ("1", "RunsScreen"), ("n", "NewRunScreen"),
         ("escape", "RunsScreen"), ("d", "ConfirmScreen"), ("n", "RunsScreen")]

async def walk(ws, exp):
    app = GreentuiApp(Path(ws), manage_runner=False)
    async with app.run_test(size=(160, 48)) as pilot:
        async def settle(name):  # a loaded machine may need more than one pause
            for _ in range(100):
                if type(app.screen).__name__ == name and app.screen.is_mounted:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            return type(app.screen).__name__
        seen = [await settle("RunsScreen")]
        for key, expect in STEPS:
            await pilot.press(key)
            seen.append(await settle(expect))
        app.open_run(exp)
        seen.append(await settle("RunDetailScreen"))
        app.open_compare([exp])
        seen.append(await settle("CompareScreen"))
    return seen

seen = asyncio.run(walk(sys.argv[1], int(sys.argv[2])))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"seen": seen, "heavy": heavy}))
"""


@pytest.mark.slow  # fast-tier budget: the screen's other tests and its snapshot cover the common path
def test_ui_process_never_imports_torch(seeded) -> None:
    """A fresh interpreter (nothing imported yet) opens every screen: no heavy library gets imported.

    In-process this proves nothing once another test module has imported torch, hence the subprocess.
    """
    ws, ids = seeded
    code = f"HEAVY = {HEAVY!r}\n" + WALK_EVERY_SCREEN
    out = subprocess.run([sys.executable, "-c", code, str(ws), str(ids["exp"])], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seen"] == ["RunsScreen", "QueueScreen", "ModelsScreen", "RunsScreen", "NewRunScreen",
                              "RunsScreen", "ConfirmScreen", "RunsScreen", "RunDetailScreen", "CompareScreen"]
    assert result["heavy"] == []


async def test_demo_key_asks_first_when_runs_exist(seeded) -> None:
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        called = []
        app._demo_worker = lambda: called.append(True)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and called == []
        await pilot.press("n")
        await pilot.pause()
        assert called == []
        await pilot.press("d", "y")
        await pilot.pause()
        assert called == [True]


@pytest.mark.slow  # fast-tier budget: the screen's other tests and its snapshot cover the common path
async def test_compare_right_after_run_detail_before_it_mounts(seeded) -> None:
    """Opening Compare before Run detail has mounted must not crash: the detail's deferred refreshes
    (tick, results) skip a screen that is not mounted or already covered/gone."""
    ws, ids = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(ids["exp"])
        await pilot.press("c")  # no pause: Run detail has not mounted yet
        await pilot.pause(0.3)
        assert isinstance(app.screen, CompareScreen)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.query_one("#results-table", DataTable).row_count == 14
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunsScreen) and app.is_running


def test_help_names_where_a_focused_widgets_keys_work() -> None:
    """Help's "where" column says which focused widget a key belongs to, not one label for all."""
    from textual.containers import VerticalScroll
    from textual.widgets import Input, SelectionList

    from greentui.widgets.keys import focused_place

    assert [focused_place(w) for w in (DataTable(), SelectionList(), Input(), VerticalScroll())] == \
        ["in the table", "in the list", "in a text field", "in the scrolled pane"]


async def test_a_theme_change_restyles_every_mode_screen(seeded) -> None:
    """Mode screens start at the app's CSS generation (no re-parse of every stylesheet at start, P2);
    a theme change must still restyle the screen on display and a mode shown before it."""
    ws, _ = seeded
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        runs_table = app.screen.query_one(DataTable)
        await pilot.press("2")
        await pilot.pause()
        queue_table = app.screen.query_one(DataTable)
        dark = (runs_table.styles.background, queue_table.styles.background)
        await pilot.press("1")
        await pilot.pause()
        app.theme = "textual-light"
        await pilot.pause()
        assert runs_table.styles.background != dark[0]
        await pilot.press("2")
        await pilot.pause()
        assert queue_table.styles.background != dark[1]
