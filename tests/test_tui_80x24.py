"""80×24 as a first-class size and the readable-Compare rules (issue #12): pure functions first, then
one Pilot walk through the keys at 80×24 on a seeded store."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from backend.report import Row
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens._ppl import perplexities, perplexity_line
from greentui.screens.compare import merge_identical_baselines
from greentui.screens.queue import QueueScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.screens.runs import RunsScreen, partial_mark
from greentui.widgets.bars import _dodge_labels, build_scatter_pareto
from greentui.widgets.keys import HelpScreen, KeyFooter
from greentui.widgets.radar import draw_radar, hidden_under, legend_rows

from .conftest import pause_until
from .test_tui import seed


def test_identical_baselines_merge_but_different_ones_stay() -> None:
    v1 = Row("m", 1, "vanilla", {"a": 0.5, "b": 0.4})
    p2 = Row("m", 2, "pruned", {"a": 0.4, "b": 0.3})
    v3 = Row("m", 3, "vanilla", {"a": 0.5, "b": 0.4})     # same items, same numbers: merged into #1
    p4 = Row("m", 4, "pruned", {"a": 0.3, "b": 0.3})
    v5 = Row("m", 5, "vanilla", {"a": 0.6, "b": 0.4})     # another limit: kept
    acc, wh, merged = merge_identical_baselines([v1, p2, v3, p4, v5], [v1, p2, v3, p4, v5], ["a", "b"])
    assert merged == {3: 1}
    assert [r.run_id for r in acc] == [1, 2, 4, 5] and [r.run_id for r in wh] == [1, 2, 4, 5]


def test_radar_legend_wraps_and_names_a_hidden_series() -> None:
    data = {"vanilla": [1.0, 0.5], "pruned": [1.0, 0.5], "#7 pruned": [0.2, 0.1]}
    assert hidden_under(data) == {"vanilla": "pruned"}
    lines = legend_rows(list(data), {k: "cyan" for k in data}, hidden_under(data), 40, False, True)
    assert len(lines) > 1 and all(line.cell_len <= 40 for line in lines)
    text = " ".join(line.plain for line in lines)
    assert "#7 pruned" in text and "same as pruned" in text      # nothing cut, the hidden one named
    chart = draw_radar(40, 20, "acc", ["A", "B", "C"], {k: v + [0.3] for k, v in data.items()})
    assert "#7 pruned" in chart.plain


def test_pareto_labels_dodge_and_front_and_noise_band_drawn() -> None:
    pts = [("#1 vanilla", 2.0, 0.500), ("#2 vanilla", 2.0, 0.5001), ("#3 taylor 2/7", 1.5, 0.45)]
    ys = _dodge_labels(pts, 1.0, 3.0, 0.4, 0.6, 60, 15)
    assert ys[0] != ys[1]                                       # the two labels no longer share a row
    out = build_scatter_pareto(70, 18, "t", pts, noise=0.03).plain
    assert "◆" in out and "#2 vanilla" in out and "#1 vanilla" in out


def test_partial_average_is_marked() -> None:
    assert partial_mark({"tasks_done": 2, "tasks_planned": 7}) == "*"
    assert partial_mark({"tasks_done": 7, "tasks_planned": 7}) == ""
    assert partial_mark({"tasks_done": None, "tasks_planned": 7}) == ""


def test_perplexity_line_orders_vanilla_pruned_lora(tmp_path: Path) -> None:
    ids = seed(tmp_path)
    s = Store(db_path(tmp_path))
    s.save_metric(ids["base"], "vanilla", "ppl_wikitext2", 40.0)
    s.save_metric(ids["exp"], "pruned", "ppl_wikitext2_before_lora", 60.0)
    s.save_metric(ids["exp"], "pruned", "ppl_wikitext2", 50.0)
    run = s.get_run(ids["exp"])
    assert perplexities(s, run) == {"vanilla": 40.0, "pruned": 60.0, "pruned+LoRA": 50.0}
    assert "vanilla [b]40.0[/b] · pruned [b]60.0[/b] · pruned+LoRA [b]50.0[/b]" in perplexity_line(s, run)
    s.close()


async def test_keys_at_80x24(tmp_path: Path) -> None:
    ids = seed(tmp_path)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        footer = runs.query_one(KeyFooter)
        await pause_until(pilot, lambda: footer.query("FooterKey"), what="the footer's keys")
        shown = [k.action for k in footer.query("FooterKey")]
        assert shown[:5] == ["help", "go('runs')", "go('queue')", "go('models')", "quit"]
        status = runs.query_one("#runs-status", Static)
        assert status.region.y < footer.region.y and status.region.height == 1   # visible, above the footer
        await pilot.press("s")
        assert "sorted by model" in str(status.render())
        table = runs.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(ids["exp"])))
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.has_class("-narrow")
        await pilot.pause(0.5)
        bar = detail.query_one("#stage-prune")
        assert bar.region.right <= 80                                   # the percentage fits
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = [app.screen.query_one(DataTable).get_row_at(i)[1] for i in range(app.screen.query_one(DataTable).row_count)]
        assert {"Cancel run", "Compare", "Help", "Quit", "New run"} <= set(keys)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunDetailScreen)
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("1")                                          # back to Runs, not to Run detail
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
