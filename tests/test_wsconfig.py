"""``greentui.toml`` is checked whole, in one line, by every command that reads it (#22 2.5).

In-process CLI (``cli``), a real store; the runner is the real ``run_worker`` (``worker --once``).
"""

from __future__ import annotations

import pytest

from backend.errors import GreentuiError
from backend.schema.runconfig import SETTING, RunConfig
from backend.schema.wsconfig import MAX_CPU_SLOTS, load_workspace_config
from backend.store import Store
from backend.workspace import PACKAGE_DATA, db_path

DEMO = str(PACKAGE_DATA / "demo-model")


def one_line(proc, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def runs(workspace) -> list[tuple[int, str, str | None]]:
    with Store(db_path(workspace)) as store:
        return [(r["id"], r["status"], store.runs.get(r["id"])["error"]) for r in store.runs.list(limit=50)]


@pytest.mark.parametrize("content, needle", [
    (b'[slurm]\npartition = "gp\xff"\n', "not UTF-8 text (line 2"),
    (b"[runner]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b'[slrum]\npartition = "gpu"\n', "unknown table [slrum] (known: "), (b"[slrum]\n", "did you mean [slurm]?"),
    (b'[slurm]\npartiton = "gpu"\n', "unknown key slurm.partiton"),
    (b"cpu_slots = 2\n", "unknown key cpu_slots"),
    (b"[runner]\ncpu_slots = 1000000\n", f"runner.cpu_slots = 1000000: must be 1 to {MAX_CPU_SLOTS}"),
    (b"[runner]\ncpu_slots = true\n", "runner.cpu_slots must be a whole number"),
    (b'[slurm.args]\naccount = ["a", "b"]\n', "slurm.args.account must be a string or a number"),
    (b"[slurm\n", "greentui.toml: "),
    (b"[energy]\nci_target = 0.9\n", "energy.ci_target = 0.9: CI target must be"),
    (b'[energy]\nrepeats = "often"\n', "energy.repeats = 'often': 'often' is neither 'auto' nor a whole number"),
    (b'[energy]\nenergy_design = "random"\n', "energy.energy_design = 'random': "),
    (b"[energy]\nrepeats = 2.5\n", "energy.repeats = 2.5: '2.5' is neither 'auto' nor a whole number"),
    (b"[energy]\nrepeat = 3\n", "did you mean energy.repeats?"),
])
def test_a_bad_file_is_one_line_from_queue_and_the_runner_and_nothing_is_queued(cli, workspace, content, needle):
    (workspace / "greentui.toml").write_bytes(content)
    for executor in ("local", "slurm"):  # checked before Slurm is asked anything
        one_line(cli("queue", DEMO, "--executor", executor, "--no-start"), "greentui.toml: ", needle)
    one_line(cli("worker", "--once"), needle)
    assert runs(workspace) == []


def test_a_run_queued_before_the_file_went_bad_fails_with_the_reason(cli, workspace):
    """The runner that cannot read the file says why, and the runs it would take end ``failed`` with the
    reason instead of staying ``queued`` behind a runner that died."""
    cli("queue", DEMO, "--no-start", check=True)
    (workspace / "greentui.toml").write_bytes(b"[runner]\ncpu_slots = \xff\n")
    one_line(cli("worker", "--once"), "not UTF-8 text")
    ((run_id, status, error),) = runs(workspace)
    assert status == "failed" and error.startswith("the runner could not start: ") and "not UTF-8" in error


def test_the_slurm_keys_are_the_run_settings_with_their_rules(workspace):
    """The file's schema is derived from the run schema: a Slurm default is refused by the same rule
    (same words) as the flag, and a good file reads as it is written."""
    (workspace / "greentui.toml").write_text('[slurm]\ntime_limit = "4h"\n')
    with pytest.raises(GreentuiError) as bad:
        load_workspace_config(workspace)
    flag_reason = SETTING["time_limit"].problem("4h", RunConfig(executor="slurm"))
    assert str(bad.value).endswith(f"slurm.time_limit = '4h': {flag_reason}")
    good = ('[slurm]\npartition = "gpu"\ngpus = 1\ntime_limit = "04:00:00"\n[slurm.args]\naccount = "p"\n'
            'nodes = 2\n[runner]\ncpu_slots = 2\n[keys]\nquit = "ctrl+q,q"\n')
    (workspace / "greentui.toml").write_text(good)
    assert load_workspace_config(workspace) == {
        "slurm": {"partition": "gpu", "gpus": 1, "time_limit": "04:00:00", "args": {"account": "p", "nodes": 2}},
        "runner": {"cpu_slots": 2}, "keys": {"quit": "ctrl+q,q"}}


def test_cpu_slots_have_one_bound_in_the_file_and_on_the_flag(cli, workspace):
    one_line(cli("worker", "--cpu-slots", str(MAX_CPU_SLOTS + 1)), f"--cpu-slots {MAX_CPU_SLOTS + 1}: must be 1 to "
                                                                    f"{MAX_CPU_SLOTS}")
    one_line(cli("worker", "--cpu-slots", "0"), "must be 1 to")


ENERGY = ('[energy]\nenergy_design = "sequential"\nrepeats = 5\nci_target = 0.02\nmax_repeats = 20\n'
          'window_s = 2\nbaseline_max_age_days = 1.5\nefficiency_batches = [8, 1]\n')


def test_the_energy_table_is_the_default_of_every_run_queued_and_a_flag_wins(cli, workspace):
    """#18.2: ``[energy]`` holds the run schema's energy settings, read as their flags read them; a run
    queued without flags takes them, a flag wins over the file, and the stored config says what was used."""
    (workspace / "greentui.toml").write_text(ENERGY)
    plain = int(cli("queue", DEMO, "--no-start", check=True).stdout.split()[-1])
    flagged = int(cli("queue", DEMO, "--repeats", "auto", "--energy-design", "paired", "--no-start",
                      check=True).stdout.split()[-1])
    with Store(db_path(workspace)) as store:
        a, b = store.runs.get(plain)["config"], store.runs.get(flagged)["config"]
    assert (a["energy_design"], a["repeats"], a["ci_target"], a["max_repeats"], a["window_s"],
            a["baseline_max_age_days"], a["efficiency_batches"]) == ("sequential", 5, 0.02, 20, 2.0, 1.5, [1, 8])
    assert (b["energy_design"], b["repeats"], b["ci_target"], b["max_repeats"]) == ("paired", "auto", 0.02, 20)
    # the schema's own defaults where the file says nothing
    (workspace / "greentui.toml").write_text("[energy]\nci_target = 0.05\n")
    c = int(cli("queue", DEMO, "--no-start", check=True).stdout.split()[-1])
    with Store(db_path(workspace)) as store:
        cfg = store.runs.get(c)["config"]
    assert cfg["ci_target"] == 0.05 and cfg["repeats"] == RunConfig().repeats


def test_the_energy_table_reaches_a_studys_cells_under_its_own_run_table(cli, workspace, tmp_path):
    (workspace / "greentui.toml").write_text('[energy]\nci_target = 0.02\nmax_repeats = 20\n')
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nname = "e"\nmodels = ["{DEMO}"]\n[grid]\nprune_ratio = ["1/7", "2/7"]\n'
                     '[run]\nmax_repeats = 4\nlimit = 2\n')
    cli("study", "run", str(study), "--no-start", check=True)
    with Store(db_path(workspace)) as store:
        configs = [store.runs.get(r["id"])["config"] for r in store.runs.list(limit=10)]
    assert len(configs) == 3  # the shared baseline and two cells
    assert {(c["ci_target"], c["max_repeats"]) for c in configs} == {(0.02, 4)}  # the file's [run] wins


def test_the_readmes_example_file_is_accepted_as_written(tmp_path):
    """The README's greentui.toml is what a user copies first: it must read, every table of it."""
    import re

    from .conftest import ROOT
    block = re.search(r"```toml\n(\[slurm\].*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no greentui.toml example starting with [slurm]"
    (tmp_path / "greentui.toml").write_text(block.group(1))
    assert set(load_workspace_config(tmp_path)) == {"slurm", "runner", "energy"}


def test_the_slurm_defaults_reach_the_run_as_the_schema_reads_them(workspace):
    from backend.schema.wsconfig import slurm_defaults
    (workspace / "greentui.toml").write_text('[slurm]\ngpus = "2"\npartition = "gpu"\n')
    assert slurm_defaults(workspace) == {"gpus": 2, "partition": "gpu"}  # a text "2" is the flag's 2
    (workspace / "greentui.toml").write_text('[slurm]\ngpus = "two"\n')
    with pytest.raises(GreentuiError, match="slurm.gpus = 'two': "):
        slurm_defaults(workspace)
