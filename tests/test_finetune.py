"""LoRA recovery: the loss falls, the adapter reloads with peft, merging is exact, fused and pruned
shapes are wrapped, bad input fails with a clear GreentuiError."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from backend import workspace  # noqa: E402
from backend.errors import GreentuiError  # noqa: E402
from backend.stages.finetune import LoraSpec, finetune_lora, load_training_data, target_modules_for  # noqa: E402
from backend.stages.lora.data import alpaca_prompt, tokenize_records  # noqa: E402

PROBE = [[5, 17, 42, 99, 7, 300, 12, 64, 8, 250, 33, 1]]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama_dir(demo_model_dir):
    return demo_model_dir("llama")


@pytest.fixture(scope="module")
def phi3_dir(demo_model_dir):
    return demo_model_dir("phi3")


def load(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits


def pruned_llama(model_dir):
    """A non-uniformly pruned stand-in: layer 1 keeps 8 of 12 query heads (2 per kv group), layer 2's
    MLP keeps 200 of 384 intermediate channels. Deterministic, so it doubles as the 'fresh base'."""
    model, tok = load(model_dir)
    attn = model.model.layers[1].self_attn
    hd = attn.head_dim
    keep = torch.cat([torch.arange(g * 3 * hd, (g * 3 + 2) * hd) for g in range(4)])  # 2 of 3 per group
    with torch.no_grad():
        q, o = attn.q_proj, attn.o_proj
        attn.q_proj = torch.nn.Linear(q.in_features, len(keep), bias=False)
        attn.q_proj.weight.copy_(q.weight[keep])
        attn.o_proj = torch.nn.Linear(len(keep), o.out_features, bias=False)
        attn.o_proj.weight.copy_(o.weight[:, keep])
        attn.num_key_value_groups = 2
        mlp = model.model.layers[2].mlp
        rows = torch.arange(200)
        for name in ("gate_proj", "up_proj"):
            old = getattr(mlp, name)
            new = torch.nn.Linear(old.in_features, 200, bias=False)
            new.weight.copy_(old.weight[rows])
            setattr(mlp, name, new)
        down = torch.nn.Linear(200, mlp.down_proj.out_features, bias=False)
        down.weight.copy_(mlp.down_proj.weight[:, rows])
        mlp.down_proj, mlp.intermediate_size = down, 200
    return model, tok


@pytest.mark.slow  # the fast tier trains, merges and reloads a pruned model (test_pruned_nonuniform_...)
def test_loss_falls_adapter_reloads_and_merge_is_exact(llama_dir, tmp_path):
    from peft import PeftModel

    model, tok = load(llama_dir)
    events, progress = [], []
    spec = LoraSpec(steps=30, lr=1e-3, batch_size=8, micro_batch_size=4, cutoff_len=64,
                    train_on_inputs=True, eval_items=32, merge=False)
    peft_model, report = finetune_lora(model, tok, spec, tmp_path, on_loss=events.append,
                                       progress=lambda msg, frac: progress.append(frac))
    assert isinstance(peft_model, PeftModel) and report["merged"] is False
    train = [e["loss"] for e in events if "loss" in e]
    assert len(train) == 30 and [e["step"] for e in events if "loss" in e] == list(range(1, 31))
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.2, train
    assert report["eval_loss_after"] < report["eval_loss_before"] - 0.2, report
    assert [e["step"] for e in events if "eval_loss" in e] == [0, 30]
    assert progress[-1] == 1.0 and report["tokens"] > 0 and report["dtype"] == "float32"
    assert json.loads(json.dumps(report))["steps"] == 30  # the report is an event payload
    assert report["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj",
                                        "gate_proj", "up_proj", "down_proj"]
    # r * (in + out) per projection, 6 layers: q 192+192, k/v 192+64, o 192+192, gate/up/down 192+384
    assert report["trainable_params"] == 6 * 8 * (2 * 384 + 2 * 256 + 3 * 576)

    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert report["adapter_path"] == str(adapter)
    trained = logits(peft_model)
    fresh, _ = load(llama_dir)
    assert not torch.allclose(logits(fresh), trained, atol=1e-3)  # the adapter changed something
    reloaded = PeftModel.from_pretrained(fresh, str(adapter))
    torch.testing.assert_close(logits(reloaded), trained, atol=1e-5, rtol=0)
    merged = peft_model.merge_and_unload()
    torch.testing.assert_close(logits(merged), trained, atol=1e-4, rtol=0)


def test_pruned_nonuniform_model_trains_merges_and_reloads(llama_dir, tmp_path):
    from peft import PeftModel

    model, tok = pruned_llama(llama_dir)
    spec = LoraSpec(steps=6, lr=1e-3, batch_size=4, cutoff_len=64, train_on_inputs=True,
                    eval_items=8, merge=True)
    merged, report = finetune_lora(model, tok, spec, tmp_path)
    assert not isinstance(merged, PeftModel) and report["merged"] is True
    assert report["last_loss"] < report["first_loss"]
    assert merged.model.layers[2].mlp.down_proj.weight.shape == (192, 200)
    assert merged.model.layers[1].self_attn.q_proj.weight.shape == (128, 192)
    fresh, _ = pruned_llama(llama_dir)
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    assert reloaded.base_model.model.model.layers[2].mlp.down_proj.lora_A["default"].in_features == 200
    torch.testing.assert_close(logits(merged), logits(reloaded), atol=1e-4, rtol=0)


def test_phi3_fused_projections_masked_prompt(phi3_dir, tmp_path):
    data = tmp_path / "tiny.jsonl"
    rows = [{"instruction": f"Say {w}.", "input": "", "output": f"{w} {w} {w}."}
            for w in ("yes", "no", "maybe", "hello", "stop", "go", "red", "blue", "one", "two")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tok = load(phi3_dir)
    spec = LoraSpec(steps=3, batch_size=2, cutoff_len=160, eval_items=2, data=str(data), merge=False)
    peft_model, report = finetune_lora(model, tok, spec, tmp_path / "out")
    assert set(report["target_modules"]) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert report["prompt_masked"] is True and report["examples_train"] == 8
    cfg = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == set(report["target_modules"]) and cfg["r"] == 8
    assert cfg["lora_alpha"] == 16 and cfg["lora_dropout"] == 0.05
    layer = peft_model.base_model.model.model.layers[0]
    assert hasattr(layer.self_attn.qkv_proj, "lora_A") and hasattr(layer.mlp.gate_up_proj, "lora_A")


def test_prompt_masking_and_cutoff(llama_dir):
    _, tok = load(llama_dir)
    rec = {"instruction": "Add.", "input": "2 and 2", "output": "4"}
    prompt = tok(alpaca_prompt("Add.", "2 and 2"))["input_ids"]
    answer = tok("4", add_special_tokens=False)["input_ids"]
    (ex,), dropped = tokenize_records([rec], tok, cutoff_len=512)
    assert dropped == 0 and ex["input_ids"] == prompt + answer + [tok.eos_token_id]
    assert ex["labels"] == [-100] * len(prompt) + answer + [tok.eos_token_id]
    (ex,), _ = tokenize_records([rec], tok, cutoff_len=512, train_on_inputs=True)
    assert ex["labels"] == ex["input_ids"]
    examples, dropped = tokenize_records([rec], tok, cutoff_len=len(prompt))  # answer cut entirely
    assert examples == [] and dropped == 1
    assert "### Input:\n2 and 2" in alpaca_prompt("Add.", "2 and 2")
    assert "### Input" not in alpaca_prompt("Add.", "")


def test_text_file_and_default_data(llama_dir, tmp_path):
    _, tok = load(llama_dir)
    txt = tmp_path / "plain.txt"
    txt.write_text("To be, or not to be, that is the question. " * 40)
    examples, info = load_training_data(str(txt), tok, cutoff_len=32)
    assert info["kind"] == "file" and len(examples) >= 3
    assert all(len(e["input_ids"]) <= 32 and e["labels"] == e["input_ids"] for e in examples)
    examples, info = load_training_data(None, tok, cutoff_len=256)
    assert info["records"] == 2000 and info["source"].endswith("instructions.jsonl")
    assert LoraSpec(epochs=1.0, batch_size=8).total_steps(100) == 13
    assert LoraSpec().total_steps(100) == 200


@pytest.mark.parametrize("kwargs, message", [
    (dict(r=0), "--lora-r: LoRA rank must be 1 or more"),  # the run schema's rules, naming the setting
    (dict(steps=0), "--lora-steps: LoRA steps must be 1 or more"),
    (dict(lr=0.0), "--lora-lr: learning rate must be positive"),
    (dict(steps=10, epochs=1.0), "--lora-steps: give LoRA steps or epochs, not both"),
    (dict(epochs=-1.0), "--lora-epochs: LoRA epochs must be positive"),
    (dict(batch_size=8, micro_batch_size=3), "not a multiple of micro_batch_size"),
    (dict(dropout=1.0), "--lora-dropout: LoRA dropout must be 0 or more and below 1"),
    (dict(data="/nonexistent/dir/data.jsonl"), "data.jsonl not found"),
])
def test_bad_spec_values(kwargs, message):
    with pytest.raises(GreentuiError, match=message):
        LoraSpec(**kwargs).validate()


def test_bad_data_files_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "c", oops\n')
    with pytest.raises(GreentuiError, match=r"bad\.jsonl, line 2: invalid JSON"):
        LoraSpec(data=str(bad)).validate()
    missing = tmp_path / "missing_field.jsonl"
    missing.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c"}\n')
    with pytest.raises(GreentuiError, match=r"missing_field\.jsonl, line 3: field 'output'"):
        LoraSpec(data=str(missing)).validate()
    other = tmp_path / "other.json"
    other.write_text('[{"question": "q"}]')
    with pytest.raises(GreentuiError, match=r"other\.json, item 0: needs 'instruction'"):
        LoraSpec(data=str(other)).validate()


def test_hub_dataset_offline_names_the_id(monkeypatch, llama_dir):
    monkeypatch.setattr(workspace, "hub_reachable", lambda: False)
    with pytest.raises(GreentuiError, match="'yahma/alpaca-cleaned' is on the Hugging Face hub"):
        LoraSpec(data="yahma/alpaca-cleaned").validate()
    _, tok = load(llama_dir)
    with pytest.raises(GreentuiError, match="'yahma/alpaca-cleaned'.*not reachable"):
        load_training_data("yahma/alpaca-cleaned", tok)


def test_unknown_target_modules(llama_dir):
    model, _ = load(llama_dir)
    with pytest.raises(GreentuiError, match=r"\['qkv_proj'\] are not in the model"):
        target_modules_for(model, ["q_proj", "qkv_proj"])
    with pytest.raises(GreentuiError, match="target_modules is empty"):
        LoraSpec(target_modules=[]).validate()


def test_save_merged_reloads_with_transformers(llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = load(llama_dir)
    spec = LoraSpec(steps=2, lr=1e-3, batch_size=2, cutoff_len=32, train_on_inputs=True, eval_items=0,
                    save_merged=True)
    merged, report = finetune_lora(model, tok, spec, tmp_path)
    assert report["eval_loss_before"] is None and report["merged_path"] == str(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in reloaded.named_parameters())
    torch.testing.assert_close(logits(reloaded), logits(merged), atol=1e-5, rtol=0)
    if not torch.cuda.is_available():
        with pytest.raises(GreentuiError, match="CUDA is not available"):
            finetune_lora(model, tok, spec, tmp_path / "again", device="cuda")


def _adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_seed_fixes_data_order_init_and_dropout(llama_dir, tmp_path):
    """The run's seed reaches LoRA: same seed, same adapter bit for bit; another seed, another one."""
    def train(seed: int, name: str):
        model, tok = load(llama_dir)
        spec = LoraSpec(steps=2, lr=1e-3, batch_size=2, cutoff_len=32, eval_items=0, seed=seed,
                        dropout=0.3, train_on_inputs=True, merge=False)
        events = []
        _, report = finetune_lora(model, tok, spec, tmp_path / name, on_loss=events.append)
        return _adapter_weights(tmp_path / name), [e["loss"] for e in events if "loss" in e], report

    a, loss_a, report = train(5, "a")
    b, loss_b, _ = train(5, "b")
    c, loss_c, _ = train(6, "c")
    assert report["spec"]["seed"] == 5  # recorded in the run's lora_report.json
    assert loss_a == loss_b and all(torch.equal(a[k], b[k]) for k in a)
    assert loss_a != loss_c and any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow  # fast-tier budget; LoRA training itself: test_pruned_nonuniform_model_trains_merges_and_reloads (fast)
def test_schedule_is_transformers_linear_warmup(llama_dir, tmp_path):
    """Warmup from 0 over 2 steps, then linear decay towards 0: step k trains at lr * lambda(k - 1)."""
    model, tok = load(llama_dir)
    spec = LoraSpec(steps=6, lr=1e-3, batch_size=2, cutoff_len=32, eval_items=0, warmup_steps=2,
                    train_on_inputs=True, merge=False)
    events = []
    _, report = finetune_lora(model, tok, spec, tmp_path, on_loss=events.append)
    lrs = [e["lr"] for e in events if "lr" in e]
    assert lrs == pytest.approx([0.0, 0.5e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert report["warmup_steps"] == 2
    spec = LoraSpec(steps=10, lr=1e-3, batch_size=2, cutoff_len=32, eval_items=0, train_on_inputs=True,
                    merge=False)
    events = []
    _, report = finetune_lora(load(llama_dir)[0], tok, spec, tmp_path / "default", on_loss=events.append)
    lrs = [e["lr"] for e in events if "lr" in e]
    assert report["warmup_steps"] == 1  # default: a tenth of the steps (at most 100)
    assert lrs[:2] == pytest.approx([0.0, 1e-3]) and lrs[-1] == pytest.approx(1e-3 / 9)
