"""Issue #13: every hostile input gets a one-line answer naming the bad thing, a non-zero exit, and
loses nothing (no run left ``running``, no foreign file changed). Real SQLite, real file systems
(a small tmpfs for the full disk), real transformers models built here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from backend.store import Store
from backend.store import database as store_mod
from backend.workspace import db_path


def one_line_error(proc, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert err.count("\n") == 0, f"not one line:\n{err}"
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def runs_in(ws: Path) -> list[tuple]:
    conn = sqlite3.connect(db_path(ws))
    try:
        return conn.execute("SELECT id, status FROM runs").fetchall()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ models

def _model_dir(tmp_path: Path, config) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_1_config_json_that_is_a_list(cli, workspace, tmp_path):
    d = _model_dir(tmp_path, [1, 2, 3])
    one_line_error(cli("models", "add", str(d)), "config.json", "list")


@pytest.mark.parametrize("length", [300, 5000])
def test_2_3_model_paths_that_are_too_long(cli, workspace, length):
    one_line_error(cli("models", "add", "/tmp/" + "a" * length), "too long")
    one_line_error(cli("run", "./" + "b" * length, "--no-prune"), "too long")


def test_4_demo_model_onto_an_existing_file(cli, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    one_line_error(cli("demo-model", str(f)), "is a file")
    assert f.read_text() == "keep me"


def test_architectures_string_is_one_name_not_letters(cli, workspace, tmp_path):
    d = _model_dir(tmp_path, {"model_type": "bert", "architectures": "BertModel"})
    err = one_line_error(cli("models", "add", str(d)), "BertModel")
    assert "B, e, r" not in err


def test_newline_in_a_model_reference_stays_on_one_line(cli, workspace):
    err = one_line_error(cli("models", "add", "org/na\nme"), "control character")
    assert "\\n" in err
    one_line_error(cli("queue", "./some\ndir", "--no-start"), "control character")


@pytest.mark.parametrize("config", [{"model_type": "llama", "num_hidden_layers": {"x": 1}, "architectures": 5},
                                    {"model_type": ["llama"]}, {"text_config": [1], "model_type": "llama"}])
def test_hostile_config_values_are_refused_or_ignored(cli, workspace, tmp_path, config):
    proc = cli("models", "add", str(_model_dir(tmp_path, config)))
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 1
    if proc.returncode == 0:
        listing = cli("models", check=True).stdout
        assert "model" in listing


def test_a_broken_safetensors_header_is_named(cli, workspace, tmp_path):
    d = _model_dir(tmp_path, {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    (d / "model.safetensors").write_bytes(b"\xff" * 8 + b"{")
    one_line_error(cli("models", "add", str(d)), "model.safetensors", "not a readable safetensors")


# ------------------------------------------------------------------------------------------ store

def _foreign_db(ws: Path, table: str) -> Path:
    ws.mkdir(exist_ok=True)
    path = db_path(ws)
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (x)")
    conn.execute(f"INSERT INTO {table} VALUES ('theirs')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("table", ["notes", "runs"])
def test_5_6_another_applications_database_is_refused_untouched(cli, tmp_path, table):
    ws = tmp_path / "ws"
    path = _foreign_db(ws, table)
    before = md5(path)
    for args in (["ls"], ["export"], ["models", "add", "org/x"], ["queue", "org/x", "--no-start"], ["doctor"]):
        one_line_error(cli("--runs-dir", str(ws), *args), "another application", table)
    assert md5(path) == before
    assert sorted(p.name for p in ws.iterdir() if p.name.startswith("greentui")) == ["greentui.db"]  # no -wal
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_an_empty_sqlite_file_is_adopted(cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    sqlite3.connect(db_path(ws)).close()  # zero tables: nobody's data
    assert cli("--runs-dir", str(ws), "ls").returncode == 0
    with Store(db_path(ws)) as s:
        assert s.schema_version() == store_mod.SCHEMA_VERSION


def _damage(ws: Path, monkeypatch) -> None:
    """Write 30 runs, then overwrite one b-tree page in the middle of the file with garbage."""
    with Store(db_path(ws)) as s:
        for i in range(30):
            s.runs.create(None, "import", {"pad": "x" * 800}, status="done")
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path(ws).read_bytes())
    data[3 * 4096:4 * 4096] = b"\xab" * 4096
    db_path(ws).write_bytes(bytes(data))
    monkeypatch.setattr(store_mod, "_INTEGRITY_CHECKED", set())  # a new process would check again


def test_7_the_tui_on_a_damaged_store_ends_with_the_one_line_error(cli, workspace, monkeypatch):
    """``greentui`` checks the store on a thread while the first screen is built (P2); a damaged store
    still ends with the CLI's one-line error and exit code 2, before any query, with no traceback."""
    from textual.app import App

    _damage(workspace, monkeypatch)
    before = md5(db_path(workspace))
    headless = App.run

    def run_headless(self, *args, **kwargs):
        return headless(self, *args, **{**kwargs, "headless": True, "size": (80, 24)})

    monkeypatch.setattr(App, "run", run_headless)
    one_line_error(cli(), "damaged", "greentui doctor")
    assert md5(db_path(workspace)) == before  # nothing was written to it


