"""Every screen of the workbench at 80×24 and 160×48, compared whole with a golden text file.

The store is built by ``fixed_workspace`` with fixed timestamps (and TZ=UTC), the header's workspace
path is replaced by a fixed one, and the cursor does not blink, so a screen renders the same on every
machine and every day. See tests/snapshot.py for the comparison and ``scripts/update-snapshots`` to
regenerate the goldens after an intended change (then review ``git diff tests/snapshots``).

One app per size walks all screens, so the check costs two app start-ups, not twenty.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp

from .conftest import tiered
from .snapshot import UPDATE, check

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
ACC = {"arc_challenge": 0.30, "arc_easy": 0.55, "boolq": 0.62, "hellaswag": 0.41, "piqa": 0.70,
       "openbookqa": 0.28, "winogrande": 0.52}
SIZES = {"80x24": (80, 24), "160x48": (160, 48)}


def _results(variant: str, scale_acc: float, scale_wh: float) -> list[dict]:
    return [{"variant": variant, "task": t, "acc": a * scale_acc, "acc_stderr": 0.02, "acc_norm": a,
             "energy_kwh": 0.001 * (i + 1) * scale_wh, "meter": "codecarbon:cpu_load-estimate",
             "n_samples": 50, "seconds": 3.0 + i} for i, (t, a) in enumerate(ACC.items())]


def _with_repeats(rows: list[dict], spread: tuple[float, ...]) -> list[dict]:
    """Each task measured once per factor of ``spread`` (passes around its mean): intervals to show."""
    for r in rows:
        r["repeats"] = [{"repeat": k + 1, "seconds": r["seconds"], "energy_kwh": r["energy_kwh"] * f,
                         "meter": r["meter"]} for k, f in enumerate(spread)]
    return rows


def build_fixed_store(ws: Path) -> dict[str, int]:
    """A model; a baseline and two experiments (done); two queued, one failed, one interrupted."""
    s = Store(db_path(ws))
    mid = s.models.upsert("org/tiny-llama", name="org/tiny-llama", arch="llama", params=1_234_567, layers=6,
                         heads=12, kv_heads=4, hidden=192, intermediate=384, size_bytes=5_000_000)
    cfg = RunConfig(model="org/tiny-llama", limit=50).to_dict()
    base = s.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    s.results.save_task_results(base, _with_repeats(_results("vanilla", 1.0, 1.0), (0.98, 1.0, 1.02)))
    exp = s.runs.create(mid, "experiment", cfg, status="done", parent_run_id=base)
    # three passes a task on both sides: an unpaired interval (0.70 ±…)
    rows = _with_repeats(_results("pruned", 0.9, 0.7), (1.01, 1.0, 0.99))
    rows[0]["acc"] = 0.10  # beyond noise on arc_challenge
    s.results.save_task_results(exp, rows)
    s.runs.update(exp, params_before=1_234_567, params_after=900_000, stage="evaluate", device="cpu")
    for kind, payload in [
        ("stage_start", {"stage": "load", "index": 0, "total": 5}),
        ("log", {"line": "loading org/tiny-llama on cpu"}),
        ("stage_end", {"stage": "load", "seconds": 1.2}),
        ("stage_start", {"stage": "baseline", "index": 1, "total": 5}),
        ("stage_end", {"stage": "baseline", "seconds": 30.0}),
        ("stage_start", {"stage": "prune", "index": 2, "total": 5}),
        ("progress", {"stage": "prune", "fraction": 0.5, "message": "taylor importance"}),
        ("stage_end", {"stage": "prune", "seconds": 4.0}),
        ("stage_start", {"stage": "lora", "index": 3, "total": 5}),
        ("stage_end", {"stage": "lora", "seconds": 20.0}),
        ("stage_start", {"stage": "evaluate", "index": 4, "total": 5}),
        ("result", {"variant": "pruned", "task": "boolq", "acc": 0.558, "wh": 3.0, "meter": "codecarbon"}),
        ("done", {"status": "done"}),
    ]:
        s.events.add(exp, kind, payload)
    for i in range(30):
        s.events.add_power_sample(exp, T0 + 600 + i, 40.0 + (i % 7), "rapl", 65.0)
    exp2 = s.runs.create(mid, "experiment", dict(cfg, prune_ratio=0.5), status="done", parent_run_id=base)
    s.results.save_task_results(exp2, _results("pruned", 0.8, 0.5))
    s.runs.update(exp2, params_before=1_234_567, params_after=700_000)
    # a second baseline with the same numbers (merged in Compare) and two more experiments: four to compare
    base3 = s.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    # its energy agrees with the first baseline's within noise (3 passes each): Compare may merge the two
    s.results.save_task_results(base3, _with_repeats(_results("vanilla", 1.0, 1.02), (0.95, 1.0, 1.05)))
    exp3 = s.runs.create(mid, "experiment", dict(cfg, importance="l1", energy_design="paired"), status="done",
                         parent_run_id=base3)
    # the paired protocol: the run's own vanilla windows beside its pruned ones, pass k with pass k; their
    # log-ratios scatter around 0 (0.9-1.1): an inconclusive ratio (≈1)
    s.results.save_task_results(exp3, [*_with_repeats(_results("vanilla", 1.0, 0.8), (1.0, 1.0, 1.0)),
                                       *_with_repeats(_results("pruned", 0.95, 0.8), (0.9, 1.1, 1.0))])
    exp4 = s.runs.create(mid, "experiment", dict(cfg, importance="layer-drop", prune_ratio=0.25), status="done",
                        parent_run_id=base)
    rows4 = _results("pruned", 0.7, 0.6)
    rows4[2]["acc"] = 0.0  # a measured zero: drawn as "0", not as a gap
    s.results.save_task_results(exp4, rows4)
    q1 = s.runs.create(mid, "experiment", dict(cfg, prune_ratio=0.25), status="queued")
    q2 = s.runs.create(mid, "experiment", dict(cfg, importance="l2"), status="queued")
    failed = s.runs.create(mid, "experiment", cfg, status="queued")
    s.runs.finish(failed, "failed", "CUDA out of memory while pruning layer 3")
    lost = s.runs.create(mid, "experiment", dict(cfg, importance="random"), status="queued")
    s.runs.finish(lost, "interrupted", "the runner died (pid 4242)")
    # a study over the baseline and the first two experiments (the Studies and Study screens)
    from backend.schema.study import parse
    from backend.service.studies import _cell_record, all_cells
    text = ('[study]\nname = "ratios"\nmodels = ["org/tiny-llama"]\n[grid]\nprune_ratio = ["2/7", "1/2"]\n'
            '[run]\nlimit = 50\n')
    study = s.studies.save("ratios", text)
    cells = all_cells(parse(text))
    s.studies.set_cells(study, [_cell_record(c) for c in cells])
    for cell, run in zip(cells, (base, exp, exp2)):
        s.studies.link(study, cell.key, run)
    s.conn.execute("UPDATE studies SET created_at = ?, updated_at = ?", (T0, T0))
    # fixed clocks: what the screens show as dates and durations never depends on today
    c = s.conn
    c.execute("UPDATE models SET added_at = ?", (T0,))
    c.execute("UPDATE runs SET created_at = ? + id * 60, started_at = NULL, finished_at = NULL", (T0,))
    c.execute("UPDATE runs SET started_at = created_at + 5, finished_at = created_at + 55 "
              "WHERE status NOT IN ('queued')")
    c.execute("UPDATE events SET t = ? + id", (T0 + 600,))
    s.close()
    return {"model": mid, "base": base, "exp": exp, "exp2": exp2, "exp3": exp3, "exp4": exp4, "q1": q1,
            "q2": q2, "failed": failed, "lost": lost}


def build_finished_demo(ws: Path) -> int:
    """A finished demo run of the shipped demo model, as the pipeline records it (figures of a real run)."""
    import shutil

    from backend.service.runs import SHIPPED_DEMO_MODEL, demo_config

    model_dir = ws / "demo-model"
    shutil.copytree(SHIPPED_DEMO_MODEL, model_dir)
    s = Store(db_path(ws))
    mid = s.models.upsert(str(model_dir), name=str(model_dir), arch="llama", params=1_312_384, layers=6,
                         heads=8, kv_heads=4, hidden=128, intermediate=384, size_bytes=5_255_576)
    cfg = demo_config(str(model_dir)).to_dict()
    cfg["data_dir"] = "bundled"
    base = s.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    chance = {"arc_challenge": 0.2, "arc_easy": 0.3, "boolq": 0.6, "hellaswag": 0.2, "piqa": 0.5,
              "openbookqa": 0.1, "winogrande": 0.5}
    rows = [{"variant": "vanilla", "task": t, "acc": a, "acc_stderr": 0.13, "acc_norm": a,
             "energy_kwh": 0.0000021, "meter": "codecarbon:cpu_load-estimate", "n_samples": 10, "seconds": 4.0}
            for t, a in chance.items()]
    s.results.save_task_results(base, rows)
    s.results.save_metric(base, "vanilla", "ppl_wikitext2", 72.58)
    exp = s.runs.create(mid, "experiment", cfg, status="done", parent_run_id=base, label="demo")
    s.results.save_task_results(exp, [dict(r, variant="pruned", acc=r["acc"] * 0.9, energy_kwh=0.0000017) for r in rows])
    s.results.save_metric(exp, "pruned", "ppl_wikitext2_before_lora", 79.87)
    s.results.save_metric(exp, "pruned", "ppl_wikitext2", 76.24)
    s.runs.update(exp, params_before=1_312_384, params_after=956_032, stage="evaluate", device="cpu")
    for i, (stage, secs) in enumerate((("load", 31.4), ("baseline", 84.1), ("prune", 36.5), ("lora", 205.6),
                                       ("evaluate", 37.5))):
        s.events.add(exp, "stage_start", {"stage": stage, "index": i, "total": 5})
        s.events.add(exp, "stage_end", {"stage": stage, "seconds": secs})
    s.events.add(exp, "log", {"line": "vanilla WikiText-2 perplexity 72.58 on 2032 tokens"})
    s.events.add(exp, "log", {"line": "pruned, before LoRA, WikiText-2 perplexity 79.87 on 2032 tokens"})
    s.events.add(exp, "log", {"line": "pruned WikiText-2 perplexity 76.24 on 2032 tokens"})
    s.events.add(exp, "done", {"status": "done"})
    c = s.conn
    c.execute("UPDATE models SET added_at = ?", (T0,))
    c.execute("UPDATE runs SET created_at = ? + id * 60, started_at = ? + id * 60 + 5, "
              "finished_at = ? + id * 60 + 400", (T0, T0, T0))
    c.execute("UPDATE events SET t = ? + id", (T0 + 600,))
    s.close()
    return exp


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    # plotext's hash-seed-dependent label order is fixed in the app (greentui/widgets/_plotext.py)
    yield
    monkeypatch.undo()
    time.tzset()


async def _settle(app, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


class _Shots:
    """Collects every mismatch of one walk, so one failing screen does not hide the others."""

    def __init__(self, app, size: str):
        self.app, self.size, self.problems = app, size, []

    async def take(self, pilot, name: str) -> None:
        await _settle(self.app, pilot)
        self.app.sub_title = "~/greentui-runs"  # the real one is pytest's tmp dir
        await pilot.pause()
        problem = await check(self.app, pilot, f"{name}-{self.size}")
        if problem:
            self.problems.append(problem)


def _app(ws: Path) -> GreentuiApp:
    return GreentuiApp(ws, manage_runner=False)


def _fixed(tmp_path: Path, size: str) -> tuple[GreentuiApp, _Shots, dict]:
    """An app on the fixed store (its run ids) and the shot collector of one walk."""
    ws = tmp_path / "ws"
    ws.mkdir()
    ids = build_fixed_store(ws)
    app = _app(ws)
    return app, _Shots(app, size), ids


async def _walk_empty_and_demo(tmp_path: Path, size: str) -> list[str]:
    """The first screen of an empty workspace; the demo's Run detail and Compare."""
    empty_ws = tmp_path / "empty"
    empty_ws.mkdir()
    app = _app(empty_ws)
    shots = _Shots(app, size)
    async with app.run_test(size=SIZES[size]) as pilot:
        await shots.take(pilot, "runs-empty")
    problems = shots.problems
    demo_ws = tmp_path / "demo"
    demo_ws.mkdir()
    demo_run = build_finished_demo(demo_ws)
    app = _app(demo_ws)
    shots = _Shots(app, size)
    async with app.run_test(size=SIZES[size]) as pilot:
        app.open_run(demo_run)
        await shots.take(pilot, "run-detail-demo")
        await pilot.press("c")
        await shots.take(pilot, "compare-demo")
    return problems + shots.problems


