"""The New-run form and the CLI are one run config (#22 3.2, 3.3, 3.4): the same defaults, a start from the
last experiment after the demo, checkboxes that say on/off in words, and one layers-kept rule said the
same way under the field, in the plan panel and on the command line.

Pilot at 80x24 and 120x40 on a real store; the model is the shipped demo's files (6 layers), never loaded.
"""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox, Input, Label, Static

from backend.cli.commands.run_options import config_from_args
from backend.cli.main import build_parser
from backend.schema.runconfig import RunConfig
from backend.service.runs import demo_config
from backend.store import Store
from backend.workspace import PACKAGE_DATA, db_path
from greentui.app import GreentuiApp
from greentui.screens.new_run import NewRunScreen
from greentui.widgets.plan_panel import PlanPanel

from .conftest import pause_until, tiered

DEMO = str(PACKAGE_DATA / "demo-model")
SIZES = [(80, 24), (120, 40)]


def cli_config(*args: str) -> RunConfig:
    return config_from_args(build_parser().parse_args(["queue", *args]))


async def open_form(app, pilot, **kw) -> NewRunScreen:
    app.action_new_run(**kw)
    await pause_until(pilot, lambda: isinstance(app.screen, NewRunScreen), what="the New-run form")
    await pilot.pause()
    return app.screen


@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_the_forms_starting_config_is_the_clis_defaults(tmp_path, size):
    """#22 3.2: in a workspace without runs the form starts from exactly the config ``greentui queue M``
    records (perplexity tokens, data dir and every other setting), folds included."""
    (tmp_path / "ws").mkdir()
    app = GreentuiApp(tmp_path / "ws", manage_runner=False)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot, model=DEMO)
        assert form.read()[0].to_dict() == cli_config(DEMO).to_dict()
        if size == (120, 40):  # every fold built: each widget's own value parses back to the CLI's default
            await form.open_folds()
            await pilot.pause()
            assert form.read()[0].to_dict() == cli_config(DEMO).to_dict()
            assert form.query_one("#f-ppl_limit", Input).value == "4096"


async def test_the_forms_study_recipe_takes_the_workspaces_energy_defaults(tmp_path):
    """#18.2: the form starts where ``greentui queue M`` starts in this workspace, greentui.toml included."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "greentui.toml").write_text('[energy]\nrepeats = 4\nci_target = 0.02\n')
    app = GreentuiApp(ws, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot, model=DEMO)
        cfg = form.read()[0]
        assert (cfg.repeats, cfg.ci_target) == (4, 0.02)
        assert cfg.to_dict() == config_from_args(build_parser().parse_args(["--runs-dir", str(ws), "queue", DEMO]),
                                                 workspace_defaults=True).to_dict()


async def test_a_bad_energy_table_is_said_once_and_the_form_keeps_the_schemas_defaults(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws, manage_runner=False)  # (a file bad at start stops the app in one line)
    async with app.run_test(size=(80, 24)) as pilot:
        (ws / "greentui.toml").write_text("[energy]\nci_target = 0.9\n")  # edited while it runs
        form = await open_form(app, pilot, model=DEMO)
        assert form.read()[0].ci_target == RunConfig().ci_target
        said = [n.message for n in app._notifications]
        assert any("energy.ci_target = 0.9: CI target must be" in m for m in said), said


def test_the_demo_measures_like_the_cli_so_their_baselines_are_one():
    """The demo's quick config changes only what makes it quick; a CLI run with the demo's limit has the
    same baseline key, so it reuses the demo's vanilla baseline instead of evaluating a second one whose
    perplexity differs (4096 vs 2048 tokens before)."""
    demo = demo_config(DEMO)
    assert demo.ppl_limit == RunConfig().ppl_limit
    cli = cli_config(DEMO, "--limit", str(demo.limit), "--data-dir", demo.data_dir)
    assert demo.baseline_key(DEMO, "cpu") == cli.baseline_key(DEMO, "cpu")


def demo_workspace(tmp_path) -> str:
    """What the demo leaves: the experiment (run 1) and the baseline the pipeline recorded for it (run 2)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    exp = demo_config(DEMO)
    with Store(db_path(ws)) as store:
        mid = store.models.upsert(DEMO, name="demo-model", arch="llama")
        run = store.runs.create(mid, "experiment", exp.to_dict(), status="queued", label="demo")
        base = store.runs.create(mid, "baseline", dict(exp.to_dict(), no_prune=True), status="running",
                                 label=f"baseline for run {run}")
        store.runs.update(run, parent_run_id=base)
        store.runs.finish(base, "done")
        store.runs.finish(run, "done")
    return ws


@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_new_run_after_the_demo_starts_from_the_experiment_with_on_off_in_words(tmp_path, size):
    """#22 3.3: the last run the user queued is the demo's experiment, not the baseline the pipeline made
    for it; its prune and LoRA boxes read "on", and a box toggled off reads "off", in text."""
    app = GreentuiApp(demo_workspace(tmp_path), manage_runner=False)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot)
        cfg = form.read()[0]
        assert cfg.to_dict() == demo_config(DEMO).to_dict() and not cfg.no_prune
        prune = form.query_one("#f-no_prune", Checkbox)
        assert str(prune.label) == "prune: on" and "prune: on" in str(prune.render())
        assert str(form.query_one("#f-no_lora", Checkbox).label) == "LoRA recovery: on"
        prune.focus()
        await pilot.press("space")
        await pilot.pause()
        assert str(prune.label) == "prune: off" and form.read()[0].no_prune
        await form.open_fold("machine")
        await pilot.pause()
        assert str(form.query_one("#f-trust_remote_code", Checkbox).label) == "trust remote code: off"
        assert str(form.query_one("#f-measure_energy", Checkbox).label) == "measure energy: on"


@pytest.mark.parametrize("size", tiered(SIZES, fast=[(80, 24)]))  # 120x40 in the slow tier
async def test_layers_kept_is_one_rule_said_alike_by_field_plan_panel_and_cli(tmp_path, size, cli):
    """#22 3.4: the study's 4/4 on the 6-layer model is clamped with one note, shown by the form's advice,
    the plan panel and ``queue``; an explicit 3/3 is refused with one reason, under the field, in the plan
    panel and on the command line."""
    note = ("the model has 6 layers: the study's ignore first/last of 4 is clamped to 2 so that layers are "
            "left to prune")
    reason = "ignore first 3 + ignore last 3 leave none of the model's 6 layers: nothing would be left to prune"
    (tmp_path / "ws").mkdir()
    app = GreentuiApp(tmp_path / "ws", manage_runner=False)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot, model=DEMO)
        panel = form.query_one(PlanPanel)
        await pause_until(pilot, lambda: panel.lines, what="the plan")
        assert form.validate() == {}
        assert f"warning: {note}" in panel.lines
        assert note in " ".join(str(form.query_one("#form-advice", Static).render()).split())
        form.query_one("#f-ignore_first", Input).value = "3"
        form.query_one("#f-ignore_last", Input).value = "3"
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert form.validate()["ignore_first"] == reason
        assert str(form.query_one("#err-ignore_first", Label).render()) == reason
        assert panel.lines == [f"no plan: ignore first: {reason}"]
    queued = cli("--runs-dir", str(tmp_path / "cli"), "queue", DEMO, "--no-start")
    assert f"warning: {note}" in queued.stderr
    refused = cli("--runs-dir", str(tmp_path / "cli"), "queue", DEMO, "--ignore-first", "3", "--ignore-last", "3",
                  "--no-start")
    assert refused.stderr.strip() == f"greentui: error: --ignore-first: {reason}"
