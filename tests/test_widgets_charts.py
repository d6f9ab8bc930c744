"""Tests for greentui.widgets: braille canvas, radar geometry/rendering, plotext bars, power panel."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Sparkline

from greentui.widgets import (
    BrailleCanvas,
    GroupedBars,
    PowerPanel,
    PowerTrace,
    RadarChart,
    ScatterPareto,
    build_grouped_bars,
    build_scatter_pareto,
    describe_source,
    draw_radar,
    normalise,
    pareto_front,
    radar_frame,
    radar_points,
)
from greentui.widgets.radar import closed

TASKS = ["arc_challenge", "arc_easy", "boolq", "hellaswag", "piqa", "openbookqa", "winogrande"]
ACC = {
    "vanilla": [0.41, 0.72, 0.78, 0.57, 0.78, 0.31, 0.69],
    "pruned": [0.35, 0.65, 0.70, 0.49, 0.74, 0.28, 0.62],
}
STDERR = {"vanilla": [0.014] * 7, "pruned": [0.014] * 7}
BRAILLE = {chr(c) for c in range(0x2801, 0x2900)}


def lines_of(text: Text) -> list[str]:
    return text.plain.split("\n")


# ------------------------------------------------------------------ braille canvas
def test_braille_single_dots_map_to_unicode_bits():
    c = BrailleCanvas(2, 1)
    c.set(0, 0)
    assert str(c) == "\u2801 "
    c.set(1, 3)  # bottom-right dot of the first cell = bit 0x80
    assert str(c) == chr(0x2800 + 0x81) + " "
    c.set(2, 1)  # second cell, left column row 1 = bit 0x02
    assert str(c)[1] == chr(0x2802)
    assert c.get(1, 3) and not c.get(0, 3)


def test_braille_clips_and_renders_exact_size():
    c = BrailleCanvas(5, 3)
    c.set(-1, -1)
    c.set(100, 100)
    c.line(-10, 5, 50, 5)
    c.text(3, 1, "abcdef", "bold")
    lines = lines_of(c.render())
    assert len(lines) == 3 and all(len(line) == 5 for line in lines)
    assert lines[1].endswith("ab")


def test_braille_line_is_continuous_bresenham():
    c = BrailleCanvas(10, 5)
    c.line(0, 0, 19, 19)
    for i in range(20):
        assert c.get(i, i)
    c2 = BrailleCanvas(10, 5)
    c2.line(0, 19, 19, 0)  # reverse direction also hits both ends
    assert c2.get(0, 19) and c2.get(19, 0)


def test_braille_per_cell_style_last_write_wins():
    c = BrailleCanvas(1, 1)
    c.set(0, 0, "red")
    c.set(1, 1, "blue")
    line = c.render_lines()[0]
    assert line.spans and str(line.spans[-1].style) == "blue"


# ------------------------------------------------------------------ normalisation
def test_normalise_max_per_axis_is_one():
    out = normalise(ACC)
    for i in range(len(TASKS)):
        assert max(out[s][i] for s in out) == pytest.approx(1.0)
    assert out["pruned"][0] == pytest.approx(0.35 / 0.41)


def test_normalise_none_and_nan_stay_missing():
    out = normalise({"a": [None, 2.0, float("nan")], "b": [4.0, 1.0, 3.0]})
    assert out["a"][0] is None and out["a"][2] is None
    assert out["b"][0] == 1.0 and out["b"][2] == 1.0
    assert out["a"][1] == 1.0 and out["b"][1] == 0.5


def test_normalise_zero_or_empty_axis_does_not_divide_by_zero():
    out = normalise({"a": [0.0, None], "b": [0.0, None]})
    assert out == {"a": [0.0, None], "b": [0.0, None]}


def test_normalise_validates_input():
    with pytest.raises(ValueError):
        normalise({"a": [1.0], "b": [1.0, 2.0]})
    with pytest.raises(ValueError):
        normalise({"a": [1.0]}, mode="median")
    assert normalise({"a": [0.5]}, mode="none") == {"a": [0.5]}


# ------------------------------------------------------------------ geometry
def test_value_one_on_axis_zero_is_top_centre():
    w, h = 60, 20  # height-limited: the rim touches the top row of dots
    x, y = radar_points([1.0] + [0.0] * 6, 7, w, h)[0]
    assert x == pytest.approx((2 * w - 1) / 2)
    assert y == pytest.approx(0.0)
    assert int(round(x)) // 2 in (w // 2 - 1, w // 2)


def test_value_zero_is_centre():
    f = radar_frame(60, 20)
    for x, y in radar_points([0.0] * 7, 7, 60, 20):
        assert (x, y) == pytest.approx((f.cx, f.cy))
    # None (missing) is drawn at the centre too
    assert radar_points([None, 0.0, 0.0], 3, 60, 20)[0] == pytest.approx((f.cx, f.cy))


@pytest.mark.parametrize("n", [3, 5, 7, 8])
@pytest.mark.parametrize("size", [(60, 20), (100, 30), (30, 40)])
def test_axes_evenly_spaced_and_round_after_aspect_correction(n, size):
    aspect = 2.0
    f = radar_frame(*size, cell_aspect=aspect)
    pts = radar_points([1.0] * n, n, *size, cell_aspect=aspect)
    phys = [((x - f.cx) * 0.5, (f.cy - y) * aspect / 4) for x, y in pts]  # in cell widths
    radii = [math.hypot(px, py) for px, py in phys]
    assert max(radii) - min(radii) < 1e-9  # a unit ring is a circle on screen
    angles = [math.atan2(px, py) % (2 * math.pi) for px, py in phys]  # clockwise from up
    for i, a in enumerate(angles):
        assert a == pytest.approx(2 * math.pi * i / n, abs=1e-9)
    # clockwise: the second spoke is to the right of the first
    assert pts[1][0] > pts[0][0]


def test_frame_fits_inside_the_dot_grid():
    for w, h in [(10, 3), (60, 20), (200, 10), (20, 50)]:
        f = radar_frame(w, h)
        assert f.cx - f.rx >= -1e-9 and f.cx + f.rx <= 2 * w - 1 + 1e-9
        assert f.cy - f.ry >= -1e-9 and f.cy + f.ry <= 4 * h - 1 + 1e-9


def test_polygon_closes():
    pts = radar_points([0.5, 0.9, 0.2, 1.0, 0.7], 5, 40, 12)
    ring = closed(pts)
    assert len(ring) == 6 and ring[0] == ring[-1]
    c = BrailleCanvas(40, 12)
    c.polygon(pts)
    x0, y0 = (int(round(v)) for v in pts[-1])
    x1, y1 = (int(round(v)) for v in pts[0])
    assert c.get(x0, y0) and c.get(x1, y1)
    mid = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    near = [c.get(mid[0] + dx, mid[1] + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    assert any(near)  # the closing edge last->first was drawn


def test_radar_points_validates():
    with pytest.raises(ValueError):
        radar_points([1.0, 1.0], 3, 10, 10)
    with pytest.raises(ValueError):
        radar_points([], 0, 10, 10)
    f = radar_frame(20, 10)
    # values are clamped to the rim
    assert radar_points([5.0], 1, 20, 10)[0] == pytest.approx((f.cx, f.cy - f.ry))


# ------------------------------------------------------------------ radar rendering
def test_radar_renders_at_60x20_with_braille_and_all_labels():
    text = draw_radar(60, 20, "Accuracy", TASKS, ACC)
    lines = lines_of(text)
    assert len(lines) == 20 and all(len(line) == 60 for line in lines)
    plain = text.plain
    assert any(ch in BRAILLE for ch in plain)
    for task in TASKS:
        assert task in plain
    assert "Accuracy" in lines[0]
    assert "vanilla" in lines[-1] and "pruned" in lines[-1]


def test_radar_labels_do_not_overlap_the_chart():
    lines = lines_of(draw_radar(60, 20, "Accuracy", TASKS, ACC))
    for task in TASKS:
        row = next(line for line in lines if task in line)
        i = row.index(task)
        # a blank cell on each side of the label (or the widget edge)
        assert i == 0 or row[i - 1] == " "
        j = i + len(task)
        assert j == len(row) or row[j] == " "


def test_radar_missing_value_marker_and_small_sizes():
    data = {"vanilla": ACC["vanilla"], "pruned": ACC["pruned"][:-1] + [None]}
    plain = draw_radar(60, 20, "Accuracy", TASKS, data).plain
    assert "×" in plain and "missing" in plain
    for w, h in [(0, 0), (5, 3), (15, 6), (30, 8)]:
        lines = lines_of(draw_radar(w, h, "Accuracy", TASKS, ACC))
        if w and h:
            assert len(lines) == h and all(len(line) == w for line in lines)
    assert "no data" in draw_radar(40, 10, "T", [], {}).plain


def test_radar_long_labels_are_truncated_inside_the_width():
    axes = ["a_really_long_task_name_number_%d" % i for i in range(7)]
    lines = lines_of(draw_radar(50, 16, "T", axes, {"s": [1.0] * 7}))
    assert all(len(line) == 50 for line in lines)
    assert "…" in "".join(lines)


def test_radar_widget_validates_lengths():
    with pytest.raises(ValueError):
        RadarChart("t", ["a", "b"], {"s": [1.0]})


class RadarApp(App):
    def compose(self) -> ComposeResult:
        yield RadarChart("Accuracy", TASKS, ACC, id="radar")


async def test_radar_widget_pilot_update_data_changes_output():
    app = RadarApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        radar = app.query_one(RadarChart)
        assert radar.size.width == 100 and radar.size.height == 30
        before = radar.render().plain
        shot_before = app.export_screenshot()
        assert "arc_challenge" in before and any(ch in BRAILLE for ch in before)
        radar.update_data(["piqa", "boolq", "hellaswag"], {"p50": [0.1, 0.2, 0.3], "p20": [0.3, 0.2, 0.1]}, title="Energy Wh")
        await pilot.pause()
        after = radar.render().plain
        assert after != before
        assert "Energy Wh" in after and "p50" in after and "arc_challenge" not in after
        assert app.export_screenshot() != shot_before
        # resize re-renders at the new size
        await pilot.resize_terminal(70, 24)
        await pilot.pause()
        lines = radar.render().plain.split("\n")
        assert len(lines) == radar.size.height == 24 and len(lines[0]) == 70


# ------------------------------------------------------------------ plotext bars
def test_grouped_bars_include_labels_title_and_errorbars():
    text = build_grouped_bars(140, 22, "Accuracy per task", TASKS, ACC, STDERR)
    plain = text.plain
    lines = plain.split("\n")
    assert len(lines) == 22
    assert "Accuracy per task" in plain
    for task in TASKS:
        assert task in plain
    assert "┼" in plain and "±1 stderr" in plain
    assert "vanilla" in lines[-1] and "pruned" in lines[-1]


def test_grouped_bars_resize_changes_width_and_abbreviates():
    wide = build_grouped_bars(140, 20, "Acc", TASKS, ACC)
    narrow = build_grouped_bars(60, 20, "Acc", TASKS, ACC)
    assert max(len(l) for l in wide.plain.split("\n")) == 140
    assert max(len(l) for l in narrow.plain.split("\n")) == 60
    assert "ARC-c" in narrow.plain and "OBQA" in narrow.plain  # the registry's labels, with a key


def test_grouped_bars_empty_and_missing():
    for tasks, series in [([], {}), (TASKS, {}), (["piqa"], {"vanilla": [None]})]:
        assert "no data" in build_grouped_bars(60, 12, "Energy", tasks, series).plain
    plain = build_grouped_bars(120, 16, "Acc", ["piqa", "boolq"], {"v": [0.5, None]}).plain
    assert "n/a: boolq (v)" in plain
    assert "too small" in build_grouped_bars(10, 4, "Acc", TASKS, ACC).plain


def test_plotext_state_does_not_leak_between_builds():
    a = build_grouped_bars(80, 16, "First", ["piqa"], {"v": [0.5]}).plain
    build_scatter_pareto(80, 16, "Scatter", [("x", 1.0, 0.5)])
    b = build_grouped_bars(80, 16, "First", ["piqa"], {"v": [0.5]}).plain
    assert a == b and "Scatter" not in b


def test_pareto_front():
    pts = [("vanilla", 12.0, 0.61), ("p20", 9.5, 0.57), ("p50", 6.1, 0.45), ("bad", 10.0, 0.50), ("tie", 9.5, 0.55)]
    assert [p[0] for p in pareto_front(pts)] == ["p50", "p20", "vanilla"]
    assert pareto_front([]) == []


def test_scatter_pareto_labels_and_empty():
    pts = [("vanilla", 12.0, 0.61), ("p20", 9.5, 0.57), ("p50", 6.1, 0.45)]
    plain = build_scatter_pareto(90, 20, "Accuracy vs energy", pts).plain
    assert "Accuracy vs energy" in plain and "vanilla" in plain and "p50" in plain
    assert "avg Wh" in plain
    assert "no data" in build_scatter_pareto(60, 12, "X", []).plain
    assert "p" in build_scatter_pareto(60, 12, "X", [("p", 1.0, 1.0)]).plain  # single point


class PlotApp(App):
    def compose(self) -> ComposeResult:
        yield GroupedBars("Accuracy per task", TASKS, ACC, STDERR, id="bars")
        yield ScatterPareto("Pareto", [], id="scatter")


async def test_plotext_widgets_pilot_resize_and_update():
    app = PlotApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bars = app.query_one(GroupedBars)
        scatter = app.query_one(ScatterPareto)
        content = bars.render()
        plain = str(content) if not isinstance(content, Text) else content.plain
        assert "Accuracy per task" in plain
        assert max(len(l) for l in plain.split("\n")) == bars.size.width == 120
        assert "no data" in str(scatter.render())
        await pilot.resize_terminal(80, 40)
        await pilot.pause()
        content = bars.render()
        plain = str(content) if not isinstance(content, Text) else content.plain
        assert max(len(l) for l in plain.split("\n")) == 80
        scatter.update_data([("vanilla", 12.0, 0.61), ("p20", 9.5, 0.57)], title="Runs")
        await pilot.pause()
        assert "vanilla" in str(scatter.render())


# ------------------------------------------------------------------ power
def test_power_trace_trapezoid_wh():
    tr = PowerTrace()
    tr.add(0.0, 100.0, "nvml")
    tr.add(3600.0, 100.0, "nvml")
    assert tr.wh == pytest.approx(100.0)
    tr2 = PowerTrace()
    for t in range(3601):
        tr2.add(float(t), 100.0, "nvml")
    assert tr2.wh == pytest.approx(100.0)
    assert len(tr2.recent) == 120
    # linear ramp 0 -> 200 W over an hour: trapezoid is exact = 100 Wh
    tr3 = PowerTrace()
    tr3.add(1000.0, 0.0)
    tr3.add(4600.0, 200.0)
    assert tr3.wh == pytest.approx(100.0)


def test_power_trace_ignores_bad_samples():
    tr = PowerTrace()
    tr.add(10.0, 100.0)
    assert not tr.add(11.0, float("nan"))
    tr.add(5.0, 100.0)  # clock went backwards: not integrated
    assert tr.wh == 0.0
    tr.add(41.0, 100.0)
    assert tr.wh == pytest.approx(1.0)


def test_describe_source():
    assert describe_source("nvml") == ("NVML (measured)", False)
    assert describe_source("rapl")[1] is False
    assert describe_source("codecarbon-estimate") == ("CodeCarbon (estimate)", True)
    assert describe_source("mystery")[1] is True  # unknown meters are never "measured"


class PowerApp(App):
    def compose(self) -> ComposeResult:
        yield PowerPanel(id="power")


async def test_power_panel_pilot():
    app = PowerApp()
    async with app.run_test(size=(80, 20)) as pilot:
        panel = app.query_one(PowerPanel)
        for t in range(0, 200):
            panel.add_sample(float(t), 150.0 + (t % 10), "codecarbon-estimate", 300.0)
        await pilot.pause()
        assert "(estimate)" in panel.source_text()
        assert "(estimate)" in panel.wh_text()
        spark = app.query_one(Sparkline)
        assert spark.data is not None and len(spark.data) == 120
        assert list(spark.data)[-1] == 150.0 + 199 % 10
        assert "300 W limit" in panel.watts_text()
        assert panel.wh == pytest.approx(panel.trace.wh) and panel.wh > 0
        screen = app.export_screenshot()
        assert "estimate" in screen
        panel.reset()
        panel.add_sample(0.0, 90.0, "nvml", None)
        panel.add_sample(3600.0, 110.0, "nvml", None)
        await pilot.pause()
        assert panel.wh == pytest.approx(100.0)
        assert "NVML (measured)" in panel.source_text() and "estimate" not in panel.wh_text()
        assert "limit unknown" in panel.watts_text()


def test_power_panel_add_sample_before_mount():
    panel = PowerPanel()
    panel.add_sample(0.0, 100.0, "rapl", 65.0)
    panel.add_sample(3600.0, 100.0, "rapl", 65.0)
    assert panel.wh == pytest.approx(100.0)


# ------------------------------------------------------------------ import hygiene
def test_widgets_do_not_import_ml_stack():
    code = (
        "import sys, greentui.widgets\n"
        "bad = [m for m in ('torch', 'transformers', 'lm_eval', 'peft') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plotext_label_dedupe_is_ordered_in_the_app():
    """The app's plotext keeps the first of duplicate (tick, label) pairs in order (not a set's
    hash-seed order), so chart labels sit in the same columns on every start."""
    import plotext._utility

    import greentui.widgets._plotext  # noqa: F401  (installs the ordered dedupe)

    data = [(3, "c"), (1, "a"), (3, "c"), (2, "b"), (1, "a")]
    assert plotext._utility.no_duplicates(data) == [(3, "c"), (1, "a"), (2, "b")]
