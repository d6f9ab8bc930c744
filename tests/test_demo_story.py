"""The demo tells the study's story: `d` on an empty workspace at 80×24, through the detached runner,
to a finished run whose WikiText-2 perplexity reads vanilla < pruned+LoRA < pruned — in the store,
in Run detail and in Compare. Slow (the real pipeline on the shipped trained demo model).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import Static

from backend.service.runs import SHIPPED_DEMO_MODEL
from greentui.app import GreentuiApp
from greentui.screens._ppl import perplexities
from greentui.screens.compare import CompareScreen
from greentui.screens.run_detail import RunDetailScreen

from .test_tui_e2e import FINAL, describe_failure, stop_runner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
RUN_TIMEOUT = 1200


def test_shipped_demo_model_is_small_safetensors_with_its_tokenizer() -> None:
    files = {p.name: p.stat().st_size for p in SHIPPED_DEMO_MODEL.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files and "greentui_demo.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # never pickles
    assert sum(files.values()) <= 10 * 1024 * 1024


async def test_demo_key_to_finished_run_tells_the_perplexity_story(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("d")
            run_id = None
            t0 = time.time()
            while time.time() - t0 < 60 and run_id is None:  # the detail opens at once: a file copy
                await pilot.pause(0.2)
                if isinstance(app.screen, RunDetailScreen):
                    run_id = app.screen.run_id
            assert run_id is not None, "the demo did not open its run"
            while time.time() - t0 < RUN_TIMEOUT and app.store.runs.get(run_id)["status"] not in FINAL:
                await pilot.pause(1.0)
            run = app.store.runs.get(run_id)
            assert run["status"] == "done", describe_failure(ws, run_id)
            ppl = perplexities(app.store, run)
            assert set(ppl) == {"vanilla", "pruned", "pruned+LoRA"}
            assert ppl["vanilla"] < ppl["pruned+LoRA"] < ppl["pruned"], ppl
            await pilot.pause(1.0)
            detail = app.screen
            assert isinstance(detail, RunDetailScreen)
            line = str(detail.query_one("#run-ppl", Static).render())
            assert "pruned+LoRA" in line and f"{ppl['vanilla']:.1f}" in line
            assert "near chance" in str(detail.query_one("#run-note", Static).render())
            await pilot.press("c")
            await pilot.pause(1.0)
            assert isinstance(app.screen, CompareScreen)
            assert "pruned+LoRA" in str(app.screen.query_one("#compare-ppl", Static).render())
    finally:
        stop_runner(ws)
