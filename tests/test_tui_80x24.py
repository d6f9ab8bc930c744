"""80×24 as a first-class size and the readable-Compare rules (issue #12): pure functions first, then
Pilot walks at 80×24 on seeded stores (the keys; Compare's folded header and its details key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

from backend.results.report import Row
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens._ppl import perplexities, perplexity_line
from greentui.screens.compare import CompareScreen, merge_identical_baselines
from greentui.screens.queue import QueueScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.screens.runs import RunsScreen, partial_mark
from greentui.widgets.bars import _dodge_labels, build_grouped_bars, build_scatter_pareto
from greentui.widgets.compare_summary import CompareSummary, fit_title, fold_notices
from greentui.widgets.keys import HelpScreen, KeyFooter, key_rows
from greentui.widgets.radar import draw_radar, hidden_under, legend_rows

from .conftest import pause_until
from .test_snapshots import build_finished_demo, build_fixed_store
from .test_tui import seed


def test_identical_baselines_merge_but_different_ones_stay() -> None:
    v1 = Row("m", 1, "vanilla", {"a": 0.5, "b": 0.4})
    p2 = Row("m", 2, "pruned", {"a": 0.4, "b": 0.3})
    v3 = Row("m", 3, "vanilla", {"a": 0.5, "b": 0.4})     # same items, same numbers: merged into #1
    p4 = Row("m", 4, "pruned", {"a": 0.3, "b": 0.3})
    v5 = Row("m", 5, "vanilla", {"a": 0.6, "b": 0.4})     # another limit: kept
    p4.baseline_run_id = 3
    # energy that cannot be told apart from noise (or was measured once): two baselines stay two rows
    acc, wh, merged = merge_identical_baselines([v1, p2, v3, p4, v5], [v1, p2, v3, p4, v5], ["a", "b"],
                                                lambda kept, dropped: False)
    assert merged == {} and [r.run_id for r in acc] == [1, 2, 3, 4, 5] and p4.baseline_run_id == 3
    acc, wh, merged = merge_identical_baselines([v1, p2, v3, p4, v5], [v1, p2, v3, p4, v5], ["a", "b"],
                                                lambda kept, dropped: (kept, dropped) == (1, 3))
    assert merged == {3: 1}
    assert [r.run_id for r in acc] == [1, 2, 4, 5] and [r.run_id for r in wh] == [1, 2, 4, 5]
    assert p4.baseline_run_id == 1  # its ratio is recomputed against the baseline shown beside it


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


def test_bar_caption_wraps_between_entries_at_80_columns() -> None:
    tasks = ["ARC-c", "BoolQ", "PIQA"]
    series = {f"#{i} pruned": [0.3, 0.6, 0.0] for i in range(2, 6)}
    stderr = {name: [0.02, 0.02, 0.02] for name in series}
    lines = build_grouped_bars(80, 18, "acc", tasks, series, stderr).plain.splitlines()
    assert len(lines) == 18 and all(len(line) <= 80 for line in lines)
    caption = " ".join(lines[-3:])
    assert "whiskers (right of each bar) = ±1 stderr" in caption and "0 = measured zero" in caption
    assert all(name in caption for name in series) and "…" not in caption


def test_partial_average_is_marked() -> None:
    assert partial_mark({"tasks_done": 2, "tasks_planned": 7}) == "*"
    assert partial_mark({"tasks_done": 7, "tasks_planned": 7}) == ""
    assert partial_mark({"tasks_done": None, "tasks_planned": 7}) == ""


def test_perplexity_line_orders_vanilla_pruned_lora(tmp_path: Path) -> None:
    ids = seed(tmp_path)
    s = Store(db_path(tmp_path))
    s.results.save_metric(ids["base"], "vanilla", "ppl_wikitext2", 40.0)
    s.results.save_metric(ids["exp"], "pruned", "ppl_wikitext2_before_lora", 60.0)
    s.results.save_metric(ids["exp"], "pruned", "ppl_wikitext2", 50.0)
    run = s.runs.get(ids["exp"])
    assert perplexities(s, run) == {"vanilla": 40.0, "pruned": 60.0, "pruned+LoRA": 50.0}
    line = perplexity_line(s, run)
    assert "vanilla 40.0 · pruned 60.0 · pruned+LoRA 50.0" in line.plain
    assert [line.plain[sp.start:sp.end] for sp in line.spans] == ["40.0", "60.0", "50.0"]  # the figures bold
    s.close()


@pytest.mark.slow  # fast-tier budget; the footer at 80x24: the snapshot walk (fast); the key map: test_keymap (fast)
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
        assert shown[:6] == ["help", "go('runs')", "go('queue')", "go('models')", "go('studies')", "quit"]
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
        keys = [str(app.screen.query_one(DataTable).get_row_at(i)[1]) for i in range(app.screen.query_one(DataTable).row_count)]
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


# ------------------------------------------------------------- Compare's folded header at 80×24

def test_folded_notices_stay_whole_and_count_the_rest() -> None:
    notices = [Text("ppl↓ vanilla 72.6 · pruned 79.9 · +LoRA 76.2"), Text("accuracy near chance"),
               Text("quality: estimate meter, n=1")]
    wide = fold_notices(notices, 200).plain
    assert wide.endswith("details: i") and all(n.plain in wide for n in notices)
    line = fold_notices(notices, 78).plain
    assert len(line) <= 78 and line.endswith("+1 more: i")
    assert "accuracy near chance" in line and "quality" not in line        # whole notices, in order
    tiny = fold_notices(notices, 40).plain
    assert len(tiny) <= 40 and tiny.endswith("+2 more: i") and "…" in tiny
    assert fold_notices([], 78).plain == "details: i"
    assert fit_title(Text("x" * 100), 78).cell_len == 78
    assert fit_title([Text("a" * 90), Text("b" * 70)], 78).plain == "b" * 70   # the longest form that fits


def _radar_drawn(app) -> bool:
    return isinstance(app.screen, CompareScreen) and any(r.region.height for r in app.screen.query("#radar-acc"))


async def test_compare_header_folds_to_two_lines_and_i_shows_the_details(tmp_path: Path) -> None:
    """Four runs and a merged baseline: before, the header took 7 lines, the radar 13 rows, Pareto 10."""
    ids = build_fixed_store(tmp_path)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_compare([ids["exp"], ids["exp2"], ids["exp3"], ids["exp4"]])
        await pause_until(pilot, lambda: _radar_drawn(app), what="Compare's radar")
        screen = app.screen
        head, details = screen.query_one("#compare-head"), screen.query_one("#compare-details")
        # the radar may be drawn a frame before the header's last layout (Compare reads the intervals first)
        await pause_until(pilot, lambda: head.region.height <= 2, what="the folded header")
        assert head.region.height <= 2 and not details.display
        assert screen.query_one("#compare-tabs").region.y <= 3            # app header + 2 lines
        assert screen.query_one("#radar-acc").region.height >= 17          # was 13
        summary = screen.query_one(CompareSummary).render().plain.splitlines()
        assert len(summary) == 2 and all(len(line) <= 78 for line in summary)
        assert summary[0].startswith("Compare #2, #3, #5, #6") and "7 tasks" in summary[0]
        assert "cpu_load-estimate" in summary[0]
        assert "baseline #4 = #1 charted once" in summary[1] and summary[1].endswith(": i")
        footer = screen.query_one(KeyFooter)
        await pause_until(pilot, lambda: footer.query("FooterKey"), what="the footer's keys")
        footer_keys = {k.action: k for k in footer.query("FooterKey")}
        assert footer_keys["details"].region.right <= 80                   # i is in the footer at 80
        assert ("this screen", "i", "Details") in [row[:3] for row in key_rows(screen)]  # and in Help
        await pilot.press("p")
        await pilot.pause()
        assert screen.query_one("#pareto-chart").region.height >= 14       # was 10
        await pilot.press("i")
        await pilot.pause()
        assert details.display and not screen.query_one(CompareSummary).display
        full = str(screen.query_one("#compare-title", Static).render())
        # measured alike (one pass a task): one line; #2 and #5 had three passes, their CVs differ
        assert "quality #3, #6: meter estimate · shortest window" in full and "quality #2: meter" in full
        assert "baseline #4 = #1 (same items, same accuracies, energy within noise)" in full
        await pilot.press("escape")                                        # Esc closes the details first
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen) and not details.display


@pytest.mark.slow
async def test_compare_details_default_follows_the_width(tmp_path: Path) -> None:
    """Wide: the full header by default and i folds it; narrow again: folded; Esc then goes back."""
    ids = build_fixed_store(tmp_path)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_compare([ids["exp"], ids["exp2"]])
        await pause_until(pilot, lambda: _radar_drawn(app), what="Compare's radar")
        screen = app.screen
        details, summary = screen.query_one("#compare-details"), screen.query_one(CompareSummary)
        assert details.display and not summary.display
        await pilot.press("i")
        await pilot.pause()
        assert not details.display and summary.display and summary.region.height == 2
        await pilot.press("i")
        await pilot.pause()
        table = screen.query_one("#ratio-table", DataTable)
        assert [c.value for c in table.columns][-2:] == ["avg", "ratio"]        # the paper's order when wide
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        assert not details.display and summary.display
        # narrow: Avg and Ratio next to the variant, on screen without scrolling
        assert [c.value for c in table.columns][:5] == ["metric", "run", "variant", "avg", "ratio"]
        await pilot.press("question_mark")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert ["i", "Details"] in [[str(c) for c in table.get_row_at(i)[:2]] for i in range(table.row_count)]
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_compare_demo_header_keeps_the_perplexity_story_at_80x24(tmp_path: Path) -> None:
    run = build_finished_demo(tmp_path)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_compare([run])
        await pause_until(pilot, lambda: _radar_drawn(app), what="Compare's radar")
        screen = app.screen
        assert screen.query_one("#compare-head").region.height <= 2        # was 8
        assert screen.query_one("#radar-acc").region.height >= 17          # was 12
        line = screen.query_one(CompareSummary).render().plain.splitlines()[1]
        assert "vanilla 72.6 · pruned 79.9 · +LoRA 76.2" in line and "near chance" in line
        await pilot.press("i")
        await pilot.pause()
        ppl = str(screen.query_one("#compare-ppl", Static).render())
        assert "pruned+LoRA 76.2" in ppl and "trained on the shipped text" in ppl
        assert "quality #2:" in str(screen.query_one("#compare-title", Static).render())
