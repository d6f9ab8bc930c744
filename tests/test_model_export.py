"""greentui export-model: formats decided from config.json, zero padding, the remote-code folder, LoRA
merging, the CLI's refusals (backend.stages.model_export, backend.service.model_export).

The fresh-interpreter checks of every format on every architecture, the run → export → lm-eval CLI
acceptance and the TUI's export through a real subprocess are in tests/test_model_export_e2e.py (slow).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from backend.errors import GreentuiError
from backend.stages.model_export import decilm
from backend.stages.model_export.formats import choose_format, decilm_problem, pad_target, plain_problem
from backend.workspace import PACKAGE_DATA

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(300)

TEXT_IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 61, 300, 12]])
W = {"heads": 12, "kv_heads": 4, "head_dim": 16, "intermediate": 384}
NARROW = {"heads": 8, "kv_heads": 4, "head_dim": 16, "intermediate": 272}
PACKAGE_CONFIGS = PACKAGE_DATA / "model_configs"  # the study's models' config.json files (no weights)


def logits(model):
    with torch.no_grad():
        return model(TEXT_IDS, use_cache=False).logits


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, demo_model_dir):
    """Tiny models pruned the study's way (first and last layer whole), one per architecture, built once."""
    built: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in built:
            from backend.stages.prune import PruneConfig, prune_to_dir
            out = tmp_path_factory.mktemp(f"pruned-{arch}") / "m"
            prune_to_dir(str(demo_model_dir(arch)), out, PruneConfig(ratio=0.25, ignore_first=1, ignore_last=1,
                                                                     calib_samples=2, calib_seq_len=16))
            built[arch] = out
        return built[arch]

    return make


# ------------------------------------------------------------------------------ formats (no torch)
def test_auto_picks_plain_only_for_one_stock_width():
    assert choose_format("auto", "qwen2", 128, [NARROW] * 4)[0] == "plain"
    fmt, why = choose_format("auto", "llama", 192, [W, NARROW, NARROW, W])
    assert fmt == "remote-code" and "layers 0, 3: 12/4 heads, MLP 384; layers 1-2: 8/4 heads, MLP 272" in why
    uniform9 = {"heads": 9, "kv_heads": 3, "head_dim": 16, "intermediate": 256}
    fmt, why = choose_format("auto", "llama", 192, [uniform9] * 4)  # one width, but LlamaConfig refuses 192 % 9
    assert fmt == "remote-code" and "multiple of the query heads (9)" in why
    assert choose_format("auto", "qwen2", 192, [uniform9] * 4)[0] == "plain"  # Qwen2's config does not check


def test_impossible_formats_are_refused_by_name():
    with pytest.raises(GreentuiError, match=r"^--format plain: the layers differ in width .*--format padded"):
        choose_format("plain", "llama", 192, [W, NARROW])
    with pytest.raises(GreentuiError, match=r"^--format decilm: .*qwen2 is not of the Llama family"):
        choose_format("decilm", "qwen2", 128, [W], {"num_attention_heads": 12})
    cfg = {"num_attention_heads": 8, "sliding_window": 1024, "max_position_embeddings": 2048}
    assert "sliding-window" in decilm_problem("mistral", cfg, [NARROW])
    assert decilm_problem("llama", {"num_attention_heads": 12}, [W, NARROW]) is None
    assert "multiple of the layer's kv heads" in decilm_problem("llama", {"num_attention_heads": 12},
                                                                [{**W, "kv_heads": 5, "heads": 10}])
    with pytest.raises(GreentuiError, match="unknown format 'gguf'"):
        choose_format("gguf", "llama", 192, [W])


def test_pad_target_is_the_smallest_stock_width_holding_every_layer():
    few_kv = {"heads": 6, "kv_heads": 2, "head_dim": 16, "intermediate": 300}  # llm-pruner: kv groups removed
    assert pad_target("qwen2", 128, [few_kv, NARROW], W) == {"heads": 12, "kv_heads": 4, "head_dim": 16,
                                                              "intermediate": 300}
    # 4 kv x 3 per group = 12 divides 192: the padded llama keeps it; 10 heads would not, so the original
    assert pad_target("llama", 192, [NARROW, {**NARROW, "heads": 12}], W)["heads"] == 12
    assert plain_problem("llama", 192, [W] * 3) is None


