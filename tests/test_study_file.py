"""Study files (issue #20): the keys are the run schema's settings, refusals name the key and the cell,
the grid is a cartesian product, and the New-study form's writer round-trips."""

from __future__ import annotations

import pytest

from backend.schema.runconfig import SETTINGS
from backend.schema.study import StudyError, dump, parse

HEAD = '[study]\nname = "ratios"\nmodels = ["org/a", "org/b"]\n'


def test_the_issue_example_is_a_cartesian_product_with_models_outermost():
    spec = parse(HEAD + '[grid]\nimportance = ["taylor", "l1"]\nprune_ratio = ["1/7", "2/7"]\n'
                 '[run]\nignore_first = 4\nignore_last = 4\nlimit = 100\ntasks = ["arc_easy", "piqa"]\n')
    cells = spec.check()
    assert len(cells) == 8
    assert [c.model for c in cells] == ["org/a"] * 4 + ["org/b"] * 4
    assert [c.label for c in cells[:4]] == ["taylor 1/7", "taylor 2/7", "l1 1/7", "l1 2/7"]
    cfg = cells[3].config
    assert (cfg.importance, cfg.prune_ratio, cfg.limit, cfg.tasks) == ("l1", 2 / 7, 100, ["arc_easy", "piqa"])
    assert len({c.key for c in cells}) == 8


def test_values_as_toml_or_as_the_cli_text_mean_the_same():
    a = parse(HEAD + '[run]\nprune_ratio = "2/7"\ntasks = "all"\nno_lora = true\nlimit = 5\n').check()[0]
    b = parse(HEAD + '[run]\nprune_ratio = 0.2857142857142857\ntasks = ["arc_challenge", "arc_easy", "boolq", '
              '"hellaswag", "piqa", "openbookqa", "winogrande"]\nno_lora = true\nlimit = "5"\n').check()[0]
    assert a.config == b.config and a.key == b.key


def test_flag_spellings_and_aliases_are_keys_too():
    spec = parse(HEAD + '[grid]\nmethod = ["l1"]\n[run]\nprune-ratio = "1/7"\n')
    cfg = spec.check()[0].config
    assert (cfg.importance, cfg.prune_ratio) == ("l1", 1 / 7)


@pytest.mark.parametrize("body, message", [
    ('[grid]\nprun_ratio = ["1/7"]\n', "grid.prun_ratio: unknown key; did you mean prune_ratio?"),
    ('[run]\nlimit = -1\n', "run.limit: limit must be 1 or more"),
    ('[grid]\nprune_ratio = ["2/x"]\n', "grid.prune_ratio[1]: '2/x' is not a ratio"),
    ('[grid]\nprune_ratio = [0.2, 1.5]\n', "grid.prune_ratio (cell 2: prune_ratio=1.5): ratio must be"),
    ('[grid]\nimportance = ["taylor", "nope"]\n', "grid.importance (cell 2: importance=nope): unknown method"),
    ('[run]\nlora_r = true\n', "run.lora_r: must be a whole number, not true"),
    ('[runs]\nx = 1\n', "runs: unknown table; did you mean [run]?"),
    ('[run]\nmodel = "x"\n', "run.model: models are listed in [study] models"),
    ('[grid]\nlimit = []\n', "grid.limit: a swept setting is a non-empty list"),
    ('[grid]\nlimit = [5, 5]\n', "grid.limit: 5 is listed twice"),
    ('[grid]\nlimit = [5]\n[run]\nlimit = 6\n', "grid.limit: is also given in [run]"),
    ('[run]\nlora_steps = 10\nlora_epochs = 1.0\n', "run.lora_steps: give LoRA steps or epochs, not both"),
])
def test_bad_keys_and_values_are_one_line_naming_the_key(body, message):
    with pytest.raises(StudyError) as err:
        parse(HEAD + body)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("head, message", [
    ('[study]\nmodels = ["m"]\n', "study.name: give the study a name"),
    ('[study]\nname = "a b"\nmodels = ["m"]\n', "study.name"),
    ('[study]\nname = "a"\n', "study.models: give one or more models"),
    ('[study]\nname = "a"\nmodels = ["m", "m"]\n', "study.models: m is listed twice"),
    ('[study]\nname = "a"\nmodels = ["m"]\nlimit = 3\n', "study.limit: a run setting goes in [run]"),
    ('[study]\nname = "a"\nmodels = ["m"]\naccuracy_floor = 2\n', "study.accuracy_floor"),
    ('[study\nname = "a"\n', "not valid TOML"),
])
def test_the_study_table_is_checked(head, message):
    with pytest.raises(StudyError, match=message.replace("[", r"\[")):
        parse(head)


def test_command_line_overrides_win_and_errors_name_the_flag():
    spec = parse(HEAD + '[run]\nexecutor = "local"\n', overrides={"executor": "slurm", "partition": "debug"})
    assert spec.check()[0].config.partition == "debug"
    with pytest.raises(StudyError, match="--time-limit: time limit must be"):
        parse(HEAD, overrides={"executor": "slurm", "time_limit": "soon"})


def test_placement_does_not_change_a_cells_identity():
    a = parse(HEAD + '[run]\nlimit = 5\n').check()[0]
    b = parse(HEAD + '[run]\nlimit = 5\nexecutor = "slurm"\npartition = "gpu"\n').check()[0]
    c = parse(HEAD + '[run]\nlimit = 6\n').check()[0]
    assert a.key == b.key != c.key


def test_the_writer_round_trips_every_setting_kind():
    grid = {"importance": ["taylor", "l1"], "prune_ratio": [1 / 7, 0.3]}
    run = {"tasks": ["boolq", "piqa"], "limit": 7, "no_lora": True, "lora_lr": 1e-3, "efficiency_batches": [1, 8],
           "target_params": None, "slurm_arg": ["account=x", "qos=y"], "executor": "slurm", "data_dir": None}
    text = dump("rt", ["org/m", "/abs/path \"q\""], grid, run, description="a \"quoted\" line", accuracy_floor=0.9)
    spec = parse(text)
    assert spec.models == ["org/m", "/abs/path \"q\""] and spec.accuracy_floor == 0.9
    assert spec.grid == grid
    assert {k: spec.run[k] for k in run} == run
    assert '"1/7"' in text  # ratios are written as the study writes them


def test_every_run_setting_is_a_study_key():
    """One declaration: a setting added to the schema is a study key with no edit elsewhere."""
    from backend.schema.study import setting_for
    for s in SETTINGS:
        assert setting_for(s.name) == s.name


def test_a_file_value_is_read_as_the_flag_reads_it():
    """One reader for TOML values (``settings.from_toml``: study files and greentui.toml): a number for a
    text setting is its text (``repeats = 5`` was refused as "must be a text"), a list for a setting with
    a parser is its comma-separated text (batches sorted as ``--efficiency-batches 8,1`` sorts them)."""
    spec = parse(HEAD + '[run]\nrepeats = 5\nefficiency_batches = [8, 1]\n')
    assert spec.run["repeats"] == 5 and spec.run["efficiency_batches"] == [1, 8]
    with pytest.raises(StudyError, match=r"run.repeats: '2.5' is neither 'auto' nor a whole number"):
        parse(HEAD + '[run]\nrepeats = 2.5\n')
