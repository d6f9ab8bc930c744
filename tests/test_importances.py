"""The importance registry (``backend/stages/pruning/importances.py``, issue #19 item 4): every pruning
method is one entry that every consumer reads, and a separate package adds one through the
``greentui.importances`` entry point (``tests/plugins/greentui-taylor-sq-importance``, installed by
``scripts/bootstrap``) that ``--method NAME`` selects and that prunes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.schema import catalog
from backend.stages.pruning import importances

from .conftest import require_plugin

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def taylor_sq_installed():
    require_plugin("greentui-taylor-sq-importance")


def test_every_method_is_an_entry_and_no_consumer_compares_method_names():
    built_in = {e.name: e for e in importances.BUILT_IN}
    assert list(built_in) == catalog.METHODS[:len(built_in)]
    assert [importances.get(n) for n in built_in] == list(built_in.values())
    assert [n for n, e in built_in.items() if e.needs_gradients] == ["taylor"]
    assert [n for n, e in built_in.items() if e.removes == "layers"] == ["layer-drop"]
    assert all(e.needs_calibration for e in built_in.values() if e.needs_gradients or e.removes == "layers")
    # dispatch by a method's name is the registry's alone: no `method == "taylor"` anywhere else
    names = "|".join(re.escape(n) for n in built_in)
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in [*ROOT.glob("backend/**/*.py"), *ROOT.glob("greentui/**/*.py")]
                 if p.name != "importances.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_a_malformed_entry_is_refused_by_name():
    from backend.errors import GreentuiError

    with pytest.raises(GreentuiError, match="'nothing' scores no weight"):
        importances.register(importances.Importance("nothing"))
    with pytest.raises(GreentuiError, match="removes must be"):
        importances.register(importances.Importance("odd", removes="rows", drawn=True))
    assert "nothing" not in catalog.METHODS and "odd" not in catalog.METHODS


@pytest.mark.slow  # ~7 s on the shared 2-core box (prunes, then a whole-gradient reference)
def test_a_plugin_importance_is_offered_and_prunes_by_its_name(taylor_sq_installed, cli, demo_model_dir, tmp_path):
    """``--method taylor-sq`` (a plugin's gradient importance) prunes; its heads are the ones its own
    score, ``(w·G)²`` summed per head over whole gradients, ranks lowest."""
    from backend.stages.prune import PruneConfig
    from tests.test_prune_memory import reference_choice

    assert "taylor-sq" in catalog.method_names()  # listed from the entry point, nothing imported
    entry = importances.get("taylor-sq")
    assert entry.needs_gradients and entry.removes == "width"
    model = demo_model_dir("llama")
    out = tmp_path / "pruned"
    args = ["--ratio", "0.3", "--ignore-first", "1", "--ignore-last", "1", "--calib-samples", "3",
            "--calib-seq-len", "32", "--count-rule", "llm-pruner"]
    got = cli("prune", str(model), "--out", str(out), "--method", "taylor-sq", *args, "--json")
    assert got.returncode == 0, got.stderr
    report = json.loads((out / "greentui_prune_report.json").read_text())
    assert report["method"] == "taylor-sq" and report["params_after"] < report["params_before"]
    assert report["calibration"]["passes"] >= 1
    want = reference_choice(model, PruneConfig(method="taylor-sq", ratio=0.3, ignore_first=1, ignore_last=1,
                                               calib_samples=3, calib_seq_len=32, count_rule="llm-pruner"),
                            "greentui", mlp=False)
    assert {e["layer"]: (e["heads_removed"], e["kv_heads_removed"]) for e in report["layers"]} == want
    taylor = json.loads(cli("plan", str(model), "--method", "taylor", *args[:6], "--count-rule", "llm-pruner",
                            "--json").stdout)
    plugin = json.loads(cli("plan", str(model), "--method", "taylor-sq", *args[:6], "--count-rule", "llm-pruner",
                            "--json").stdout)
    assert plugin["params_after"] == taylor["params_after"] == report["params_after"]  # plan = prune


def test_an_unknown_method_is_refused_before_loading(cli, tmp_path):
    got = cli("prune", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), "--method", "fisher")
    assert got.returncode != 0
    assert "fisher" in got.stderr and "--importance" in got.stderr and len(got.stderr.strip().splitlines()) == 1
