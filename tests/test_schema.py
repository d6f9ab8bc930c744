"""The run schema: one declaration per setting renders as the CLI option, the form field, the parser and
the rule — and they agree. In-process (``backend.cli.main``) and Pilot on a real store; no mocks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from textual.widgets import Input, Label

from backend.cli.main import build_parser, main
from backend.schema.runconfig import SETTING, SETTINGS, RunConfig
from backend.schema.settings import SettingError
from backend.service.runs import prepare_run
from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.new_run import NewRunScreen


def subparser(name: str) -> argparse.ArgumentParser:
    return build_parser()._subparsers._group_actions[0].choices[name]


def setting_dests(parser: argparse.ArgumentParser) -> set[str]:
    names = {s.name for s in SETTINGS}
    return {a.dest for a in parser._actions if a.dest in names}


def test_run_and_queue_offer_every_setting_and_nothing_else_of_a_run():
    for command in ("run", "queue"):
        p = subparser(command)
        assert setting_dests(p) == {s.name for s in SETTINGS}
        flags = {o for a in p._actions for o in a.option_strings}
        assert {s.flag for s in SETTINGS if s.flag} <= flags


def test_every_default_round_trips_through_its_text():
    """What the form shows for a default parses back to the default (ratio 2/7 included)."""
    study = RunConfig()
    for s in SETTINGS:
        if s.widget in ("text", "model"):
            value = getattr(study, s.name)
            assert s.from_text(s.to_text(value)) == pytest.approx(value) if isinstance(value, float) \
                else s.from_text(s.to_text(value)) == value, s.name
    assert SETTING["prune_ratio"].to_text(2 / 7) == "2/7"


def test_one_ratio_parser_for_run_and_prune():
    run = subparser("run").parse_args(["m", "--prune-ratio", "2/7"])
    prune = subparser("prune").parse_args(["m", "--out", "x", "--ratio", "2/7", "--target-ratio", "1/2"])
    assert run.prune_ratio == prune.prune_ratio == pytest.approx(2 / 7) and prune.target_ratio == 0.5


@pytest.mark.parametrize("command", ["run", "queue", "prune", "plan"])
def test_one_flag_name_per_setting_on_every_command(command):
    """#19.1: a setting has the same flag (and the same aliases) on every command that takes it, so a
    command line's pruning options can be copied from queue to plan; the old spellings still parse."""
    p = subparser(command)
    offered = {a.dest: set(a.option_strings) for a in p._actions if a.dest in SETTING and a.option_strings}
    assert offered, command
    for name, flags in offered.items():
        s = SETTING[name]
        assert flags == {s.flag, *s.aliases}, (command, name, flags)
    if command in ("prune", "plan"):
        assert {"importance", "prune_ratio", "count_rule", "ignore_first", "ignore_last", "round_to",
                "target_params", "target_ratio", "calib_seq_len"} <= set(offered)
        extra = ["--out", "x"] if command == "prune" else []
        old = p.parse_args(["m", *extra, "--method", "l1", "--ratio", "0.25"])
        new = p.parse_args(["m", *extra, "--importance", "l1", "--prune-ratio", "0.25"])
        assert (old.importance, old.prune_ratio) == (new.importance, new.prune_ratio) == ("l1", 0.25)


def test_prune_and_plan_build_their_pruning_view_from_the_run_schema():
    """The pruning view is derived from the RunConfig the options describe: its defaults are the
    schema's, and a refused value is refused by the schema's rule, naming the flag ``run`` uses."""
    from backend.cli.commands.plan import config_from_args
    from backend.stages.pruning.spec import RUN_FIELDS, PruneConfig
    pcfg = config_from_args(subparser("prune").parse_args(["m", "--out", "x"]))
    assert pcfg == PruneConfig.of(RunConfig(model="m"))
    for field, name in RUN_FIELDS.items():
        assert getattr(pcfg, field) == SETTING[name].default, name
    with pytest.raises(SettingError, match="^--calib-seq-len: need 8 or more"):
        config_from_args(subparser("plan").parse_args(["m", "--calib-seq-len", "4"]))
    with pytest.raises(SettingError) as bad:
        config_from_args(subparser("plan").parse_args(["m", "--ratio", "1.5"]))
    assert bad.value.field == "prune_ratio" and str(bad.value).startswith("--prune-ratio: ratio must be")