async def _walk_lists_and_run_detail(tmp_path: Path, size: str) -> list[str]:
    """Runs, the delete confirmation, Queue, Models, New run, Run detail (finished, help, failed)."""
    app, shots, ids = _fixed(tmp_path, size)
    async with app.run_test(size=SIZES[size]) as pilot:
        await shots.take(pilot, "runs")
        await pilot.press("delete")  # delete the highlighted run: asks first
        await shots.take(pilot, "confirm-delete")
        await pilot.press("n")
        await pilot.press("2")
        await shots.take(pilot, "queue")
        await pilot.press("3")
        await shots.take(pilot, "models")
        await pilot.press("1", "n")
        await shots.take(pilot, "new-run")
        await pilot.press("escape")
        app.open_run(ids["exp"])
        await shots.take(pilot, "run-detail")
        await pilot.press("question_mark")
        await shots.take(pilot, "help")
        await pilot.press("escape")
        await pilot.press("escape")
        app.open_run(ids["failed"])
        await shots.take(pilot, "run-detail-failed")
    return shots.problems


async def _walk_compare(tmp_path: Path, size: str) -> list[str]:
    """Compare of one run against its baseline, of two runs on every tab, of four runs."""
    app, shots, ids = _fixed(tmp_path, size)
    async with app.run_test(size=SIZES[size]) as pilot:
        app.open_compare([ids["exp"]])
        await shots.take(pilot, "compare-radar")
        await pilot.press("escape")
        app.open_compare([ids["exp"], ids["exp2"]])
        await shots.take(pilot, "compare-several-radar")
        for key, tab in (("b", "bars"), ("t", "table"), ("p", "pareto"), ("e", "energy")):
            await pilot.press(key)
            await shots.take(pilot, f"compare-several-{tab}")
        await pilot.press("escape")
        app.open_compare([ids["exp"], ids["exp2"], ids["exp3"], ids["exp4"]])
        await shots.take(pilot, "compare-four-radar")
        await pilot.press("w")  # below 100 columns: the energy radar instead of the accuracy one
        await shots.take(pilot, "compare-four-radar-wh")
        for key, tab in (("b", "bars"), ("p", "pareto")):
            await pilot.press(key)
            await shots.take(pilot, f"compare-four-{tab}")
        await pilot.press("i")  # the full header: unfolded below 100 columns, folded above
        await shots.take(pilot, "compare-four-details")
    return shots.problems


