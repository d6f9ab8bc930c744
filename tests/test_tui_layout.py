"""Issue #22 3.7-3.10: what a new user hit at 80×24 and 120×40 — Compare's header, legend, table and
Pareto labels; Runs and Queue at 120 columns; Run detail's meter and log; Help and the footer at 80
columns; the Queue's honest states; and the smaller ones (a baseline deleted under a running run, the
filter, Models → Add, ``demo --help``, ``show --json``). Real store, real screens (Pilot)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Label, ProgressBar, Static

from backend.schema.catalog import DEMO_DURATION
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.compare import CompareScreen
from greentui.screens.models import ModelsScreen
from greentui.screens.queue import QueueScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.widgets.bars import _dodge_labels
from greentui.widgets.confirm import ConfirmScreen
from greentui.widgets.keys import HelpScreen, KeyFooter
from greentui.widgets.radar import RadarChart
from greentui.widgets.reflow_log import ReflowLog

from .conftest import pause_until, tiered
from .test_snapshots import build_fixed_store
from .test_tui import seed

SIZES = [(80, 24), (120, 40)]


def app_for(ws: Path) -> GreentuiApp:
    return GreentuiApp(ws, manage_runner=False)


def column_keys(table: DataTable) -> list[str]:
    return [str(c.key.value) for c in table.ordered_columns]


# ------------------------------------------------------------------------------------------ Runs, Queue

@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_runs_keep_kind_ratio_and_date_where_they_fit(tmp_path: Path, size) -> None:
    ids = seed(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=size) as pilot:
        table = await pause_until(pilot, lambda: app.screen.query_one(DataTable).row_count and
                                  app.screen.query_one(DataTable), timeout=30)
        keys = column_keys(table)
        row = [str(c) for c in table.get_row(str(ids["exp"]))]
        if size[0] >= 100:  # 120 columns: kind, method with its ratio and the date were hidden
            assert {"kind", "method", "created"} <= set(keys)
            assert "exp" in row and "taylor 2/7" in row
        else:
            assert "kind" not in keys and "taylor 2/7" in row
        assert table.virtual_size.width <= size[0]  # nothing runs off the right edge
        footer = app.screen.query_one(KeyFooter)
        assert footer.children and all(key.region.right <= size[0] for key in footer.children)


def queue_store(ws: Path) -> dict[str, int]:
    """An experiment running (with the baseline it evaluates in its own process) and two queued runs."""
    ids = seed(ws)
    s = Store(db_path(ws))
    exp = s.runs.get(ids["exp"])
    running = s.runs.create(exp["model_id"], "experiment", exp["config"], status="running", pid=os.getpid())
    base = s.runs.create(exp["model_id"], "baseline", dict(exp["config"], no_prune=True), status="running",
                         pid=os.getpid(), label=f"baseline for run {running}")
    s.runs.update(running, stage="baseline")
    s.events.add(running, "stage_start", {"stage": "load"})
    s.events.add(running, "stage_end", {"stage": "load", "seconds": 1.0})
    s.events.add(running, "stage_start", {"stage": "baseline"})
    s.conn.execute("UPDATE events SET t = ? WHERE run_id = ? AND kind = 'stage_start'", (time.time() - 12, running))
    s.close()
    return dict(ids, running=running, base_inside=base)


@pytest.mark.parametrize("size", tiered(SIZES, fast=[]))  # slow: the Queue screen's snapshot (fast)
async def test_queue_counts_runs_that_hold_a_device_and_says_why_runs_wait(tmp_path: Path, size) -> None:
    """Not "2 running" on a one-slot CPU when a baseline is evaluated inside its experiment; a queued run
    says what it waits for (not "the runner starts"); the running stage moves and counts seconds."""
    from backend.execution.control import process_start_time

    ids = queue_store(tmp_path)
    s = Store(db_path(tmp_path))
    for run in (ids["running"], ids["base_inside"]):  # alive: this process
        s.runs.update(run, pid_start=process_start_time())
    s.close()
    app = app_for(tmp_path)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        screen = await pause_until(pilot, lambda: isinstance(app.screen, QueueScreen) and app.screen.is_mounted
                                   and app.screen, timeout=30)
        await pilot.pause()
        state = str(screen.query_one("#queue-state", Static).render())
        assert f"1 running (baseline run {ids['base_inside']} inside run {ids['running']})" in state
        table = screen.query_one(DataTable)
        stages = {str(table.get_row(str(i))[column_keys(table).index("stage")]) for i in (ids["q1"], ids["q2"])}
        assert all(text.startswith("no runner") or text.startswith("after") for text in stages), stages
        await pilot.press("P")  # paused: every queued run says so
        await pilot.pause()
        stage = str(table.get_row(str(ids["q1"]))[column_keys(table).index("stage")])
        assert stage == "queue paused"
        app.open_run(ids["q1"])
        detail = await pause_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and
                                   app.screen.query("#stage-msg-load") and app.screen, timeout=30)
        await pilot.pause(0.3)
        assert "the queue is paused" in str(detail.query_one("#stage-msg-load", Label).render())
        app.pop_screen()
        app.open_run(ids["running"])
        detail = await pause_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and
                                   app.screen.query("#stage-baseline") and app.screen, timeout=30)
        await pilot.pause(0.3)
        bar = detail.query_one("#stage-baseline", ProgressBar)
        assert bar.total is None  # Textual's pulsing bar: no progress reported yet, but not still
        message = str(detail.query_one("#stage-msg-baseline", Label).render())
        assert message.startswith("▶") and message.rstrip().endswith(" s") and int(message.split()[-2]) >= 10


# ------------------------------------------------------------------------------------------ Run detail

@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_run_detail_says_its_meter_once_and_wraps_its_log(tmp_path: Path, size) -> None:
    ids = build_fixed_store(tmp_path)
    s = Store(db_path(tmp_path))
    long_line = "a long library line " + "that goes on " * 12 + "END"
    s.events.add(ids["exp"], "log", {"line": long_line})
    s.close()
    app = app_for(tmp_path)
    async with app.run_test(size=size) as pilot:
        app.open_run(ids["exp"])
        detail = await pause_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and
                                   app.screen.query("#results-table") and
                                   app.screen.query_one("#results-table", DataTable).row_count and app.screen, timeout=30)
        await pilot.pause(0.3)
        label = str(detail.query_one("#results-label", Label).render())
        assert "meter: codecarbon:cpu_load-estimate" in label  # whole, once
        table = detail.query_one("#results-table", DataTable)
        assert "meter" not in column_keys(table) and column_keys(table)[-1] == "s"
        assert table.virtual_size.width <= table.size.width + 1  # items and seconds on screen
        log = detail.query_one("#log", ReflowLog)
        width = log.scrollable_content_region.width
        assert all(line.cell_length <= width for line in log.lines)  # wrapped, not cut
        text = "".join(line.text for line in log.lines)
        assert "END" in text and "(codecarbon)" in text


# ------------------------------------------------------------------------------------------ Compare

@pytest.mark.parametrize("size", tiered(SIZES, fast=[]))  # slow: the snapshot walk's compare screens (fast)
async def test_compare_header_legend_table_and_arrows(tmp_path: Path, size) -> None:
    ids = build_fixed_store(tmp_path)
    app = app_for(tmp_path)
    runs = [ids["exp"], ids["exp2"], ids["exp3"], ids["exp4"]]
    async with app.run_test(size=size) as pilot:
        app.open_compare(runs)
        screen = await pause_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.is_mounted
                                   and app.screen, timeout=30)
        await pilot.pause(0.3)
        if size[0] < 100:
            await pilot.press("i")  # the full header (folded at 80 columns)
            await pilot.pause()
        title = str(screen.query_one("#compare-title", Static).render())
        quality = [line for line in title.splitlines() if line.startswith("quality")]
        assert sorted(int(i) for line in quality for i in line.split(":")[0].replace(",", " ").split("#")[1:]) \
            == sorted(runs)  # every run's quality, none dropped after two (runs measured alike share a line)
        legends = {w.id: w.scale_note for w in screen.query(RadarChart)}
        assert "most Wh" in legends["radar-wh"] and "highest acc" in legends["radar-acc"]
        await pilot.press("t")
        await pilot.pause(0.2)
        table = screen.query_one("#ratio-table", DataTable)
        assert app.focused is table
        keys = column_keys(table)
        assert keys.index("avg") < 5 and keys.index("ratio") < 5  # on screen at 80 and at 120
        await pilot.press("down", "right", "right", "right")
        await pilot.pause(0.2)
        assert screen.query_one("#compare-tabs").active == "table"  # arrows did not switch tabs
        assert table.scroll_x > 0


def test_pareto_labels_sit_by_their_dots_off_the_front_line_and_the_noise_band() -> None:
    pts = [("#1", 4.0, 0.483), ("#2", 2.8, 0.41), ("#3", 2.0, 0.386), ("#4", 4.2, 0.483), ("#5", 3.2, 0.459),
           ("#6", 2.4, 0.276)]
    front = [(2.0, 0.386), (2.8, 0.41), (3.2, 0.459), (4.0, 0.483)]
    x_lo, x_hi, y_lo, y_hi, w, h = 1.8, 5.0, 0.25, 0.53, 68, 12
    best, noise = 0.483, 0.015
    places = _dodge_labels(pts, x_lo, x_hi, y_lo, y_hi, w, h, lines=[front], rules=[best - noise, best + noise])

    def col(x):
        return int(round((x - x_lo) / (x_hi - x_lo) * (w - 1)))

    def row(y):
        return int(round((y - y_lo) / (y_hi - y_lo) * (h - 1)))
    line_cells = set()
    for (xa, ya), (xb, yb) in zip(front, front[1:]):
        steps = max(abs(col(xb) - col(xa)), abs(row(yb) - row(ya)), 1)
        line_cells |= {(round(row(ya) + (row(yb) - row(ya)) * k / steps), round(col(xa) + (col(xb) - col(xa)) * k / steps))
                       for k in range(steps + 1)}
    rule_rows = {row(best - noise), row(best + noise)}
    for (lab, x, y), (lx, ly) in zip(pts, places):
        r, c = row(ly), col(lx)
        cells = {(r, c + k) for k in range(len(lab))}
        assert not cells & line_cells and r not in rule_rows, (lab, r, c)
        assert abs(r - row(y)) <= 2 and abs(c - col(x)) <= len(lab) + 3, (lab, "detached from its dot")


# ------------------------------------------------------------------------------------------ Help, footer

@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_help_wraps_its_details_and_says_what_enter_does(tmp_path: Path, size) -> None:
    from tests.snapshot import screen_text

    seed(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        help_screen = await pause_until(pilot, lambda: isinstance(app.screen, HelpScreen) and
                                        app.screen.query_one(DataTable).row_count and app.screen, timeout=30)
        table = help_screen.query_one(DataTable)
        await pilot.pause()
        rows = [[c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        details = table.ordered_columns[2].width
        for key, what, why in rows:  # each detail wrapped whole into its cell's lines: never cut
            assert all(line.cell_len <= details for line in Text(why).wrap(app.console, details))
        assert ["⏎", "Detail"] in [r[:2] for r in rows]
        shown = " ".join(screen_text(app).replace("│", " ").split())
        assert "(asks first); finished tasks are kept" in shown  # a detail read whole on the screen
        table.move_cursor(row=table.row_count - 1)  # the last row, scrolled to: its text is on screen
        await pilot.pause()
        assert "Move the cursor" in screen_text(app)


# ------------------------------------------------------------------------------------------ smaller ones

async def test_deleting_a_baseline_that_a_running_run_uses_warns_first(tmp_path: Path) -> None:
    ids = queue_store(tmp_path)
    s = Store(db_path(tmp_path))
    s.runs.update(ids["running"], parent_run_id=ids["base"])
    s.close()
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await pause_until(pilot, lambda: app.screen.query_one(DataTable).row_count > 6 and
                                  app.screen.query_one(DataTable), timeout=30)
        table.move_cursor(row=table.get_row_index(str(ids["base"])))
        await pilot.press("delete")
        dialog = await pause_until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, timeout=30)
        assert dialog.message.startswith(f"Warning: run {ids['running']} (running) uses baseline {ids['base']}")
        await pilot.press("n")
        await pilot.pause()
        assert app.store.runs.get(ids["base"]) is not None


def test_the_filter_matches_what_a_row_shows_not_its_config(tmp_path: Path) -> None:
    ids = seed(tmp_path)
    s = Store(db_path(tmp_path))
    taylor = {r["id"] for r in s.runs.list(text="taylor")}
    assert ids["exp"] in taylor and ids["base"] not in taylor  # the baseline's config says taylor too
    assert ids["base"] in {r["id"] for r in s.runs.list(text="vanilla")}
    assert {r["id"] for r in s.runs.list(text="tiny-llama")} >= {ids["exp"], ids["base"]}
    s.close()


async def test_models_add_completes_paths_and_keeps_the_typed_text(tmp_path: Path) -> None:
    (tmp_path / "my-model-folder").mkdir()
    seed(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pause_until(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.is_mounted, timeout=30)
        await pilot.press("a")
        box = app.screen.query_one("#add-model", Input)
        box.value = str(tmp_path / "my-mo")
        box.cursor_position = len(box.value)
        await pause_until(pilot, lambda: box._suggestion, what="a path completion", timeout=30)
        await pilot.press("right")  # takes the completion
        await pilot.pause()
        assert box.value == f"{tmp_path}/my-model-folder/"
        await pilot.press("escape", "a")  # away and back: the typed text stays, and typing adds to it
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert box.value == f"{tmp_path}/my-model-folder/x"


def test_demo_help_tells_the_shipped_model_and_one_duration(cli) -> None:
    text = " ".join(cli("demo", "--help").stdout.split())
    assert "random" not in text and "trained" in text and DEMO_DURATION in text


def test_show_json_of_an_experiment_carries_its_baselines_perplexity(cli, workspace) -> None:
    ids = seed(workspace)
    s = Store(db_path(workspace))
    s.results.save_metric(ids["base"], "vanilla", "ppl_wikitext2", 72.6)
    s.runs.update(ids["exp"], parent_run_id=ids["base"])
    s.close()
    doc = json.loads(cli("show", str(ids["exp"]), "--json").stdout)
    assert {"variant": "vanilla", "name": "ppl_wikitext2", "value": 72.6} in [
        {k: m[k] for k in ("variant", "name", "value")} for m in doc["baseline_metrics"]]
    assert "vanilla ppl_wikitext2: 72.6000" in cli("show", str(ids["exp"])).stdout


async def test_runs_status_line_fits_80_columns_with_a_filter_and_a_selection(tmp_path: Path) -> None:
    ids = seed(tmp_path)
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await pause_until(pilot, lambda: app.screen.query_one(DataTable).row_count and
                                  app.screen.query_one(DataTable), timeout=30)
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("space", "slash", *"tiny-llama", "enter")
        await pilot.pause()
        status = str(app.screen.query_one("#runs-status", Static).render())
        assert len(status) <= 78 and "1 selected" in status and "filter “tiny-llama”" in status
