"""End to end through the UI: New run → detached runner on a tiny demo model → Run detail, Runs, Compare;
and closing the UI mid-run does not cost the run.

Slow (minutes on a 2-core CPU): ``pytest -m slow tests/test_tui_e2e.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, ProgressBar, RichLog, SelectionList

from backend.execution.supervisor import pid_alive, runner_pid, wait_for_runner_exit
from backend.store import Store
from backend.workspace import PACKAGE_DATA, db_path
from greentui.app import GreentuiApp
from greentui.screens.compare import CompareScreen
from greentui.screens.new_run import NewRunScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.screens.runs import RunsScreen
from greentui.widgets.power import PowerPanel
from greentui.widgets.radar import RadarChart

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parent.parent
SIZE = (160, 48)
TASKS = ["arc_easy", "boolq"]
FINAL = ("done", "failed", "cancelled", "interrupted")
RUN_TIMEOUT = 1200  # seconds; a loaded 2-core machine is slow


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny"
    subprocess.run([sys.executable, "-m", "backend", "demo-model", str(out)], cwd=REPO, check=True,
                   capture_output=True, timeout=600)
    return out


def stop_runner(ws: Path) -> None:
    """Never leave a detached runner behind a failed test."""
    pid = runner_pid(ws)
    if pid and pid > 0 and not wait_for_runner_exit(ws, timeout=5):
        import os
        import signal
        os.kill(pid, signal.SIGTERM)
        wait_for_runner_exit(ws, timeout=30)


def describe_failure(ws: Path, run_id: int) -> str:
    s = Store(db_path(ws))
    try:
        run = s.runs.get(run_id)
        tail = [e["payload"] for e in s.events.list(run_id)][-8:]
    finally:
        s.close()
    log = (ws / "runner.log").read_text()[-3000:] if (ws / "runner.log").exists() else ""
    return f"status {run and run['status']}: {run and run['error']}\nlast events {tail}\nrunner.log:\n{log}"


async def test_queue_in_new_run_watch_detail_then_runs_and_compare(demo_model: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("n")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, NewRunScreen)
            await form.open_folds()  # perplexity tokens and data dir sit in the evaluation fold
            for name, value in (("ignore_first", "1"), ("ignore_last", "1"), ("limit", "4"), ("lora_steps", "2"),
                                ("ppl_limit", "256"), ("data_dir", str(PACKAGE_DATA / "commonsense"))):
                form.query_one(f"#f-{name}", Input).value = value
            tasks = form.query_one("#f-tasks", SelectionList)
            tasks.deselect_all()
            for t in TASKS:
                tasks.select(t)
            model = form.query_one("#f-model", Input)
            model.value = str(demo_model)
            model.focus()
            await pilot.pause()
            assert form.validate() == {}
            await pilot.press("ctrl+s")  # Ctrl+S queues (Enter in a field moves to the next field)
            for _ in range(100):
                await pilot.pause(0.2)
                if isinstance(app.screen, RunDetailScreen):
                    break
            detail = app.screen
            assert isinstance(detail, RunDetailScreen), "queueing did not open the run detail"
            run_id = detail.run_id
            assert app.store.runs.get(run_id)["config"]["tasks"] == TASKS

            # the detached runner (not this process) executes it; the detail screen follows live
            saw_running = False
            deadline = time.time() + RUN_TIMEOUT
            while time.time() < deadline:
                await pilot.pause(1.0)
                run = app.store.runs.get(run_id)
                saw_running |= run["status"] == "running"
                if run["status"] in FINAL:
                    break
            await pilot.pause(1.0)
            run = app.store.runs.get(run_id)
            assert run["status"] == "done", describe_failure(ws, run_id)
            assert saw_running
            assert run["pid"] is None and run["parent_run_id"]
            bars = {b.id: b.progress for b in detail.query(ProgressBar) if (b.id or "").startswith("stage-")}
            assert set(bars) == {"stage-load", "stage-baseline", "stage-prune", "stage-lora", "stage-evaluate"}
            assert all(v == pytest.approx(1.0) for v in bars.values()), bars
            log = "\n".join(str(line.text) for line in detail.query_one("#log", RichLog).lines)
            assert "loading" in log and "result pruned arc_easy" in log and "run done" in log
            results = detail.query_one("#results-table", DataTable)
            assert results.row_count == 2 * len(TASKS)  # vanilla (baseline run) + pruned
            if app.store.events.power_samples(run_id, limit=1):
                assert detail.query_one(PowerPanel).trace.last_w is not None

            # Runs: the run's averages and ratios vs its baseline
            await pilot.press("escape")
            await pilot.pause()
            runs = app.screen
            assert isinstance(runs, RunsScreen)
            table = runs.query_one(DataTable)
            cell = lambda column: str(table.get_cell(str(run_id), column))  # noqa: E731
            assert cell("status") == "done" and cell("avg_acc") != "—"
            assert cell("acc_ratio") != "—"  # acc ratio vs the baseline
            # Compare: vanilla and pruned as two series
            table.move_cursor(row=table.get_row_index(str(run_id)))
            await pilot.press("c")
            await pilot.pause()
            assert isinstance(app.screen, CompareScreen)
            radar = app.screen.query_one("#radar-acc", RadarChart)
            assert list(radar.series) == ["vanilla", "pruned"] and len(radar.axes) == len(TASKS)
    finally:
        stop_runner(ws)


async def test_closing_the_ui_mid_run_does_not_cost_the_run(tmp_path: Path, monkeypatch) -> None:
    """The one-key demo on an empty workspace, then the UI closes while the run is running."""
    import backend.service.runs as demo
    ws = tmp_path / "ws"
    ws.mkdir()
    tiny = demo.demo_config

    def small(model_ref: str, **kw):  # the demo's path, at the e2e test's size
        return tiny(model_ref, **{"tasks": TASKS, "limit": 4, "lora_steps": 2, "ppl_limit": 256, **kw})

    monkeypatch.setattr(demo, "demo_config", small)
    app = GreentuiApp(ws)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.screen.query_one("#empty").display
            await pilot.press("d")
            run_id = None
            deadline = time.time() + 600
            while time.time() < deadline:
                await pilot.pause(0.5)
                if isinstance(app.screen, RunDetailScreen):
                    run_id = app.screen.run_id
                    if app.store.runs.get(run_id)["status"] == "running":
                        break
            assert run_id is not None, "the demo did not queue a run"
            run = app.store.runs.get(run_id)
            assert run["status"] == "running", describe_failure(ws, run_id)
            pid = run["pid"]
        # the UI is gone (as after an SSH drop); the runner is not
        assert pid_alive(pid)
        s = Store(db_path(ws))
        try:
            deadline = time.time() + RUN_TIMEOUT
            while time.time() < deadline and s.runs.get(run_id)["status"] not in FINAL:
                time.sleep(1.0)
            run = s.runs.get(run_id)
            assert run["status"] == "done", describe_failure(ws, run_id)
            assert {r["task"] for r in s.results.task_results(run_id, "pruned")} == set(TASKS)
            assert {r["task"] for r in s.results.task_results(run["parent_run_id"], "vanilla")} == set(TASKS)
            assert s.runs.get(run_id)["label"] == "demo"
        finally:
            s.close()
    finally:
        stop_runner(ws)