@pytest.mark.parametrize("hidden", [128, 4096, 5120, 8192])
def test_decilm_ffn_mult_gives_the_width_back_under_vllms_rule(hidden):
    cfg = {"num_attention_heads": 32, "hidden_size": hidden}
    widths = [{"heads": 16, "kv_heads": 8, "head_dim": 128, "intermediate": i} for i in (10240, 13528, 300, 14336)]
    targets, blocks = decilm.layout(cfg, widths)
    for t, b, w in zip(targets, blocks, widths):
        assert t["intermediate"] % 256 == 0 and 0 <= t["intermediate"] - w["intermediate"] < 256
        assert decilm.ffn_width(b["ffn"]["ffn_mult"], hidden) == t["intermediate"]
        assert b["attention"]["n_heads_in_group"] * w["kv_heads"] == 32 and t["heads"] == 32


# ------------------------------------------------------------------------------ torch, in process
def test_zero_padding_computes_what_the_pruned_model_computed(pruned_dir):
    from backend.stages.model_export.padding import pad_model
    from backend.stages.model_io import layer_widths, load_model

    model, _ = load_model(pruned_dir("llama"))
    before = logits(model)
    target = {"heads": 12, "kv_heads": 4, "head_dim": 16, "intermediate": 384}
    pad_model(model, [target] * 6)
    assert layer_widths(model) == [target] * 6
    assert not any(p.is_meta for p in model.parameters())
    assert torch.allclose(logits(model), before, atol=1e-5, rtol=0)


def test_remote_code_config_without_layer_widths_is_refused_by_name():
    """A config.json wired to the remote-code module that states no ``layer_widths`` (hand-made, not written
    by export-model) is refused naming the field, not with a NoneType subscript error."""
    from backend.stages.model_export.remote_modeling import PrunedConfig

    with pytest.raises(ValueError, match="no layer_widths"):
        PrunedConfig().layer_config(0)