async def _walk_studies(tmp_path: Path, size: str) -> list[str]:
    """Studies: the list, a study's grid, its answer and tables, the new-study form."""
    app, shots, _ = _fixed(tmp_path, size)
    async with app.run_test(size=SIZES[size]) as pilot:
        await pilot.press("4")
        await shots.take(pilot, "studies")
        await pilot.press("enter")
        await shots.take(pilot, "study-grid")
        await pilot.press("o")
        await shots.take(pilot, "study-answer")
        await pilot.press("t")
        await shots.take(pilot, "study-tables")
        await pilot.press("escape", "N")
        await shots.take(pilot, "new-study")
    return shots.problems


# Four walks, not one: each is a few seconds, so pytest-xdist's workers share them instead of one
# worker holding a 15 s test at the end of the fast tier.
WALKS = {"empty-and-demo": _walk_empty_and_demo, "lists-and-run-detail": _walk_lists_and_run_detail,
         "compare": _walk_compare, "studies": _walk_studies}


@pytest.mark.parametrize("walk", list(WALKS))
@pytest.mark.parametrize("size", tiered(list(SIZES), fast=("80x24",)))  # 160x48 in CI's slow tier
async def test_every_screen_matches_its_golden(tmp_path, utc, size, walk) -> None:
    problems = await WALKS[walk](tmp_path, size)
    assert not problems, "screens differ from tests/snapshots (scripts/update-snapshots regenerates " \
                         "them after an intended change):\n\n" + "\n\n".join(problems)
    if UPDATE:
        pytest.skip("goldens written; review git diff tests/snapshots")
