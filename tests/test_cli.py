"""The CLI contract: help everywhere, one-line errors with exit != 0, nothing recorded lost.

``cli`` calls ``backend.cli.main`` in this process (see conftest); ``test_console_script_*`` runs the
real console script once, so the entry point itself stays covered in the fast tier.
"""

from __future__ import annotations

from backend import __version__
from backend.cli.main import build_parser
from backend.store import Store


def test_every_command_has_help(cli):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"ls", "show", "models", "demo-model", "run", "queue", "worker", "export", "import"} <= set(commands)
    for name in ["", *commands]:
        proc = cli(*([name] if name else []), "--help")
        assert proc.returncode == 0, proc.stderr
        assert "usage: greentui" in proc.stdout


def _error_line(proc) -> str:
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def test_demo_model_register_ls_show_models(cli, workspace, tmp_path):
    out = tmp_path / "m"
    proc = cli("demo-model", str(out), "--arch", "mistral", "--register", check=True)
    assert proc.stdout.strip().endswith(str(out))
    listing = cli("models", check=True).stdout
    assert "mistral" in listing and "demo" in listing
    assert "runs (0 in all)" in cli("ls", check=True).stdout
    assert "no run with id 7" in _error_line(cli("show", "7"))
    assert "not a run id" in _error_line(cli("show", "abc"))


def test_bad_model_references(cli, workspace, tmp_path):
    assert "unreachable" in _error_line(cli("models", "add", "nobody/nothing-here"))
    assert "no config.json" in _error_line(cli("models", "add", str(tmp_path)))
    assert "no model 'zzz'" in _error_line(cli("models", "rm", "zzz"))
    from transformers import BertConfig
    enc = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(enc)
    assert "not a decoder-only causal LM" in _error_line(cli("models", "add", str(enc)))
    line = _error_line(cli("run", "nobody/nothing-here", "--limit", "2"))
    assert "model 'nobody/nothing-here'" in line and "unreachable" in line
    with Store(workspace / "greentui.db") as s:
        assert s.runs.count() == 0  # refused before anything was recorded


def test_unwritable_runs_dir(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _error_line(cli("--runs-dir", str(blocker / "ws"), "pause"))  # a command that records
    assert "cannot create the runs dir" in line
    line = _error_line(cli("--runs-dir", str(blocker / "ws"), "ls"))  # read-only: reports, creates nothing
    assert "no greentui workspace" in line


def test_corrupted_db_is_reported_and_kept(cli, workspace):
    db = workspace / "greentui.db"
    db.write_bytes(b"definitely not sqlite" * 50)
    before = db.read_bytes()
    line = _error_line(cli("ls"))
    assert "not an SQLite database" in line and "left untouched" in line
    assert db.read_bytes() == before


def test_run_option_validation(cli, workspace):
    for args, needle in [(["--prune-ratio", "1.5"], "between 0 and 1"),
                         (["--prune-ratio", "nan"], "between 0 and 1"),
                         (["--prune-ratio", "0"], "between 0 and 1"),
                         (["--tasks", "arc_easy,squad"], "unknown task"),
                         (["--limit", "0"], "limit must be 1 or more")]:
        assert needle in _error_line(cli("run", "nobody/model", *args))
    with Store(workspace / "greentui.db") as s:
        assert s.runs.count() == 0


def test_models_rm_refuses_models_with_runs(cli, workspace, tmp_path):
    cli("demo-model", str(tmp_path / "m"), "--register", check=True)
    with Store(workspace / "greentui.db") as s:
        mid = s.models.list()[0]["id"]
        s.runs.create(mid, "experiment", {}, status="done")
    assert "has 1 run" in _error_line(cli("models", "rm", str(mid)))
    with Store(workspace / "greentui.db") as s:
        assert len(s.models.list()) == 1


def test_console_script_answers_version_and_errors(cli_subprocess, workspace):
    """One real process: the ``python -m backend`` entry point, its exit codes and stderr."""
    proc = cli_subprocess("--version", check=True)
    assert proc.stdout.strip() == f"greentui {__version__}"
    proc = cli_subprocess("show", "abc", env={"GREENTUI_HOME": str(workspace)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("greentui: error: 'abc' is not a run id")
