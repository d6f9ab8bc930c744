"""``greentui doctor`` (#22 2.7): deleted folders of finished runs, orphans that never nest, the exit code
that follows what is printed, and a read-only workspace said to be one (``--repair`` in one line)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from backend.store import Store
from backend.workspace import db_path, run_dir

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _finished_run(ws, folder: bool = True) -> int:
    with Store(db_path(ws)) as s:
        rid = s.runs.create(None, "experiment", {"model": "m"}, status="running", pid=None)
        s.runs.finish(rid, "done")
    if folder:
        run_dir(ws, rid).mkdir()
        (run_dir(ws, rid) / "config.json").write_text("{}\n")
    return rid


def test_a_finished_run_whose_folder_was_deleted_is_reported(cli, workspace):
    kept, lost = _finished_run(workspace), _finished_run(workspace)
    shutil.rmtree(run_dir(workspace, lost))
    out = cli("doctor")
    line = next(ln for ln in out.stdout.splitlines() if "deleted folders" in ln)
    assert line.startswith("WARN") and f"run(s) {lost} " in line and str(kept) not in line.split(":")[1]
    assert out.returncode == 0                  # nothing to repair: a warning, not a failure
    assert "PROBLEM" not in out.stdout


def test_orphaned_folders_never_nest(cli, workspace):
    """A second orphan of the same name (a store rebuilt, ids reused) lands beside the first."""
    Store(db_path(workspace)).close()
    for round_ in (1, 2):
        orphan = workspace / "run-00099"
        orphan.mkdir()
        (orphan / "events.jsonl").write_text(f"round {round_}\n")
        assert cli("doctor", "--repair").returncode == 0
    moved = sorted(p.name for p in (workspace / "orphaned").iterdir())
    assert moved == ["run-00099", "run-00099.2"]
    assert not (workspace / "orphaned" / "run-00099" / "run-00099").exists()
    assert (workspace / "orphaned" / "run-00099.2" / "events.jsonl").read_text() == "round 2\n"


def test_the_exit_code_follows_the_printed_problem(cli, workspace):
    with Store(db_path(workspace)) as s:
        s.runs.create(None, "import", {}, status="running", pid=2**22 + 4321)   # no such process
    (workspace / "run-00777").mkdir()
    out = cli("doctor")
    assert out.stdout.count("PROBLEM") == 2 and out.returncode == 1
    fixed = cli("doctor", "--repair")
    assert "PROBLEM" not in fixed.stdout and fixed.stdout.count("fixed") == 2 and fixed.returncode == 0


def _read_only_doctor(ws, *args: str) -> subprocess.CompletedProcess:
    """``greentui doctor ARGS`` with the workspace bind-mounted read-only, in a mount namespace of
    its own (root only; skipped where namespaces or mounts are not allowed)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    script = (
        "import subprocess, sys\n"
        f"ws = {str(ws)!r}\n"
        "for cmd in (['mount', '--make-rprivate', '/'], ['mount', '--bind', ws, ws],\n"
        "            ['mount', '-o', 'remount,ro,bind', ws]):\n"
        "    if subprocess.run(cmd, capture_output=True).returncode:\n"
        "        sys.exit(77)\n"
        "from backend.cli.main import main\n"
        f"sys.exit(main(['--runs-dir', ws, 'doctor', *{list(args)!r}]))\n")
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(REPO_ROOT), timeout=120)
    if proc.returncode == 77 or "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip("cannot mount read-only here")
    return proc


def test_a_read_only_workspace_is_said_to_be_read_only(workspace):
    _finished_run(workspace)
    with Store(db_path(workspace)) as s:       # a WAL store left with its -wal/-shm, as in real use
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    check = _read_only_doctor(workspace)
    assert "read-only" in check.stdout and "damaged" not in check.stdout, check.stdout + check.stderr
    assert "integrity check ok" in check.stdout
    assert check.returncode == 1 and "PROBLEM" in check.stdout
    repair = _read_only_doctor(workspace, "--repair")
    assert repair.returncode == 2 and "Traceback" not in repair.stderr
    assert len(repair.stderr.strip().splitlines()) == 1 and "read-only" in repair.stderr