async def test_7_a_store_error_no_handler_caught_ends_the_tui_as_one_line(workspace, monkeypatch):
    """A store error raised in a handler (here the runs table damaged under the running app, then a
    sort) ends the app with that one-line error instead of a traceback."""
    from greentui.app import GreentuiApp

    with Store(db_path(workspace)) as s:
        s.runs.create(None, "import", {}, status="done")
    app = GreentuiApp(workspace, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.fatal_error is None
        app.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        app.store.close()  # reopen on a damaged file: the page cache cannot hide the damage
        with sqlite3.connect(db_path(workspace)) as conn:
            root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        data = bytearray(db_path(workspace).read_bytes())
        data[(root - 1) * 4096:root * 4096] = b"\xab" * 4096  # the runs table's root page
        db_path(workspace).write_bytes(bytes(data))
        app.store = Store(db_path(workspace), check=False)
        app.screen.call_later(app.screen.action_sort)  # what `s` runs; a handler, not this test, raises
        await asyncio.sleep(1.0)  # (a Pilot wait would wait for the dead handler's messages)
    assert app.return_code == 2
    assert "damaged" in str(app.fatal_error) and "\n" not in str(app.fatal_error)


def test_7_a_damaged_page_is_reported_at_open_and_doctor_repairs(cli, workspace, monkeypatch):
    _damage(workspace, monkeypatch)
    for args in (["ls"], ["export"], ["show", "1"]):
        one_line_error(cli(*args), "damaged", "greentui doctor")
    report = cli("doctor")
    assert report.returncode == 1 and "PROBLEM" in report.stdout and "integrity" in report.stdout
    fixed = cli("doctor", "--repair")
    assert fixed.returncode == 0, fixed.stdout
    assert list(workspace.glob("greentui.db.damaged-*"))  # the damaged file is kept
    monkeypatch.setattr(store_mod, "_INTEGRITY_CHECKED", set())
    assert cli("ls").returncode == 0
    assert cli("doctor").returncode == 0


def test_doctor_marks_stale_runs_and_moves_orphaned_folders(cli, workspace):
    with Store(db_path(workspace)) as s:
        stale = s.runs.create(None, "import", {}, status="running", pid=2**22 + 12345)
    orphan = workspace / "run-09999"
    orphan.mkdir()
    (orphan / "events.jsonl").write_text("{}\n")
    check = cli("doctor")
    assert check.returncode == 1 and "run-09999" in check.stdout and str(stale) in check.stdout
    assert cli("doctor", "--repair").returncode == 0
    assert (workspace / "orphaned" / "run-09999" / "events.jsonl").exists()
    assert dict(runs_in(workspace))[stale] == "interrupted"


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    _mount_tmpfs(mnt, "4m")
    yield mnt
    _umount(mnt)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte (a real ENOSPC, no mock)."""
    filler = disk / "filler"
    # unbuffered: a buffered file keeps the bytes the failed flush could not write, and its close
    # raises ENOSPC again (whether it does depended on how full the disk was to the byte)
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    try:
        with filler.open("ab", buffering=0) as fh:
            while True:
                fh.write(b"\0")
                fh.flush()
    except OSError:
        pass
    return filler


def test_16_a_read_only_store_is_one_line(cli, tmp_path):
    src, ws = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    with Store(db_path(src)) as s:
        s.runs.create(None, "import", {}, status="done")
    ws.mkdir()
    if os.geteuid() != 0:  # permissions bind a normal user: a read-only file in a read-only folder
        (db_path(src)).chmod(0o444)
        src.chmod(0o555)
        try:
            for args in (["queue", "org/x", "--no-start"], ["ls"], ["pause"]):
                err = one_line_error(cli("--runs-dir", str(src), *args))
                assert "read-only" in err or "not writable" in err, err
        finally:
            src.chmod(0o755)
        assert runs_in(src) == [(1, "done")]
        return
    for cmd in (["mount", "--bind", str(src), str(ws)], ["mount", "-o", "remount,bind,ro", str(ws)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            _umount(ws)
            pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.strip()}")
    try:
        for args in (["queue", "org/x", "--no-start"], ["ls"], ["pause"]):
            err = one_line_error(cli("--runs-dir", str(ws), *args))
            assert "read-only" in err or "not writable" in err, err
    finally:
        _umount(ws)
    assert runs_in(src) == [(1, "done")]


def test_17_disk_full_while_recording_keeps_the_store(cli, small_disk, tmp_path):
    ws = small_disk / "ws"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"results": {"arc_easy": {"acc,none": 0.5}}, "model_name": "m" * 200}))
    assert cli("--runs-dir", str(ws), "import", str(good)).returncode == 0
    (ws / ".space-reserve").unlink()  # the reserve is for the run error path; fill the disk for real
    fill(small_disk)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"results": {t: {"acc,none": 0.5, "alias": "x" * 50_000} for t in ("arc_easy", "piqa")},
                               "config": {"pad": "y" * 400_000}}))
    err = one_line_error(cli("--runs-dir", str(ws), "import", str(big)), "disk", "full")
    assert "intact" in err
    (small_disk / "filler").unlink()
    conn = sqlite3.connect(db_path(ws))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    conn.close()


def test_18_disk_full_while_a_run_writes_ends_failed_not_running(small_disk, tmp_path):
    from backend.execution.pipeline import execute_run
    from backend.schema.runconfig import RunConfig
    from backend.workspace import resolve_workspace

    ws = resolve_workspace(small_disk / "ws")  # makes the space reserve, as every writing command does
    assert (ws / ".space-reserve").exists()
    with Store(db_path(ws)) as s:
        cfg = RunConfig(model=str(tmp_path / "model"), no_prune=True, tasks=["arc_easy"], limit=2,
                        measure_energy=False, ppl_limit=None)
        run_id = s.runs.create(None, "baseline", cfg.to_dict(), status="running", pid=os.getpid())
        fill(small_disk)
        status = execute_run(s, ws, run_id)
        run = s.runs.require(run_id)
    assert status == "failed" and run["status"] == "failed"
    assert "disk is full" in run["error"] and "\n" not in run["error"]
    (small_disk / "filler").unlink()
    conn = sqlite3.connect(db_path(ws))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# ------------------------------------------------------------------------------------------ import

def _write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


@pytest.mark.parametrize("doc,needles", [
    ({"results": {"arc_easy": None}}, ["results.arc_easy", "null"]),                                # 8
    ({"results": {"arc_easy": [1, 2]}}, ["results.arc_easy", "list"]),                             # 9
    ({"results": {"arc_easy": {"acc,none": 0.5}}, "n-samples": [1, 2]}, ["n-samples"]),            # 10
    ({"results": {"arc_easy": {"acc,none": 0.5}},
      "energy": {"arc_easy": {"kwh": 0.1, "meter": {"a": {"b": 1}}}}}, ["energy.arc_easy.meter"]),  # 11
    ("[" * 100_000 + "]" * 100_000, ["nests"]),                                                     # 12
    ('{"results": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}", ["nests"]),                         # 13
    ({"results": {"arc_easy": {"acc,none": True}}}, ["results.arc_easy.acc,none", "number"]),       # 15
    ({"results": {"arc_easy": {"acc,none": "0.7"}}}, ["acc,none", "number"]),
    ({"results": {"arc_easy": {"acc,none": 1.5}}}, ["acc,none", "less than or equal to 1"]),
    ({"results": {"arc_easy": {"acc,none": 0.5, "energy_kwh": -2}}}, ["energy_kwh"]),
    ('{"results": {"arc_easy": {"acc,none": NaN}}}', ["not JSON"]),
    ({"results": {"arc_easy": {"acc_norm,none": 0.5}}}, ["acc,none"]),
    ({"results": {"arc_easy": {"acc,none": 0.5}}, "model_name": 7}, ["model_name"]),
])
def test_8_to_15_import_validates_the_whole_file_before_writing(cli, workspace, tmp_path, doc, needles):
    good = _write(tmp_path, "good.json", {"results": {"piqa": {"acc,none": 0.6}}})
    bad = _write(tmp_path, "bad.json", doc)
    one_line_error(cli("import", str(good), str(bad)), str(bad), *needles)
    assert runs_in(workspace) == []  # nothing of the good file either: one transaction, after validation
    conn = sqlite3.connect(db_path(workspace))
    assert conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 0
    conn.close()


def test_14_import_of_a_directory(cli, workspace, tmp_path):
    one_line_error(cli("import", str(tmp_path)), "is a directory")


def test_import_of_a_huge_file_is_refused_by_size(cli, workspace, tmp_path, monkeypatch):
    from backend.results import importer
    monkeypatch.setattr(importer, "MAX_BYTES", 1000)
    big = _write(tmp_path, "big.json", {"results": {"arc_easy": {"acc,none": 0.5, "pad": "x" * 2000}}})
    one_line_error(cli("import", str(big)), "MB")


def test_import_records_every_file_in_one_go(cli, workspace, tmp_path):
    a = _write(tmp_path, "a.json", {"results": {"piqa": {"acc,none": 0.6, "acc_stderr,none": "N/A"}},
                                    "n-samples": {"piqa": {"effective": 50, "original": 50}}})
    b = _write(tmp_path, "b.json", {"results": {"arc_easy": {"acc,none": 1}}, "energy": {"arc_easy": {"wh": 2}}})
    proc = cli("import", str(a), str(b), check=True)
    assert len(proc.stdout.split()) == 2
    assert [st for _, st in runs_in(workspace)] == ["done", "done"]


# ------------------------------------------------------------------------------------------ workspace

@pytest.mark.parametrize("args", [["ls"], ["show", "1"], ["export"], ["models"], ["cancel", "1"], ["rm", "1"],
                                  ["doctor"]])
def test_read_only_commands_on_a_missing_workspace_create_nothing(cli, tmp_path, args):
    typo = tmp_path / "rnus"
    one_line_error(cli("--runs-dir", str(typo), *args), "no greentui workspace", str(typo))
    assert not typo.exists()


def test_read_only_commands_on_an_empty_folder_create_no_store(cli, tmp_path):
    one_line_error(cli("--runs-dir", str(tmp_path), "ls"), "no greentui.db")
    assert not (tmp_path / "greentui.db").exists()


# ------------------------------------------------------------------------------------------ runs

LLAMA_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4,
                "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
                "vocab_size": 512}


def test_trust_recorded_is_the_trust_used(cli, workspace, tmp_path):
    d = str(_model_dir(tmp_path, LLAMA_CONFIG))  # queued, never loaded: config.json is all it needs
    cli("models", "add", d, "--trust-remote-code", check=True)
    cli("queue", Path(d).name, "--no-start", check=True)  # by name, without the flag
    with Store(db_path(workspace)) as s:
        run = s.runs.list(limit=1)[0]
        assert s.runs.require(run["id"])["config"]["trust_remote_code"] is True


def test_trust_is_off_unless_asked(cli, workspace, tmp_path):
    d = str(_model_dir(tmp_path, LLAMA_CONFIG))
    cli("queue", d, "--no-start", check=True)
    with Store(db_path(workspace)) as s:
        run = s.runs.list(limit=1)[0]
        assert s.runs.require(run["id"])["config"]["trust_remote_code"] is False
        assert not s.models.get(d)["trust_remote_code"]


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, demo_model_dir):
    """A tiny randomly initialised GPT-2, built here (no hub), with the demo tokenizer."""
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel
    out = tmp_path_factory.mktemp("gpt2")
    src = demo_model_dir("llama")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, out / name)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=512, n_positions=256)
                    ).save_pretrained(out, safe_serialization=True)
    return out


def test_19_pruning_a_gpt2_is_refused_by_name_at_once(cli, workspace, gpt2_dir):
    t = time.perf_counter()
    proc = cli("run", str(gpt2_dir), "--tasks", "arc_easy", "--limit", "2", "--no-energy")
    assert time.perf_counter() - t < 1.0
    one_line_error(proc, "gpt2", "llama", "--no-prune")
    assert all(st != "running" for _, st in runs_in(workspace))
    one_line_error(cli("queue", str(gpt2_dir), "--no-start"), "gpt2")


@pytest.mark.slow
def test_19_a_gpt2_evaluates_with_no_prune(cli, workspace, gpt2_dir):
    proc = cli("run", str(gpt2_dir), "--no-prune", "--tasks", "arc_easy", "--limit", "2", "--no-energy",
               "--ppl-limit", "0", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert [st for _, st in runs_in(workspace)] == ["done"]


# ------------------------------------------------------------------------------------------ processes

def test_a_finished_runner_is_reaped_not_left_a_zombie(workspace):
    import psutil

    from backend.execution.supervisor import start_runner
    with Store(db_path(workspace)):
        pass
    pid = start_runner(workspace)  # empty queue: the runner exits at once

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == "never"
        except psutil.NoSuchProcess:
            return True

    from tests.conftest import wait_for
    wait_for(gone, 60, "the runner to exit and be reaped")


# ------------------------------------------------------------------------------------------ further inputs

BIG = "99999999999999999999"  # more than SQLite's 64-bit integers hold


@pytest.mark.parametrize("args", [["show", BIG], ["cancel", BIG], ["rm", BIG], ["export", BIG],
                                  ["models", "rm", BIG]])
def test_ids_larger_than_sqlite_holds_are_not_found(cli, workspace, args):
    cli("pause", check=True)  # a workspace with a store
    one_line_error(cli(*args), BIG)


def test_a_calibration_file_that_never_ends_is_refused():
    from backend.errors import GreentuiError
    from backend.stages.pruning.calibration import calibration_text
    with pytest.raises(GreentuiError, match="not a regular file"):
        calibration_text("/dev/zero")
