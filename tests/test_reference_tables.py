"""Published tables imported as reference runs: parsing, pairing, printed Avg/Ratio checks, merge of
an accuracy and an energy table, one-line errors with nothing written, and the references in ls,
show, every export format (marked) and Compare."""

from __future__ import annotations

import csv
import io
import json

import pytest

from backend.cli.main import main
from backend.errors import GreentuiError
from backend.results.reference_tables import parse_table
from backend.store import open_store

ACC = """model,variant,ARCC,ARC-e,BoolQ,Hella,PIQA,OBQA,Wino,Avg,Ratio
Llama-3.1-8B,vanilla,53.5,81.1,82.1,78.9,81.2,44.8,73.9,70.8,
Llama-3.1-8B,pruned,42.1,70.2,70.0,68.3,76.0,40.2,66.9,62.0,0.876
Qwen2.5-7B,vanilla,51.0,80.0,84.6,78.0,80.0,47.0,73.0,75.0,
Qwen2.5-7B,pruned,45.0,74.0,80.0,71.0,77.0,43.0,70.0,65.7,0.932
"""
WH = """model,variant,arc_challenge,arc_easy,boolq,hellaswag,piqa,openbookqa,winogrande,Avg,Ratio
Llama-3.1-8B,vanilla,1.20,4.10,5.30,16.20,2.10,0.70,1.90,4.50,
Llama-3.1-8B,pruned,1.10,3.70,4.80,14.80,1.90,0.65,1.75,4.10,0.911
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_printed_avg_checked_within_rounding(tmp_path):
    t = parse_table(_write(tmp_path, "t1.csv", ACC), "acc")
    assert t.percent and t.tasks[0] == "arc_challenge" and len(t.rows) == 4
    assert t.rows[1].pair_of == 0 and t.rows[3].pair_of == 2
    assert t.rows[0].cells["arc_challenge"] == pytest.approx(0.535)
    by = {(c.line, c.what): c for c in t.checks}
    assert by[(2, "Avg")].ok and by[(3, "Avg")].ok and by[(3, "Ratio")].ok   # 70.79 → 70.8, 61.96 → 62.0
    assert not by[(4, "Avg")].ok                                              # printed 75.0, cells give 70.51
    assert by[(4, "Avg")].recomputed == pytest.approx(70.514, abs=1e-3)
    assert by[(5, "Avg")].ok and by[(5, "Ratio")].ok                          # 65.71/70.51 = 0.932


@pytest.mark.parametrize("text, match", [
    ("model,ARCC\nA,0.5\n", r"row 1, column 'variant': missing"),
    ("model,variant,ARCC,PIQA\nA,pruned,0.5,0.6\n", r"row 2, column 'variant': a pruned row with no vanilla"),
    ("model,variant,ARCC,PIQA\nA,vanilla,0.5,0.6\nA,pruned,0.4,zero\n", r"row 3, column 'PIQA': 'zero' is not a number"),
    ("model,variant,ARCC,Lambada\nA,vanilla,0.5,0.6\n", r"row 1, column 'Lambada': not a task header"),
    ("model,variant,ARCC\nA,base,0.5\n", r"row 2, column 'variant': 'base' is neither"),
])
def test_bad_tables_one_line_error_nothing_written(tmp_path, workspace, capsys, text, match):
    f = _write(tmp_path, "bad.csv", text)
    assert main(["import", "--table", str(f), "--metric", "acc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err
    import re
    assert re.search(match, err), err
    with open_store(workspace) as s:
        assert s.runs.count() == 0
    with pytest.raises(GreentuiError, match="--metric"):
        parse_table(f, "joules")


def test_reference_runs_merge_and_show_everywhere(tmp_path, workspace, capsys):
    acc, wh = _write(tmp_path, "t1.csv", ACC), _write(tmp_path, "t2.csv", WH)
    assert main(["import", "--table", str(acc), "--metric", "acc", "--source", "GreenPruning Table 1"]) == 0
    out = capsys.readouterr().out
    assert "FLAGGED" in out and "printed Avg 75 DISAGREES" in out
    assert main(["import", "--table", str(wh), "--metric", "wh", "--source", "GreenPruning Table 2"]) == 0
    capsys.readouterr()
    with open_store(workspace) as s:
        runs = s.runs.list()
        assert [r["kind"] for r in runs] == ["reference", "reference"]          # merged: still two runs
        llama = next(r for r in runs if r["model_name"] == "Llama-3.1-8B")
        assert llama["avg_wh"] == pytest.approx(4.1) and llama["wh_ratio"] == pytest.approx(0.9111, abs=1e-4)
        assert llama["avg_acc"] == pytest.approx(0.6196, abs=1e-4)
        rows = s.results.task_results(llama["id"], "pruned")
        assert all(r["meter"] == "published (GreenPruning Table 2)" and r["acc"] is not None for r in rows)
    assert main(["ls"]) == 0
    assert capsys.readouterr().out.count("reference") >= 2
    assert main(["export", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "Llama-3.1-8B (reference)" in md and "⚠" in md and "DISAGREES" in md
    assert main(["export", "--format", "csv"]) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {ln["kind"] for ln in lines if ln["record"] == "task"} == {"reference"}
    assert any(ln["reference_flags"] for ln in lines) and all(ln["reference"] == "True" for ln in lines)
    assert main(["export", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(e["reference"] for e in doc["energy_detail"])
    assert any(not c["ok"] for cs in doc["reference_checks"].values() for c in cs)
    assert main(["export", "--format", "latex"]) == 0
    assert "(reference)" in capsys.readouterr().out
    assert main(["show", str(llama["id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["kind"] == "reference" and shown["reference_checks"]


# ----------------------------------------------------------------- sources, names, percent (#22 2.3, 3.10)

ONE = "model,variant,ARCC,PIQA\nGemma-2B,vanilla,{v1},{v2}\nGemma-2B,pruned,{p1},{p2}\n"


def _ref_runs(workspace):
    with open_store(workspace) as s:
        return [s.runs.require(r["id"]) for r in s.runs.list(descending=False)]


def _acc(workspace, run_id, variant="pruned"):
    with open_store(workspace) as s:
        return {r["task"]: r["acc"] for r in s.results.task_results(run_id, variant)}


def test_a_second_paper_never_replaces_the_first(tmp_path, workspace, capsys):
    """Two accuracy tables of one model from two sources: both kept, told apart by source; the same
    table again (same source) updates its own runs, adds none."""
    a = _write(tmp_path, "a.csv", ONE.format(v1=0.5, v2=0.7, p1=0.4, p2=0.6))
    b = _write(tmp_path, "b.csv", ONE.format(v1=0.52, v2=0.71, p1=0.30, p2=0.50))
    assert main(["import", "--table", str(a), "--metric", "acc", "--source", "Paper A"]) == 0
    assert main(["import", "--table", str(b), "--metric", "acc", "--source", "Paper B"]) == 0
    runs = _ref_runs(workspace)
    assert len(runs) == 2
    by_source = {r["config"]["reference"]["sources"]["acc"]: r["id"] for r in runs}
    assert _acc(workspace, by_source["Paper A"]) == {"arc_challenge": 0.4, "piqa": 0.6}
    assert _acc(workspace, by_source["Paper B"]) == {"arc_challenge": 0.3, "piqa": 0.5}
    a2 = _write(tmp_path, "a2.csv", ONE.format(v1=0.5, v2=0.7, p1=0.41, p2=0.6))   # an erratum
    assert main(["import", "--table", str(a2), "--metric", "acc", "--source", "Paper A"]) == 0
    assert len(_ref_runs(workspace)) == 2
    assert _acc(workspace, by_source["Paper A"])["arc_challenge"] == 0.41
    capsys.readouterr()


def test_names_match_in_any_case_and_rename_joins_spellings(tmp_path, workspace, capsys):
    """"Gemma-2B" (accuracy) and "Gemma-2b" (energy) are one model; --rename OLD=NEW joins a third
    spelling; a --rename naming no model of the table is a one-line error and writes nothing."""
    acc = _write(tmp_path, "acc.csv", ONE.format(v1=0.5, v2=0.7, p1=0.4, p2=0.6))
    wh = _write(tmp_path, "wh.csv", ONE.replace("Gemma-2B", "Gemma-2b").format(v1=2.0, v2=3.0, p1=1.5, p2=2.5))
    assert main(["import", "--table", str(acc), "--metric", "acc", "--source", "T1"]) == 0
    assert main(["import", "--table", str(wh), "--metric", "wh", "--source", "T2"]) == 0
    (run,) = _ref_runs(workspace)
    assert set(run["config"]["reference"]["sources"]) == {"acc", "wh"}
    other = _write(tmp_path, "other.csv", ONE.replace("Gemma-2B", "Gemma 2B").format(v1=2.0, v2=3.0, p1=1.5, p2=2.5))
    assert main(["import", "--table", str(other), "--metric", "wh", "--source", "T2",
                 "--rename", "gemma 2b=Gemma-2B"]) == 0
    assert len(_ref_runs(workspace)) == 1                           # the same run, its T2 figures replaced
    capsys.readouterr()
    assert main(["import", "--table", str(other), "--metric", "wh", "--source", "T3",
                 "--rename", "Gemma 7B=Gemma-7B"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'gemma 7b'" in err and "other.csv" in err
    assert main(["import", "--table", str(other), "--metric", "wh", "--rename", "no-equals"]) == 2
    assert "OLD=NEW" in capsys.readouterr().err
    assert len(_ref_runs(workspace)) == 1


def test_percent_means_percent_and_doubled_quotes_parse(tmp_path):
    """Cells printed with % are percentages whatever their size (0.9% is 0.009, not 90 %); RFC 4180
    doubled quotes inside a quoted cell are one quote."""
    t = parse_table(_write(tmp_path, "p.csv", 'model,variant,ARCC,PIQA,Avg\n"Foo ""q"" 7B",vanilla,0.9%,0.5%,0.7%\n'),
                    "acc")
    assert t.percent and t.rows[0].model == 'Foo "q" 7B'
    assert t.rows[0].cells == {"arc_challenge": pytest.approx(0.009), "piqa": pytest.approx(0.005)}
    assert t.checks[0].ok
    with pytest.raises(GreentuiError, match=r"row 2, column 'ARCC': a percentage in an energy"):
        parse_table(_write(tmp_path, "w.csv", "model,variant,ARCC\nA,vanilla,5%\n"), "wh")


# ---------------------------------------------------------------------- size, time, batches (#22 2.2, 2.11)

def test_an_endless_or_huge_file_is_one_line(tmp_path, workspace, capsys, monkeypatch):
    """/dev/zero is refused in one line, not read until MemoryError; so is a file past the bound."""
    assert main(["import", "--table", "/dev/zero", "--metric", "acc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zero" in err and "Traceback" not in err
    import backend.results.reference_tables as rt
    monkeypatch.setattr(rt, "MAX_TABLE_BYTES", 100)
    big = _write(tmp_path, "big.csv", ACC)
    assert main(["import", "--table", str(big), "--metric", "acc"]) == 2
    assert "larger than" in capsys.readouterr().err
    with open_store(workspace) as s:
        assert s.runs.count() == 0


def _many(n: int) -> str:
    lines = ["model,variant,ARCC,PIQA"]
    for i in range(n):
        lines += [f"M{i},vanilla,0.5,0.7", f"M{i},pruned,0.4,0.6"]
    return "\n".join(lines) + "\n"


def test_import_writes_in_short_batches_that_let_others_in(tmp_path, workspace, capsys):
    """Between two batches the write lock is free: ``pause`` (a writer) and ``ls`` (a reader) work
    during the import, and so does a writer that will not wait at all (busy timeout 0)."""
    import sqlite3

    from backend.results.reference_tables import import_table
    from backend.workspace import db_path

    path = _write(tmp_path, "many.csv", _many(50))
    calls: list[tuple[int, int]] = []

    def between(done: int, total: int) -> None:
        calls.append((done, total))
        other = sqlite3.connect(db_path(workspace), timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")          # raises "database is locked" if a batch were open
        other.execute("COMMIT")
        other.close()
        if len(calls) == 2:
            assert main(["pause"]) == 0
            assert main(["ls", "--limit", "3"]) == 0

    with open_store(workspace) as s:
        s.results.REFERENCE_BATCH = 20
        ids = import_table(s, path, "acc", "many", progress=between)
        assert s.queue.paused()
    assert len(ids) == 50 and calls == [(20, 50), (40, 50), (50, 50)]
    assert "queue paused" in capsys.readouterr().out


def test_a_failed_batch_leaves_the_store_as_it_was(tmp_path, workspace):
    """A write that fails in the third batch (here: the disk "fills") undoes the batches before it,
    including figures merged into runs that were there before."""
    from backend.results.reference_tables import import_table

    first = _write(tmp_path, "first.csv", _many(5))
    with open_store(workspace) as s:
        import_table(s, first, "acc", "same")
        before = {r["id"]: s.results.task_results(r["id"]) for r in s.runs.list()}
        s.results.REFERENCE_BATCH = 3
        second = _write(tmp_path, "second.csv", _many(12).replace("0.4,0.6", "0.3,0.2"))
        done: list[int] = []

        def fill_disk(n: int, total: int) -> None:
            done.append(n)
            if len(done) == 2:
                s.conn.execute("PRAGMA max_page_count = 1")   # every later write: "database or disk is full"

        with pytest.raises(GreentuiError, match="full"):
            import_table(s, second, "acc", "same", progress=fill_disk)
    with open_store(workspace) as s:
        after = {r["id"]: s.results.task_results(r["id"]) for r in s.runs.list()}
    assert after == before
