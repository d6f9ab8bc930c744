"""Run detail → export model (``E``): the dialog, its refusals under the field, and (slow) a real export
through ``greentui export-model`` in its own process, with progress.

The refusal tests need no weights: the service's checks read config.json and the widths manifest only,
so the run's saved model here is a config, a manifest and an empty safetensors file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input, Label, Select

from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import PACKAGE_DATA, db_path
from greentui.app import GreentuiApp
from greentui.screens.export_model import ExportModelScreen
from greentui.screens.run_detail import RunDetailScreen

from .conftest import pause_until

DEMO = PACKAGE_DATA / "demo-model"
NARROW = {"heads": 4, "kv_heads": 4, "head_dim": 16, "intermediate": 256}
WHOLE = {"heads": 8, "kv_heads": 4, "head_dim": 16, "intermediate": 384}


def _seed(ws: Path, model_files=None) -> tuple[int, int]:
    """A baseline and an experiment run (done) whose folder holds a saved pruned model."""
    s = Store(db_path(ws))
    mid = s.models.upsert(str(DEMO), name="demo-model", arch="llama")
    base = s.runs.create(mid, "baseline", RunConfig(model=str(DEMO), no_prune=True).to_dict(), status="done")
    exp = s.runs.create(mid, "experiment", RunConfig(model=str(DEMO), ignore_first=1, ignore_last=1).to_dict(),
                        status="done", parent_run_id=base)
    s.close()
    model = ws / f"run-{exp:05d}" / "model"
    if model_files is None:  # what the checks read, without weights
        model.mkdir(parents=True)
        shutil.copy(DEMO / "config.json", model / "config.json")
        (model / "model.safetensors").write_bytes(b"")
        layers = [WHOLE] + [NARROW] * 4 + [WHOLE]
        (model / "greentui_layers.json").write_text(json.dumps({"version": 1, "num_hidden_layers": 6, "layers": layers}))
    else:
        shutil.copytree(model_files, model)
    (model / "greentui_prune_report.json").write_text(json.dumps({"run_id": exp, "lora_merged": False}))
    if model_files is None:  # an adapter as the checks see it
        adapter = ws / f"run-{exp:05d}" / "lora" / "adapter"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text("{}")
        (adapter / "adapter_model.safetensors").write_bytes(b"")
    return base, exp


async def _open_dialog(app, pilot, run_id: int) -> ExportModelScreen:
    app.push_screen(RunDetailScreen(run_id))
    await pause_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
    await pilot.press("E")
    return await pause_until(pilot, lambda: isinstance(app.screen, ExportModelScreen) and app.screen)


async def test_export_dialog_refuses_under_the_field(workspace) -> None:
    _, exp = _seed(workspace)
    app = GreentuiApp(workspace, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await _open_dialog(app, pilot, exp)
        out = dialog.query_one("#export-out", Input)
        assert out.value == str(workspace / "exports" / f"run-{exp:05d}")
        assert dialog.query_one("#export-merge_lora", Checkbox).value is True  # the run had LoRA
        dialog.query_one("#export-format", Select).value = "plain"
        await pilot.press("enter")
        error = dialog.query_one("#export-format-error", Label)
        await pause_until(pilot, lambda: "-shown" in error.classes, timeout=30, what="the refusal")
        assert str(error.render()).startswith("--format plain: the layers differ in width (layers 0, 5: 8/4 heads")
        assert not (workspace / "exports").exists()  # nothing written
        assert any("not exported" in n.message for n in app._notifications)
        busy = workspace / "busy"
        busy.mkdir()
        (busy / "mine.txt").write_text("keep")
        out.value = str(busy)
        dialog.query_one("#export-format", Select).value = "remote-code"
        await pilot.press("enter")
        error = dialog.query_one("#export-out-error", Label)
        await pause_until(pilot, lambda: "-shown" in error.classes, timeout=30, what="the folder's refusal")
        assert "not empty" in str(error.render()) and [p.name for p in busy.iterdir()] == ["mine.txt"]
        await pilot.press("escape")
        assert isinstance(app.screen, RunDetailScreen)


async def test_export_key_on_a_baseline_says_there_is_nothing_to_export(workspace) -> None:
    base, _ = _seed(workspace)
    app = GreentuiApp(workspace, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunDetailScreen(base))
        await pause_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        await pilot.press("E")
        await pause_until(pilot, lambda: any("no pruned model" in n.message for n in app._notifications))
        assert isinstance(app.screen, RunDetailScreen)


@pytest.mark.slow
async def test_export_from_the_tui_runs_the_command_with_progress(workspace, tmp_path) -> None:
    from backend.stages.prune import PruneConfig, prune_to_dir

    pruned = tmp_path / "pruned"
    prune_to_dir(str(DEMO), pruned, PruneConfig(ratio=0.25, ignore_first=1, ignore_last=1, calib_samples=2))
    _, exp = _seed(workspace, pruned)
    app = GreentuiApp(workspace, manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _open_dialog(app, pilot, exp)
        dialog.query_one("#export-merge_lora", Checkbox).value = False  # no adapter in this run's folder
        await pilot.press("enter")
        fractions = []
        status = dialog.query_one("#export-status", Label)

        def finished():
            fractions.append(dialog.query_one("#export-progress").progress)
            return "exported as" in str(status.render()) and status

        await pause_until(pilot, finished, timeout=600, what="the export")
        assert "remote-code" in str(status.render()) and "bit-identical" in str(status.render())
        assert any(0 < f < 1 for f in fractions)  # progress came from the child process
        out = workspace / "exports" / f"run-{exp:05d}"
        report = json.loads((out / "greentui_export.json").read_text())
        assert report["format"] == "remote-code" and report["source"]["run_id"] == exp
        assert dialog.query_one("#export-out", Input).value.endswith(f"run-{exp:05d}-2")  # ready for another