def test_remote_code_folder_loads_with_stock_transformers(pruned_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from backend.stages.model_export import ExportRequest, export_model
    from backend.stages.model_io import load_model

    src = pruned_dir("llama")
    out = tmp_path / "exported"
    report = export_model(ExportRequest(source=src, out=out, format="auto", verify=False))
    assert report["format"] == "remote-code" and "plain is not possible" in report["format_reason"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "greentui_export.json",
                                                     "model.safetensors", "modeling_greentui_pruned.py",
                                                     "tokenizer.json", "tokenizer_config.json"]
    assert not list(tmp_path.glob(".*partial"))
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_greentui_pruned.PrunedForCausalLM"
    assert [w["num_attention_heads"] for w in config["layer_widths"]] == [12, 8, 8, 8, 8, 12]
    assert set(config["per_layer_config"]) == {"1", "2", "3", "4"}  # transformers 5.25 knows the form
    module = (out / "modeling_greentui_pruned.py").read_text()
    assert 'ARCH = "llama"' in module and "backend" not in module.replace("greentui", "")
    saved = json.loads((out / "greentui_export.json").read_text())
    assert saved["parameters"]["exported"] == sum(p.numel() for p in load_model(src)[0].parameters())
    ours, _ = load_model(src)
    theirs = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert torch.equal(logits(theirs), logits(ours))
    with pytest.raises(Exception):  # noqa: B017 - without the module, stock transformers refuses loudly
        AutoModelForCausalLM.from_pretrained(out)


def test_merge_lora_exports_the_recovered_model(pruned_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from backend.stages.model_export import ExportRequest, export_model
    from backend.stages.model_io import load_model

    src = pruned_dir("llama")
    base, _ = load_model(src)
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    fresh, _ = load_model(src)
    expected = logits(PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).merge_and_unload())
    report = export_model(ExportRequest(source=src, out=tmp_path / "merged", adapter=tmp_path / "adapter",
                                        verify=False))
    assert report["lora"]["merged"] is True
    got = logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged", trust_remote_code=True))
    assert torch.equal(got, expected)
    assert not torch.allclose(got, logits(load_model(src)[0]))  # the adapter changed something


# ------------------------------------------------------------------------------ the command's refusals
def _run_with_model(workspace: Path, src: Path, **config) -> int:
    """A finished experiment run whose folder holds ``src`` as its saved model (a real store)."""
    from backend.store import open_store

    with open_store(workspace) as store:
        mid = store.models.upsert(str(src), name="m", arch="llama")
        run_id = store.runs.create(mid, "experiment", {"model": str(src), "importance": "taylor",
                                                       "prune_ratio": 0.25, **config}, status="done")
    model = workspace / f"run-{run_id:05d}" / "model"
    shutil.copytree(src, model)
    report = json.loads((model / "greentui_prune_report.json").read_text())
    (model / "greentui_prune_report.json").write_text(json.dumps({**report, "lora_merged": False}))
    return run_id


def test_refusals_name_the_bad_thing_and_write_nothing(cli, workspace, pruned_dir, tmp_path):
    src = pruned_dir("llama")
    out = tmp_path / "out"

    def refused(*args: str) -> str:
        proc = cli("export-model", *args)
        assert proc.returncode == 2 and not proc.stdout, proc
        assert not out.exists() and not list(tmp_path.glob(".*partial"))
        return proc.stderr.strip()

    assert refused(str(src), "--out", str(out), "--format", "plain").startswith(
        "greentui: error: --format plain: the layers differ in width")
    assert "not a model directory" in refused(str(tmp_path), "--out", str(out))
    assert "neither a run id nor a model directory" in refused("nowhere", "--out", str(out))
    assert "--adapter: give --merge-lora too" in refused(str(src), "--out", str(out), "--adapter", str(src))
    assert "--merge-lora:" in refused(str(src), "--out", str(out), "--merge-lora")
    assert "no greentui workspace" in refused("99", "--out", str(out))
    no_lora = _run_with_model(workspace, src, no_lora=True)
    assert "no run 99" in refused("#99", "--out", str(out))
    inside = workspace / f"run-{no_lora:05d}" / "export"
    proc = cli("export-model", str(no_lora), "--out", str(inside))
    assert proc.returncode == 2 and "--out: " in proc.stderr and "inside a run folder" in proc.stderr
    assert not inside.exists()
    assert f"--merge-lora: run {no_lora} has no LoRA adapter (it ran with --no-lora)" in refused(
        str(no_lora), "--out", str(out), "--merge-lora")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    proc = cli("export-model", str(src), "--out", str(busy))
    assert proc.returncode == 2 and "--out: " in proc.stderr and "not empty" in proc.stderr
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


def test_a_run_exports_without_lora_and_keeps_its_adapter_apart(cli, workspace, pruned_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from backend.stages.model_io import load_model

    src = pruned_dir("llama")
    run_id = _run_with_model(workspace, src, lora_steps=2)
    peft_model = get_peft_model(load_model(src)[0], LoraConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(str(workspace / f"run-{run_id:05d}" / "lora" / "adapter"))
    out = tmp_path / "exp"
    proc = cli("export-model", str(run_id), "--out", str(out), "--no-verify", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["source"]["run_id"] == run_id and report["method"] == "taylor" and report["ratio"] == 0.25
    assert report["lora"] == {"merged": False, "adapter": "adapter/ (peft; apply with PeftModel.from_pretrained)"}
    assert (out / "adapter" / "adapter_config.json").exists()
    card = (out / "README.md").read_text()
    assert "## Accuracy and energy (greentui run" in card and "not merged: adapter/" in card
    assert "LoRA-recovered model's figures" in card


def test_the_model_card_shows_outside_names_as_text():
    from backend.service.model_card import model_card

    report = {"format": "padded", "format_reason": "zeros", "greentui_version": "0", "method": "taylor",
              "ratio": 2 / 7, "source": {"model": "/m/evil|name [x](e) <b>\x1b[31m"},
              "parameters": {"exported": 10, "pruned": 8, "unpruned": 12},
              "flops_per_token": {"exported": 20, "pruned": 16, "context_tokens": 64},
              "padding": {"params_added": 2, "params_ratio": 1.25, "flops_ratio": 1.25}, "dtype": "float32",
              "lora": {"merged": True}, "verification": None, "trust_remote_code": False}
    card = model_card(report, None, None)
    title = card.splitlines()[card.splitlines().index("---", 1) + 2]
    assert title == "# evil\\|name \\[x\\](e) \\<b\\>\\\\x1b\\[31m, structurally pruned (taylor 2/7)"
    assert "\x1b" not in card and "base_model" not in card  # a path is no HF id: kept out of the YAML
    assert "| zero padding costs | +2 parameters (1.250×), FLOPs/token 1.250× against the pruned model" in card


# ------------------------------------------------------------------------------ plans say what will load
def _plan_export(model: str, **options):
    from backend.stages.pruning.loadability import for_model
    from backend.stages.pruning.plan import plan, read_spec
    from backend.stages.pruning.spec import PruneConfig

    spec, where = read_spec(str(PACKAGE_CONFIGS / model))
    cfg = PruneConfig(**options)
    p = plan(spec, cfg)
    return p, for_model(where, spec, cfg, p)


def test_plan_says_which_formats_load_without_custom_code_and_the_uniform_ratios_nearby():
    p, section = _plan_export("Qwen2.5-7B", ratio=2 / 7)  # the study's recipe: ignore 4/4
    f = section["formats"]
    assert f["plain"]["ok"] is False and "layers 0-3, 24-27: 28/4 heads" in f["plain"]["why"]
    assert f["padded"]["ok"] and f["padded"]["params"] == 7_615_616_512  # every layer back at 28/4, MLP 18944
    assert f["padded"]["params_added"] == f["padded"]["params"] - p["params_after"]
    assert f["decilm"]["ok"] is False and "qwen2 is not of the Llama family" in f["decilm"]["why"]
    # k/7 of the query heads per kv group, every layer pruned: 24/4, 20/4, 16/4 heads, stock-loadable
    assert [(u["ratio_text"], u["heads"], u["kv_heads"]) for u in section["uniform"]] == \
        [("1/7", 24, 4), ("2/7", 20, 4), ("3/7", 16, 4)]
    assert [(a["round_to"], a["intermediate"], a["params_delta"]) for a in section["alignment"]] == \
        [(64, [13504], -5_160_960), (128, [13440], -18_923_520)]

    _, llama = _plan_export("Llama-3.1-8B", ratio=2 / 7)
    assert [u["heads"] for u in llama["uniform"]] == [16, 8]  # 24 heads: 4096 is not a multiple of 24
    assert llama["formats"]["decilm"]["ok"] and llama["formats"]["decilm"]["params_ratio"] > 1
    _, uniform = _plan_export("Llama-3.1-8B", ratio=2 / 7, ignore_first=0, ignore_last=0)
    assert uniform["formats"]["plain"]["ok"] and uniform["uniform"] == []
    _, llm_pruner = _plan_export("Llama-3.1-8B", ratio=2 / 7, count_rule="llm-pruner")
    assert llm_pruner["alignment"] == []  # the rule does not round


def test_plan_command_and_the_form_panel_show_it(cli):
    out = cli("plan", str(PACKAGE_CONFIGS / "Qwen2.5-7B"), "--json", check=True).stdout
    assert json.loads(out)["export"]["formats"]["plain"]["ok"] is False
    text = cli("plan", str(PACKAGE_CONFIGS / "Qwen2.5-7B"), check=True).stdout
    assert "exports (greentui export-model)" in text and "ratio 1/7: 24/4 heads" in text
    from backend.stages.pruning.plan import brief
    from backend.stages.pruning.spec import PruneConfig

    lines = brief(str(PACKAGE_CONFIGS / "Qwen2.5-7B"), PruneConfig())
    assert any(line.startswith("exports as remote-code (trust_remote_code); without custom code: padded, +20.8%")
               for line in lines), lines
    assert any("uniform (stock) with every layer pruned at ratio 1/7 (24/4 heads)" in line for line in lines)
