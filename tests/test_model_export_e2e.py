"""export-model end to end (slow tier): every format on every architecture loaded in a fresh interpreter
that imports only transformers, and the issue's acceptance — a run pruned with its first and last
layers whole, LoRA-recovered, exported with --merge-lora, then loaded and evaluated by the lm-eval CLI
as separate processes.

Fresh interpreters are the point here (``check_load.py`` asserts that no ``backend`` module was
imported), so these tests spawn processes and stay out of the fast tier.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.schema.catalog import ARCHITECTURES
from backend.stages.model_export import FIXED_TEXT, ExportRequest, export_model
from backend.stages.model_export.export import _HERE as EXPORT_CODE
from backend.stages.model_export.formats import DECILM_ARCHS
from backend.workspace import PACKAGE_DATA

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
DATA = str(PACKAGE_DATA / "commonsense")
DEMO = PACKAGE_DATA / "demo-model"


def _prune(src: Path, out: Path, first: int, last: int) -> Path:
    from backend.stages.prune import PruneConfig, prune_to_dir

    prune_to_dir(str(src), out, PruneConfig(ratio=0.25, ignore_first=first, ignore_last=last, calib_samples=2,
                                            calib_seq_len=16))
    return out


def _planned(src: Path, first: int, last: int):
    """The planner's export section for the same pruning (config.json alone)."""
    from backend.stages.pruning.loadability import for_model
    from backend.stages.pruning.plan import plan, read_spec
    from backend.stages.pruning.spec import PruneConfig

    spec, where = read_spec(str(src))
    cfg = PruneConfig(ratio=0.25, ignore_first=first, ignore_last=last)
    return for_model(where, spec, cfg, plan(spec, cfg))["formats"]


def _assert_loaded_alone(report: dict, exact: bool) -> None:
    check = report["verification"]
    assert "error" not in check, check
    assert check["greentui_imported"] is False and check["tokenizer_ids_match"] is True
    assert check["trust_remote_code"] is (report["format"] in ("remote-code", "decilm"))
    if exact:
        assert check["bit_identical"] is True, check
    else:
        assert check["max_abs_diff"] <= 1e-5 * max(1.0, check["max_abs_logit"]), check


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_format_loads_in_a_fresh_interpreter(arch, demo_model_dir, tmp_path):
    src = demo_model_dir(arch)
    pruned = _prune(src, tmp_path / "pruned", 1, 1)  # the study's recipe: widths differ per layer
    uniform = _prune(src, tmp_path / "uniform", 0, 0)

    report = export_model(ExportRequest(source=pruned, out=tmp_path / "remote", check_pipeline=True))
    assert report["format"] == "remote-code"
    _assert_loaded_alone(report, exact=True)
    assert report["verification"]["pipeline_generated"] is True
    assert report["verification"]["class"] == "PrunedForCausalLM"

    report = export_model(ExportRequest(source=pruned, out=tmp_path / "padded", format="padded"))
    _assert_loaded_alone(report, exact=False)
    planned = _planned(src, 1, 1)
    assert planned["padded"]["params"] == report["parameters"]["exported"]  # the planner said so up front
    assert report["padding"]["params_ratio"] == pytest.approx(planned["padded"]["params_ratio"])

    report = export_model(ExportRequest(source=uniform, out=tmp_path / "plain", format="auto"))
    assert report["format"] == ("plain" if _planned(src, 0, 0)["plain"]["ok"] else "remote-code")
    _assert_loaded_alone(report, exact=True)

    if arch in DECILM_ARCHS:
        if arch == "mistral":  # the demo Mistral attends within 1024 tokens; DeciLM has no window
            config = json.loads((pruned / "config.json").read_text())
            (pruned / "config.json").write_text(json.dumps({**config, "sliding_window": None}))
        report = export_model(ExportRequest(source=pruned, out=tmp_path / "decilm", format="decilm"))
        _assert_loaded_alone(report, exact=False)
        config = json.loads((tmp_path / "decilm" / "config.json").read_text())
        assert config["model_type"] == "nemotron-nas" and config["architectures"] == ["DeciLMForCausalLM"]
        assert len(config["block_configs"]) == config["num_hidden_layers"]
        assert report["verification"]["class"] == "DeciLMForCausalLM"
    else:
        with pytest.raises(Exception, match="--format decilm"):
            export_model(ExportRequest(source=pruned, out=tmp_path / "decilm", format="decilm"))


