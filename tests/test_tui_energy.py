"""The TUI's energy additions (issue #11): Run detail's energy section, Compare's quality line,
reference rows marked, and the Energy tab (paper vs yours, noise, efficiency chart). A real store
seeded with passes, efficiency points and an imported published table."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from backend.results.reference_tables import import_table
from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.compare import CompareScreen
from greentui.screens.run_detail import RunDetailScreen
from greentui.widgets.efficiency import EfficiencyChart, build_efficiency_chart
from greentui.widgets.energy_panel import EnergyPanel

SIZE = (160, 48)
TABLE = """model,variant,BoolQ,PIQA,Avg,Ratio
org/tiny-llama,vanilla,62.0,70.0,66.0,
org/tiny-llama,pruned,55.0,66.0,60.5,0.917
"""


def _passes(base_kwh: float, spread: float) -> list[dict]:
    return [{"repeat": k, "seconds": 2.0, "tokens": 500, "energy_kwh": base_kwh * (1 + spread * (k - 2)),
             "meter": "codecarbon:cpu_load-estimate+ram-estimate",
             "provenance": {"machine_load": {"other_cores": 0.4 * k, "cores": 2}}} for k in (1, 2, 3)]


def seed(ws: Path, tmp_path: Path) -> dict[str, int]:
    s = Store(db_path(ws))
    mid = s.models.upsert("org/tiny-llama", name="org/tiny-llama", arch="llama", params=1_000_000)
    base = s.runs.create(mid, "baseline", RunConfig(model="x", no_prune=True, repeats=3).to_dict(), status="done")
    exp = s.runs.create(mid, "experiment", RunConfig(model="x", repeats=3).to_dict(), status="done",
                       parent_run_id=base)
    for run, variant, kwh, acc in ((base, "vanilla", 1e-5, 0.6), (exp, "pruned", 0.5e-5, 0.55)):
        s.results.save_metric(run, "run", "idle_power_w", 5.0, {"source": "codecarbon-estimate"})
        for task in ("boolq", "piqa"):
            s.results.save_task_result(run, variant, task, {
                "acc": acc, "acc_stderr": 0.05, "n_samples": 50, "seconds": 2.0, "tokens": 500,
                "energy_kwh": kwh, "meter": "codecarbon:cpu_load-estimate+ram-estimate",
                "repeats": _passes(kwh, 0.01)})
    s.results.save_metric(exp, "run", "baseline_reuse", base, {"key": "0123abcd", "applies_to": "accuracy"})
    pts = [{"batch_size": b, "seq_len": 32, "forwards": 3, "tokens": 96 * b, "seconds": 1.0,
            "tokens_per_s": 96.0 * b, "joules": 1.0, "j_per_token": j / b, "meter": "codecarbon",
            "params": p, "flops_per_token": 2 * p} for b in (1, 8)
           for j, p in [(0.01, 1_000_000)]]
    s.results.save_efficiency(exp, "vanilla", pts)
    s.results.save_efficiency(exp, "pruned", [dict(p, j_per_token=p["j_per_token"] * 0.8, params=800_000,
                                           flops_per_token=1_600_000) for p in pts])
    f = tmp_path / "paper.csv"
    f.write_text(TABLE)
    (ref,) = import_table(s, f, "acc", "paper T1")
    s.close()
    return {"base": base, "exp": exp, "ref": ref}


@pytest.fixture
def seeded(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws, seed(ws, tmp_path)


async def test_run_detail_energy_section(seeded) -> None:
    ws, ids = seeded
    app = GreentuiApp(ws, manage_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(RunDetailScreen(ids["exp"]))
        await pilot.pause()
        await pilot.pause()
        text = str(app.screen.query_one(EnergyPanel).render())
        assert "quality: meter estimate" in text and "repeats CV" in text
        assert "other load ≤1.2 cores (mean 0.8) of 2" in " ".join(text.split())  # beside the windows
        assert "95 % CI, CV" in text and "above idle" in text and "J/token" in text and "J/correct" in text
        assert "beyond noise" in text  # half the energy, 1 % spread
        assert "efficiency pruned batch 8" in text
        title = str(app.screen.query_one("#run-title", Static).render())
        assert f"baseline run {ids['base']} reused for accuracy (key 0123abcd)" in title  # issue #18


@pytest.mark.slow  # fast-tier budget: the screen's other tests and its snapshot cover the common path
async def test_compare_energy_tab_paper_vs_yours(seeded) -> None:
    ws, ids = seeded
    app = GreentuiApp(ws, manage_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        app.open_compare([ids["exp"], ids["ref"]])
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        title = str(screen.query_one("#compare-title", Static).render())
        assert "reference" in title and f"quality #{ids['exp']}" in title
        await pilot.press("t")
        await pilot.pause()
        ratio = screen.query_one("#ratio-table", DataTable)
        assert "(ref)" in str(ratio.get_row(f"acc-{ids['ref']}-pruned")[1])
        await pilot.press("e")
        await pilot.pause()
        text = str(screen.query_one("#energy-text", Static).render())
        assert "paper vs yours" in text and "acc ratio 0.917 (no stderr) vs" in text  # a published table: no stderr, and it says so
        assert "beyond noise" in text and "(reference)" in text
        chart = screen.query_one(EfficiencyChart)
        assert [b for b, _ in chart.series["vanilla"]] == [1, 8]
        assert chart.ratios[1]["energy_ratio"] == pytest.approx(0.8)
        assert "J/token" in chart.render().plain or "vanilla" in chart.render().plain


def test_efficiency_chart_text_and_missing_points() -> None:
    text = build_efficiency_chart(120, 14, "J/token", {"vanilla": [(1, 0.01), (8, 0.002)],
                                                      "pruned": [(1, 0.008), (8, None)]},
                                  [{"batch_size": 1, "energy_ratio": 0.8, "param_ratio": 0.8, "flop_ratio": 0.8}])
    plain = text.plain
    assert "vanilla" in plain and "pruned" in plain and "×0.80" in plain and "no energy: pruned b8" in plain
    assert len(plain.splitlines()) == 14
    assert "no efficiency points" in build_efficiency_chart(60, 10, "J", {}).plain
