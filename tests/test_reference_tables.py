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
