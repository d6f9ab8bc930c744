"""Issue #12, New run "safe on any model": prefill/presets, clone into form, checks against the model's
config.json, a time estimate from past runs, and "an empty data dir reuses the bundled baseline".

Real store, real Textual Pilot, real config.json files (no weights: the checks never load a model).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from textual.widgets import Input, Label, Select, Static

from backend.schema.runconfig import RunConfig
from backend.schema.tasks import bundled_data_dir, data_source
from backend.service.form_advice import estimate, model_checks, model_size, rates
from backend.service.runs import demo_config
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens import new_run
from greentui.screens.new_run import FOLD_OF, NewRunScreen, widget_value
from greentui.widgets.fold import Fold
from greentui.widgets.plan_panel import PlanPanel

SHIPPED = Path(__file__).resolve().parent.parent / "backend" / "data" / "demo-model" / "config.json"


def model(tmp_path: Path, name: str = "six", **over) -> Path:
    """A model directory holding only config.json (the shipped demo's: 6 layers, 1.3 M parameters)."""
    d = tmp_path / name
    d.mkdir()
    cfg = json.loads(SHIPPED.read_text())
    cfg.update(over)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def workspace_with(tmp_path: Path, *configs: RunConfig, stage_seconds: dict[str, float] | None = None) -> Path:
    """A workspace whose store holds finished runs of ``configs`` (with stage_end events if given)."""
    ws = tmp_path / "ws"
    ws.mkdir(parents=True)
    with Store(db_path(ws)) as store:
        for cfg in configs:
            mid = store.models.upsert(cfg.model, name=cfg.model, arch="llama")
            rid = store.runs.create(mid, "baseline" if cfg.no_prune else "experiment", cfg.to_dict(), status="queued")
            store.runs.update(rid, params_before=1_000_000)
            for stage, sec in (stage_seconds or {}).items():
                store.events.add(rid, "stage_end", {"stage": stage, "seconds": sec})
            store.runs.finish(rid, "done")
    return ws


def value(form: NewRunScreen, name: str) -> str:
    return form.query_one(f"#f-{name}", Input).value


async def test_empty_workspace_starts_from_the_study_recipe(tmp_path: Path) -> None:
    (tmp_path / "ws0").mkdir()
    app = GreentuiApp(tmp_path / "ws0", manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run()
        await pilot.pause()
        form = app.screen
        assert form.query_one("#preset", Select).value == "study"
        assert value(form, "ignore_first") == "4" and value(form, "lora_steps") == "200"


async def test_prefilled_from_last_run_and_presets(tmp_path: Path) -> None:
    """With runs: the last run's config; the quick preset is the demo's settings (small limit, few LoRA
    steps, ignore 0/0); the study preset the schema's defaults. The model is kept across presets."""
    last = RunConfig(model="org/m", ignore_first=1, ignore_last=2, lora_steps=33, limit=7)
    app = GreentuiApp(workspace_with(tmp_path, RunConfig(model="org/old"), last), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run()
        await pilot.pause()
        form = app.screen
        assert form.query_one("#preset", Select).value == "clone"
        assert (value(form, "model"), value(form, "ignore_first"), value(form, "lora_steps"),
                value(form, "limit")) == ("org/m", "1", "33", "7")
        form.query_one("#preset", Select).value = "quick"
        await pilot.pause()
        quick = demo_config("org/m")
        assert (value(form, "model"), value(form, "ignore_first"), value(form, "ignore_last")) == ("org/m", "0", "0")
        assert value(form, "limit") == str(quick.limit) and value(form, "lora_steps") == str(quick.lora_steps)
        form.query_one("#preset", Select).value = "study"
        await pilot.pause()
        assert (value(form, "ignore_first"), value(form, "lora_steps"), value(form, "limit")) == ("4", "200", "")
        assert form.read()[0].to_dict() == RunConfig(model="org/m").to_dict()
        form.query_one("#preset", Select).value = "quick"
        await pilot.pause()
        assert form.read()[0].to_dict() == quick.to_dict()  # the folded fields (LoRA lr, data dir …) too
        await form.open_fold("LoRA recovery")  # built from the held values, i.e. the preset's
        assert value(form, "lora_lr") == "0.001"
        await pilot.press("ctrl+r")  # "Study defaults" is the study preset too
        await pilot.pause()
        assert form.query_one("#preset", Select).value == "study"
        assert form.read()[0].to_dict() == RunConfig(model="org/m").to_dict()


FIRST = RunConfig(model="org/a", ignore_first=2, ignore_last=1, lora_steps=12)
SECOND = RunConfig(model="org/b", ignore_first=3, lora_steps=50)


@pytest.mark.slow  # fast-tier budget; cloning: test_clone_fills_every_field_including_the_folded_ones (fast)
async def test_clone_from_run_detail(tmp_path: Path) -> None:
    """`f` on Run detail opens New run with that run's recorded config (not the last run's)."""
    app = GreentuiApp(workspace_with(tmp_path, FIRST, SECOND), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.open_run(1)
        await pilot.pause()
        await pilot.press("f")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen)
        assert (value(form, "model"), value(form, "ignore_first"), value(form, "lora_steps")) == ("org/a", "2", "12")
        assert form.query_one("#preset", Select).value == "clone" and "run 1" in form.source


async def test_clone_from_runs(tmp_path: Path) -> None:
    """`f` on the Runs table opens New run with the cursor run's config."""
    app = GreentuiApp(workspace_with(tmp_path, FIRST, SECOND), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        runs = app.screen
        runs.query_one("DataTable").focus()
        for _ in range(2):  # onto run 1, the older one: the form would otherwise show the last run (2)
            if runs.cursor_run() == 1:
                break
            await pilot.press("down")
        assert runs.cursor_run() == 1
        await pilot.press("f")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen)
        assert (value(form, "model"), value(form, "ignore_first"), value(form, "lora_steps")) == ("org/a", "2", "12")


async def test_checks_against_the_models_layers_and_size(tmp_path: Path) -> None:
    """The study's ignore 4/4 on the 6-layer model is clamped, with the note every caller shows; 3/3 leaves
    nothing to prune and is an error under its field; a big model with limit all and 200 LoRA steps gets
    warnings, not errors."""
    six = model(tmp_path)
    assert model_size(str(six))[0] == 6
    errors, warnings = model_checks(RunConfig(model=str(six)), model_size(str(six)))
    assert errors == {} and warnings == ["the model has 6 layers: the study's ignore first/last of 4 is clamped "
                                         "to 2 so that layers are left to prune"]
    errors, _ = model_checks(RunConfig(model=str(six), ignore_first=3, ignore_last=3), model_size(str(six)))
    assert "of the model's 6 layers: nothing would be left to prune" in errors["ignore_first"]
    assert model_checks(RunConfig(model=str(six), ignore_first=3, ignore_last=2), model_size(str(six))) == ({}, [])
    big = model(tmp_path, "big", hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, num_hidden_layers=32, vocab_size=32000)
    errors, warnings = model_checks(RunConfig(model=str(big)), model_size(str(big)))
    assert errors == {} and any("limit is all" in w for w in warnings) and any("200 LoRA" in w for w in warnings)
    (tmp_path / "ws").mkdir()
    app = GreentuiApp(tmp_path / "ws", manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run(model=str(six))
        await pilot.pause()
        form = app.screen
        assert form.validate() == {}
        assert "clamped to 2" in str(form.query_one("#form-advice", Static).render())
        form.query_one("#f-ignore_first", Input).value = "3"
        form.query_one("#f-ignore_last", Input).value = "3"
        await pilot.pause()
        assert "ignore_first" in form.validate()
        label = form.query_one("#err-ignore_first", Label)
        assert label.display and "nothing would be left to prune" in str(label.render())
        assert "ignore first" in str(form.query_one("#form-summary", Static).render())
        form.query_one("#f-model", Input).value = str(big)
        await pilot.pause()
        assert "ignore_first" not in form.validate()
        advice = str(form.query_one("#form-advice", Static).render())
        assert "warning" in advice and "no past runs to estimate from" in advice


def test_time_estimate_from_past_runs(tmp_path: Path) -> None:
    """No runs: says so. Finished runs with stage times: an estimate that scales with parameters."""
    ws = workspace_with(tmp_path)
    with Store(db_path(ws)) as store:
        assert estimate(RunConfig(), 10**6, rates(store), 0) == "time estimate: no past runs to estimate from"
    past = RunConfig(model="org/m", limit=10, lora_steps=20, tasks=["boolq", "piqa"])
    ws = workspace_with(tmp_path / "b", past, stage_seconds={"load": 2.0, "baseline": 20.0, "lora": 40.0,
                                                             "evaluate": 20.0})
    with Store(db_path(ws)) as store:
        r = rates(store)
    assert r["eval"] == 20.0 / (10 * 2 * 10**6) and r["lora"] == 40.0 / (20 * 10**6)
    same = estimate(RunConfig(model="org/m", limit=10, lora_steps=20, tasks=["boolq", "piqa"]), 10**6, r, 1)
    assert "~" in same and "from 1 finished runs" in same
    # the same run on a 100× bigger model: ~100× longer (2 s load + 40 eval + 40 LoRA, ×100 → ~2 h)
    big = estimate(RunConfig(model="org/m", limit=10, lora_steps=20, tasks=["boolq", "piqa"]), 10**8, r, 1)
    assert " h " in big, big


def test_empty_data_dir_is_the_bundled_items_and_reuses_that_baseline(tmp_path: Path, monkeypatch) -> None:
    """An empty data dir (offline) and the bundled folder typed out give one baseline key, so a second
    run with an empty data dir finds the first one's vanilla baseline in the store."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert data_source(None) == data_source("") == data_source(str(bundled_data_dir())) == "bundled"
    assert data_source(str(tmp_path)) == str(tmp_path.resolve())
    typed = RunConfig(model="org/m", no_prune=True, data_dir=str(bundled_data_dir()), limit=5)
    empty = RunConfig(model="org/m", limit=5)
    assert typed.baseline_key("org/m", "cpu") == empty.baseline_key("org/m", "cpu")
    assert RunConfig(model="org/m", limit=5, data_dir=str(tmp_path)).baseline_key("org/m", "cpu") != \
        empty.baseline_key("org/m", "cpu")
    with Store(db_path(workspace_with(tmp_path))) as store:
        mid = store.models.upsert("org/m", name="org/m", arch="llama")
        first = store.runs.create(mid, "baseline", typed.to_dict(), status="running",
                                 baseline_key=typed.baseline_key("org/m", "cpu"))
        for task in typed.tasks:
            store.results.save_task_result(first, "vanilla", task, {"acc": 0.5})
        store.runs.finish(first, "done")
        found = store.results.find_baseline(empty.baseline_key("org/m", "cpu"), empty.tasks)
        assert found and found["id"] == first


# ----------------------------------------------------------------------------- opening at once (folds, worker)

def known_model_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    with Store(db_path(ws)) as store:
        store.models.upsert("org/known", name="org/known", arch="llama")
    return ws


@pytest.mark.slow  # fast-tier budget; folded fields: test_clone_fills_every_field_including_the_folded_ones (fast)
async def test_a_folded_group_is_built_when_opened_and_its_values_reach_the_queued_run(tmp_path: Path) -> None:
    """Only the essential fields exist when the form opens; Enter on a fold's title builds its fields
    with the held values; what is typed there, and what sits in folds never opened, is queued."""
    app = GreentuiApp(known_model_workspace(tmp_path), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run(model="org/known")
        await pilot.pause()
        form = app.screen
        assert app.focused is form.query_one("#f-model")  # the first field has the focus at once
        energy = form.query_one("#fold-energy", Fold)
        assert energy.collapsed and not energy.built and not form.query("#f-repeats")
        energy.title_widget.focus()
        await pilot.press("enter")  # the user opens the fold
        await pilot.pause()
        assert energy.built and not energy.collapsed
        repeats = form.query_one("#f-repeats", Input)
        assert repeats.value == "auto" and repeats.region.height > 0  # built, with the held value, on screen
        repeats.value = "3"
        await form.open_fold("machine")
        form.query_one("#f-seed", Input).value = "7"
        await pilot.pause()
        assert "set: repeats 3" in str(energy.title) and not form.folds["executor"].built
        assert form.validate() == {}
        form.action_queue()
        # the worker's own success dismisses the form, which may cancel that finishing worker: wait for
        # what the user sees (the queued run), not for the worker's state
        for _ in range(100):
            if app.store.runs.count():
                break
            await pilot.pause(0.05)
        await pilot.pause()
        (run,) = app.store.runs.list(limit=5)
        cfg = app.store.runs.get(run["id"])["config"]
        assert (cfg["repeats"], cfg["seed"]) == (3, 7)
        assert (cfg["executor"], cfg["lora_r"], cfg["count_rule"]) == ("local", 8, RunConfig().count_rule)


async def test_the_plan_and_estimate_fill_in_after_the_form_is_usable(tmp_path: Path, monkeypatch) -> None:
    """The planner runs in a thread worker: while it is held back the form is already usable (focus,
    typing, layer-count error) and says "computing…"; once it finishes, the panel and the estimate fill in."""
    release = threading.Event()
    real = new_run.plan_lines

    def held_plan_lines(values):  # the real planner, once the test lets it go
        assert release.wait(10)
        return real(values)

    monkeypatch.setattr(new_run, "plan_lines", held_plan_lines)
    six = model(tmp_path)
    past = RunConfig(model="org/m", limit=10, lora_steps=20, tasks=["boolq", "piqa"])
    app = GreentuiApp(workspace_with(tmp_path, past, stage_seconds={"load": 2.0, "baseline": 20.0, "lora": 40.0,
                                                                     "evaluate": 20.0}), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run(model=str(six))
        await pilot.pause()
        form = app.screen
        panel = form.query_one(PlanPanel)
        assert panel.lines == [] and "computing…" in str(panel.render())
        assert "time estimate: computing…" in str(form.query_one("#form-advice", Static).render())
        assert "clamped to 2" in str(form.query_one("#form-advice", Static).render())
        await pilot.press("2")  # typing goes into the focused field (the model) while the plan waits
        await pilot.pause()
        assert form.query_one("#f-model", Input).value.endswith("2")
        form.query_one("#f-model", Input).value = str(six)
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert panel.lines[0].startswith("1.31 M →"), panel.lines
        first = panel.lines[0]
        advice = str(form.query_one("#form-advice", Static).render())
        assert "time estimate: ~" in advice and "from 1 finished runs" in advice
        form.query_one("#f-prune_ratio", Input).value = "0.5"  # a change re-plans
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert panel.lines[0].startswith("1.31 M →") and panel.lines[0] != first


CLONED = RunConfig(model="org/a", ignore_first=2, ignore_last=1, round_to=16, calib_samples=3,
                   count_rule="param-share", target_ratio=0.8, lora_r=4, lora_steps=12, lora_lr=1e-3,
                   lora_data="instr.jsonl", limit=5, num_fewshot=1, batch_size="4", ppl_limit=256, device="cpu",
                   seed=9, country="FRA", measure_energy=False, repeats=2, efficiency_batches=[1, 4], cooldown=True,
                   executor="slurm", partition="gpu", gpus=1, time_limit="01:00:00", slurm_arg=["account=x"])


async def test_clone_fills_every_field_including_the_folded_ones(tmp_path: Path) -> None:
    """Clone into form (what `f` on Runs and Run detail calls; the two tests above press it): the clone
    is the form's config before any fold is opened (held values), every widget shows its value once the
    folds are built, and the folds' titles name the changed values meanwhile."""
    folded = [s for s in new_run.SETTINGS if s.name in FOLD_OF]
    assert sum(getattr(CLONED, s.name) != s.default for s in folded) >= 20  # most folded values differ
    app = GreentuiApp(workspace_with(tmp_path, CLONED, SECOND), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.clone_run(1)
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen) and not any(f.built for f in form.folds.values())
        assert form.read()[0].to_dict() == CLONED.to_dict()
        title = str(form.folds["executor"].title)
        assert "set: executor slurm, partition gpu, GPUs 1 +2" in title
        await form.open_folds()
        await pilot.pause()
        for s in new_run.SETTINGS:
            widget = form.query_one(f"#f-{s.name}")
            assert widget is form.fields[s.name]
            want = getattr(CLONED, s.name)
            got = widget_value(s, widget)
            assert got == (pytest.approx(want) if isinstance(want, float) else want), s.name
        assert form.read()[0].to_dict() == CLONED.to_dict()


async def test_a_refused_value_in_a_closed_fold_opens_it_and_takes_the_focus(tmp_path: Path) -> None:
    """A cloned run with Slurm options but the local executor: the executor fold's title says 1 to fix;
    Ctrl+S refuses with the field's label, opens the fold and focuses the field, its reason under it."""
    bad = RunConfig(model="org/a", partition="gpu")  # partition needs executor slurm
    app = GreentuiApp(workspace_with(tmp_path, bad), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run()
        await pilot.pause()
        form = app.screen
        fold = form.folds["executor"]
        assert not fold.built and "1 to fix" in str(fold.title)
        assert "executor" in str(form.query_one("#form-summary", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.pause()
        assert fold.built and not fold.collapsed
        assert app.focused is form.query_one("#f-executor")
        label = form.query_one("#err-executor", Label)
        assert label.display and "--partition needs --executor slurm" in str(label.render())
        assert app.store.runs.count() == 1


@pytest.mark.slow  # fast-tier budget; the plan worker's success path: test_the_plan_and_estimate_fill_in_after_the_form_is_usable (fast)
async def test_a_failing_plan_worker_is_a_notification_and_the_form_stays_usable(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """Anything the advice worker raises reaches the app's one worker handler (a notification); the panel
    and the estimate say they are not available instead of "computing…" forever; queueing still works."""
    def broken(values):
        raise RuntimeError("planner exploded")

    monkeypatch.setattr(new_run, "plan_lines", broken)
    app = GreentuiApp(known_model_workspace(tmp_path), manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_new_run(model="org/known")
        await pilot.pause()
        form = app.screen
        panel = form.query_one(PlanPanel)
        for _ in range(200):  # the failed worker is waited for by its effect (waiting on it would raise)
            if panel.lines:
                break
            await pilot.pause(0.02)
        await pilot.pause()
        assert any("planner exploded" in n.message for n in app._notifications)
        assert panel.lines == ["no plan: the planner failed (see the notification)"]
        assert "not available" in str(form.query_one("#form-advice", Static).render())
        form.action_queue()
        for _ in range(200):  # the queue worker ends with the form (it dismisses it): wait for both
            if app.store.runs.count() and app.screen is not form:
                break
            await pilot.pause(0.02)
        await pilot.pause()
        assert app.store.runs.count() == 1 and app.screen is not form


async def test_a_fold_opened_before_it_is_mounted_composes_its_contents(tmp_path: Path) -> None:
    """Fold.expand() before the fold is in the DOM (a form that opens a group at once) builds the body
    into the fold's own compose instead of mounting it into nothing."""
    from textual.app import App
    from textual.widgets import Input as TextInput

    class One(App):
        def compose(self):
            fold = Fold(lambda: [TextInput("x", id="inside")], title="group")
            assert fold.expand() is None and fold.built and not fold.collapsed
            yield fold

    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        assert app.query_one("#inside", TextInput).value == "x"
        assert str(app.query_one(Fold).title_widget.render()) == "▼ group"