def test_config_from_args_flags_aliases_and_unset_by():
    from backend.cli.commands.run_options import config_from_args
    cfg = config_from_args(subparser("run").parse_args(
        ["org/m", "--method", "l1", "--lora-epochs", "2", "--no-energy", "--tasks", "boolq,piqa",
         "--ppl-limit", "0"]))
    assert (cfg.importance, cfg.lora_epochs, cfg.lora_steps) == ("l1", 2.0, None)
    assert cfg.measure_energy is False and cfg.tasks == ["boolq", "piqa"] and cfg.ppl_limit is None
    defaults = config_from_args(subparser("run").parse_args(["org/m"]))
    assert defaults == RunConfig(model="org/m")


@pytest.mark.parametrize("args, flag, needle", [
    (["--ignore-first", "-1"], "--ignore-first", "must be 0 or more"),
    (["--lora-steps", "5", "--lora-epochs", "1"], "--lora-steps", "not both"),
    (["--device", "tpu"], "--device", "cuda:N"),
    (["--batch-size", "big"], "--batch-size", "'auto' or a positive integer"),
])
def test_a_refused_setting_names_its_flag(args, flag, needle, workspace, capsys):
    assert main(["run", "org/m", *args]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"greentui: error: {flag}: ") and needle in line
    with Store(db_path(workspace)) as s:
        assert s.runs.count() == 0


def test_unparseable_text_is_an_argparse_error_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "org/m", "--prune-ratio", "two sevenths"])
    assert exit_.value.code == 2
    assert "'two sevenths' is not a ratio" in capsys.readouterr().err


def test_service_errors_carry_their_field(workspace, tmp_path):
    """A model that cannot be resolved is the model field's; a bad data file is the data dir's."""
    with Store(db_path(workspace)) as store:
        with pytest.raises(SettingError) as bad_model:
            prepare_run(store, RunConfig(model=str(tmp_path / "nothing")), status="queued")
        assert bad_model.value.field == "model" and "no such model directory" in bad_model.value.reason
        data = tmp_path / "data"
        data.mkdir()
        (data / "boolq.jsonl").write_text('{"passage": "p", "question": "q"}\n')  # no label
        store.models.upsert("org/known", name="org/known", arch="llama")
        cfg = RunConfig(model="org/known", tasks=["boolq"], data_dir=str(data))
        with pytest.raises(SettingError) as bad_data:
            prepare_run(store, cfg, status="queued")
        assert bad_data.value.field == "data_dir" and str(bad_data.value).startswith("--data-dir: ")
        assert store.runs.count() == 0


async def test_form_fields_are_the_cli_flags_and_refusals_land_under_their_field(tmp_path: Path) -> None:
    """The form is generated from the same declarations: its fields are exactly the CLI's settings —
    the essential ones built when it opens, every other one in its group's fold, built when opened.
    A refusal of the service layer (a data file without its label) is shown under the data-dir field."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "piqa.jsonl").write_text(json.dumps({"goal": "g", "sol1": "a"}) + "\n")  # sol2, label missing
    (tmp_path / "ws").mkdir()
    with Store(db_path(tmp_path / "ws")) as store:
        store.models.upsert("org/known", name="org/known", arch="llama")
    app = GreentuiApp(tmp_path / "ws", manage_runner=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.action_new_run(model="org/known")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen)

        def ids(prefix: str, kind=None) -> set[str]:
            return {w.id[len(prefix):] for w in form.query(kind or "#form *") if (w.id or "").startswith(prefix)}

        essential = {s.name for s in SETTINGS if s.essential}
        assert ids("f-") == ids("err-", Label) == essential  # the folds are not built yet
        await form.open_folds()
        await pilot.pause()
        fields = ids("f-")
        assert fields == setting_dests(subparser("queue")) == ids("err-", Label)
        assert len(fields) == len(SETTINGS) > 20 and len(essential) < len(SETTINGS) / 3
        form.query_one("#f-data_dir", Input).value = str(data)
        form.query_one("#f-tasks").deselect_all()
        form.query_one("#f-tasks").select("piqa")
        await pilot.pause()
        assert form.validate() == {}
        form.action_queue()
        await app.workers.wait_for_complete()
        await pilot.pause()
        label = form.query_one("#err-data_dir", Label)
        assert label.display and "piqa.jsonl" in str(label.render())
        assert app.store.runs.count() == 0 and isinstance(app.screen, NewRunScreen)