def _check_in_fresh_interpreter(folder: Path, reference, ids: list[int], trust: bool, tmp: Path) -> dict:
    from safetensors.torch import save_file

    save_file({"logits": reference.contiguous()}, str(tmp / "ref.safetensors"))
    (tmp / "req.json").write_text(json.dumps({"text": FIXED_TEXT, "ids": ids, "reference": str(tmp / "ref.safetensors"),
                                              "trust_remote_code": trust, "pipeline": True}))
    proc = subprocess.run([sys.executable, str(EXPORT_CODE / "check_load.py"), str(folder), str(tmp / "req.json")],
                          capture_output=True, text=True, timeout=600, cwd=str(tmp),
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_acceptance_run_merge_lora_export_lm_eval(cli_subprocess, workspace, tmp_path):
    """The demo model pruned with its first and last layers whole, LoRA-recovered, exported with
    --merge-lora --format remote-code: transformers alone loads it with the logits of greentui's loader
    of the merged model, and the lm-eval CLI gives the accuracy greentui measured; a uniform prune
    exports as plain and loads without trust_remote_code."""
    import torch
    from peft import PeftModel

    from backend.stages.lm_tasks import build_local_task_dir
    from backend.stages.model_io import load_model
    from backend.store import open_store

    torch.set_num_threads(1)
    env = {"OMP_NUM_THREADS": "1"}
    run = cli_subprocess("run", str(DEMO), "--tasks", "boolq", "--limit", "20", "--data-dir", DATA,
                         "--ignore-first", "1", "--ignore-last", "1", "--lora-steps", "2", "--lora-batch-size", "2",
                         "--batch-size", "4", "--ppl-limit", "0", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    run_id = int(run.stdout.strip().splitlines()[-1])
    out = tmp_path / "exported"
    exp = cli_subprocess("export-model", str(run_id), "--out", str(out), "--merge-lora", "--format", "remote-code",
                         "--json", env=env)
    assert exp.returncode == 0, exp.stderr[-3000:]
    report = json.loads(exp.stdout)
    assert report["lora"]["merged"] is True and report["verification"]["bit_identical"] is True
    assert "## Accuracy and energy (greentui run" in (out / "README.md").read_text()

    folder = workspace / f"run-{run_id:05d}"
    base, tok = load_model(folder / "model")
    merged = PeftModel.from_pretrained(base, str(folder / "lora" / "adapter")).merge_and_unload()
    ids = tok(FIXED_TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        reference = merged(torch.tensor([ids])).logits
    check = _check_in_fresh_interpreter(out, reference, ids, True, tmp_path)
    assert check["bit_identical"] is True and check["greentui_imported"] is False and check["pipeline_generated"]

    with open_store(workspace) as store:
        (ours,) = store.results.task_results(run_id, "pruned")
    tasks = build_local_task_dir(DATA, ["boolq"], tmp_path / "lm")
    lm = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                         f"pretrained={out},trust_remote_code=True,dtype=float32", "--tasks", "greentui_local_boolq",
                         "--include_path", str(tasks), "--limit", "20", "--batch_size", "4", "--device", "cpu",
                         "--output_path", str(tmp_path / "lm-out")],
                        capture_output=True, text=True, timeout=1200, cwd=str(tmp_path),
                        env={**__import__("os").environ, **env, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert lm.returncode == 0, lm.stderr[-3000:]
    (result_file,) = (tmp_path / "lm-out").rglob("results_*.json")
    theirs = json.loads(result_file.read_text())["results"]["greentui_local_boolq"]
    assert theirs["acc,none"] == pytest.approx(ours["acc"], abs=0) and ours["n_samples"] == 20

    uniform = tmp_path / "uniform"
    assert cli_subprocess("prune", str(DEMO), "--out", str(uniform), "--ratio", "2/7", "--ignore-first", "0",
                          "--ignore-last", "0", "--calib-samples", "2", env=env).returncode == 0
    plain = cli_subprocess("export-model", str(uniform), "--out", str(tmp_path / "plain"), "--json", env=env)
    assert plain.returncode == 0, plain.stderr[-3000:]
    report = json.loads(plain.stdout)
    assert report["format"] == "plain" and report["verification"]["trust_remote_code"] is False
    assert report["verification"]["bit_identical"] is True
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
