"""Write a pruned model to a folder that stock transformers, ``pipeline`` and the lm-eval CLI load.

Steps, each with progress: everything the inputs can tell is checked first (``decide``: the source's
config.json and widths manifest, the format, the dtype, the output folder, the adapter) -- nothing is
loaded before that. Then the model is loaded with greentui's own loader, the LoRA adapter merged with
peft when asked, cast to the asked dtype, and its logits on a fixed text kept as the reference. The
format's transformation follows (zero padding for ``padded`` and ``decilm``), the folder is written
beside the target as ``.NAME.partial`` (safetensors only, config, tokenizer, generation config, the
format's modelling module, ``greentui_export.json``, the model card) and checked in a fresh interpreter
that imports only transformers (``check_load.py``); only then is it renamed to the target. A failed
export leaves no half-written folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backend.errors import GreentuiError
from backend.schema.catalog import ARCHITECTURES
from backend.stages.model_export import decilm
from backend.stages.model_export.formats import (
    CUSTOM_CODE,
    EXPORT_DTYPES,
    Width,
    choose_format,
    pad_target,
)

Progress = Callable[[str, float], None]

#: The text whose logits the exported model must reproduce (short: the check loads the model twice).
FIXED_TEXT = "Does pruning this language model save energy, and what accuracy does it cost?"
REPORT_FILE = "greentui_export.json"
REMOTE_MODULE = "modeling_greentui_pruned"
DECILM_MODULE = "modeling_decilm"
ADAPTER_DIR = "adapter"
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_HERE = Path(__file__).resolve().parent


@dataclass
class ExportRequest:
    """What to export where. ``facts`` (the source run, method, ratio, count rule, unpruned size)
    go into ``greentui_export.json``; ``card`` turns the final report into the folder's README.md."""

    source: Path
    out: Path
    format: str = "auto"
    dtype: str | None = None            # bf16 | fp16 | fp32; None: the source's own
    adapter: Path | None = None         # merge this peft LoRA adapter into the weights
    copy_adapter: Path | None = None    # copy this adapter (not merged) into out/adapter
    verify: bool = True
    check_pipeline: bool = False        # the check also runs pipeline("text-generation") on the folder
    facts: dict[str, Any] = field(default_factory=dict)
    card: Callable[[dict[str, Any]], str] | None = None


@dataclass(frozen=True)
class Decision:
    """What ``decide`` found in the inputs, before anything is loaded."""

    format: str
    reason: str
    model_type: str
    config: dict[str, Any]
    widths: list[Width]
    original: Width

    @property
    def trust_remote_code(self) -> bool:
        return self.format in CUSTOM_CODE


def read_widths(source: Path) -> tuple[dict[str, Any], list[Width], Width]:
    """(config.json, the widths of every layer, the global width config.json states) of a model folder."""
    from backend.stages.model_io import MANIFEST
    from backend.stages.pruning.plan import spec_from_config

    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8")) if (source / MANIFEST).exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise GreentuiError(f"cannot read the model in {source}: {exc}") from None
    if not isinstance(config, dict):
        raise GreentuiError(f"{source / 'config.json'} is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise GreentuiError(f"{source} holds a {model_type!r} model; export-model writes the architectures greentui "
                            f"prunes ({', '.join(ARCHITECTURES)})")
    spec = spec_from_config(config, manifest)
    widths = [{"heads": s.heads, "kv_heads": s.kv_heads, "head_dim": s.head_dim, "intermediate": s.intermediate}
              for s in spec.layers]
    base = spec_from_config(config, None).layers[0]
    original = {"heads": base.heads, "kv_heads": base.kv_heads, "head_dim": base.head_dim,
                "intermediate": base.intermediate}
    return config, widths, original


def _check_out(out: Path, source: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GreentuiError(f"--out: {out} exists and is not empty; choose another directory or remove it")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise GreentuiError(f"--out: {out} is inside the source model {source}; choose a folder outside it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise GreentuiError(f"--out: cannot write into {parent} (permission denied)")


def _check_adapter(adapter: Path) -> None:
    if not (adapter / "adapter_config.json").is_file():
        raise GreentuiError(f"no LoRA adapter in {adapter} (adapter_config.json is missing)")
    if not (adapter / "adapter_model.safetensors").is_file():
        raise GreentuiError(f"the LoRA adapter in {adapter} has no adapter_model.safetensors (only safetensors "
                            "weights are read)")


def decide(req: ExportRequest) -> Decision:
    """Every check the inputs allow, before loading anything: raises a one-line GreentuiError."""
    source = Path(req.source).expanduser()
    if not (source / "config.json").is_file():
        raise GreentuiError(f"{source} is not a model directory (no config.json)")
    if not list(source.glob("*.safetensors")):
        found = [p.name for p in source.glob("*.bin")] + [p.name for p in source.glob("*.pt")]
        raise GreentuiError(f"{source} has no safetensors weights" + (f" (only {', '.join(found)}, which greentui "
                            "never unpickles)" if found else ""))
    if req.dtype is not None and req.dtype not in EXPORT_DTYPES:
        raise GreentuiError(f"--dtype: unknown dtype {req.dtype!r}; choose one of {', '.join(EXPORT_DTYPES)}")
    _check_out(Path(req.out).expanduser(), source)
    for adapter in (req.adapter, req.copy_adapter):
        if adapter is not None:
            _check_adapter(Path(adapter))
    config, widths, original = read_widths(source)
    stated = config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size")
    if stated is None:  # read_widths' planner needs it too: a config without it is refused there first
        raise GreentuiError(f"{source / 'config.json'} states no hidden_size")
    hidden = int(stated)
    fmt, reason = choose_format(req.format, config["model_type"], hidden, widths, config)
    if fmt == "padded":
        pad_target(config["model_type"], hidden, widths, original)  # raises when nothing holds every layer
    return Decision(fmt, reason, config["model_type"], config, widths, original)


# ------------------------------------------------------------------------------------ the export
def export_model(req: ExportRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Export ``req.source`` to ``req.out``; return the report (also written as greentui_export.json)."""
    say = progress or (lambda msg, frac: None)
    t0 = time.perf_counter()
    say("checking the source, the format and the output folder", 0.0)
    decision = decide(req)
    out = Path(req.out).expanduser().resolve()
    say("importing PyTorch and transformers", 0.02)
    import torch

    from backend.stages.model_io import load_model
    from backend.stages.pruning import flops

    say(f"loading {req.source} with greentui's loader", 0.05)
    model, tokenizer = load_model(req.source)
    lora: dict[str, Any] = {"merged": False}
    if req.adapter is not None:
        say("merging the LoRA adapter (peft)", 0.25)
        from backend.stages.finetune import merge_adapter

        model = merge_adapter(model, Path(req.adapter))
        lora = {"merged": True, "adapter": str(req.adapter)}
    elif req.copy_adapter is not None:
        lora = {"merged": False, "adapter": f"{ADAPTER_DIR}/ (peft; apply with PeftModel.from_pretrained)"}
    dtype = getattr(torch, TORCH_DTYPES[req.dtype]) if req.dtype else next(model.parameters()).dtype
    _cast_parameters(model, dtype)
    _load_generation_config(model, Path(req.source))

    say("computing the reference logits", 0.35)
    ids = tokenizer(FIXED_TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits.detach().clone()
    context = 64
    pruned = {"params": flops.count_params(model), "flops_per_token": flops.flops_per_token(model, context)}

    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        files = _write(model, tokenizer, decision, tmp, lambda m, f: say(m, 0.4 + 0.3 * f))
        if req.copy_adapter is not None:
            shutil.copytree(req.copy_adapter, tmp / ADAPTER_DIR)
        from backend.stages.model_io import layer_widths

        exported = {"params": flops.count_params(model), "flops_per_token": flops.flops_per_token(model, context)}
        report = _report(req, decision, out, dtype, lora, pruned, exported, context, layer_widths(model), files)
        report["per_layer_config"] = "per_layer_config" in json.loads((tmp / "config.json").read_text())
        report["seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
        if req.verify:
            say("loading the folder in a fresh interpreter (transformers only)", 0.75)
            report["verification"] = verify(tmp, decision, FIXED_TEXT, ids, reference, pipeline=req.check_pipeline)
            _judge(report["verification"], decision.format, dtype)
        else:
            report["verification"] = None
        if req.card is not None:
            (tmp / "README.md").write_text(req.card(report), encoding="utf-8")
        report["seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
        if out.exists():
            out.rmdir()  # decide() allowed it only when empty
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say("done", 1.0)
    return report


def _cast_parameters(model, dtype) -> None:
    """Weights to ``dtype``; buffers keep theirs. ``model.to(dtype)`` would also round the rotary
    embedding's ``inv_freq``, which transformers keeps in float32 when it loads a bf16/fp16 model, and
    the exported model would then not compute what greentui's reference computed."""
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    model.config.dtype = dtype


def _load_generation_config(model, source: Path) -> None:
    """The source's generation config (greentui's loader rebuilds pruned models from config.json alone)."""
    if not (source / "generation_config.json").exists():
        return
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig.from_pretrained(str(source))


def _write(model, tokenizer, d: Decision, tmp: Path, say: Progress) -> list[str]:
    """Transform ``model`` for the format (in place) and write the folder."""
    from backend.stages.model_export.padding import pad_model
    from backend.stages.model_io import set_uniform_config

    hidden = int(model.config.hidden_size)
    if d.format == "padded":
        target = pad_target(d.model_type, hidden, d.widths, d.original)
        pad_model(model, [target] * len(d.widths), lambda m, f: say(m, 0.5 * f))
        set_uniform_config(model.config, target)
    elif d.format == "plain":
        set_uniform_config(model.config, d.widths[0])
    elif d.format == "decilm":
        targets, blocks = decilm.layout(d.config, d.widths)
        pad_model(model, targets, lambda m, f: say(m, 0.5 * f))
    say("writing safetensors", 0.6)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    config_file = tmp / "config.json"
    if d.format in ("plain", "padded"):  # the stock config states every width, head_dim included
        config = json.loads(config_file.read_text())
        config.setdefault("head_dim", d.widths[0]["head_dim"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if d.format == "remote-code":
        config = _remote_code_config(json.loads(config_file.read_text()), d.widths, d.model_type)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        _write_module("remote_modeling.py", tmp / f"{REMOTE_MODULE}.py", d.model_type)
    elif d.format == "decilm":
        config = decilm.decilm_config(json.loads(config_file.read_text()), blocks, DECILM_MODULE)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        _write_module("remote_modeling.py", tmp / f"{REMOTE_MODULE}.py", "llama")
        _write_module("decilm_modeling.py", tmp / f"{DECILM_MODULE}.py", None)
    unsafe = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if unsafe:
        raise GreentuiError(f"refusing to export pickled files ({', '.join(unsafe)}); weights are safetensors only")
    return sorted(p.name for p in tmp.iterdir())


def _write_module(template: str, dest: Path, arch: str | None) -> None:
    text = (_HERE / template).read_text(encoding="utf-8")
    if arch is not None:
        marker = 'ARCH = "llama"'
        if text.count(marker) != 1:
            raise RuntimeError(f"{template} must set ARCH exactly once")
        text = text.replace(marker, f'ARCH = "{arch}"')
    dest.write_text(text, encoding="utf-8")


WIDTH_KEYS = {"heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
              "intermediate": "intermediate_size"}


def knows_per_layer_config() -> bool:
    """Whether the installed transformers applies ``per_layer_config`` (heterogeneous configs)."""
    from transformers import PreTrainedConfig

    return isinstance(getattr(PreTrainedConfig, "per_layer_config", None), property)


def _remote_code_config(config: dict[str, Any], widths: list[Width], model_type: str) -> dict[str, Any]:
    """config.json for ``remote-code``: the unpruned global widths, every layer's widths
    (``layer_widths``; also as transformers' sparse ``per_layer_config`` where it knows it) and the
    ``auto_map`` to the folder's module."""
    config = dict(config)
    config["head_dim"] = widths[0]["head_dim"]
    layers = [{WIDTH_KEYS[k]: int(w[k]) for k in WIDTH_KEYS} for w in widths]
    config["layer_widths"] = layers
    if knows_per_layer_config():
        overrides = {}
        for i, layer in enumerate(layers):
            diff = {k: v for k, v in layer.items() if config.get(k) != v}
            if diff:
                overrides[str(i)] = diff
        config["per_layer_config"] = overrides
    config["architectures"] = ["PrunedForCausalLM"]
    config["auto_map"] = {"AutoConfig": f"{REMOTE_MODULE}.PrunedConfig",
                          "AutoModelForCausalLM": f"{REMOTE_MODULE}.PrunedForCausalLM"}
    config["greentui_note"] = (f"per-layer widths of a structurally pruned {model_type} model: load with "
                               "trust_remote_code=True (the folder's modeling_greentui_pruned.py)")
    return config


def _report(req: ExportRequest, d: Decision, out: Path, dtype, lora: dict, pruned: dict, exported: dict,
            context: int, layers: list[Width], files: list[str]) -> dict[str, Any]:
    import transformers

    from backend import __version__

    padding = None
    if d.format in ("padded", "decilm"):
        padding = {"params_added": exported["params"] - pruned["params"],
                   "params_ratio": round(exported["params"] / pruned["params"], 6),
                   "flops_ratio": round(exported["flops_per_token"] / pruned["flops_per_token"], 6),
                   "against": "the pruned model (greentui's loader)"}
    return {
        "format": d.format, "format_reason": d.reason, "trust_remote_code": d.trust_remote_code,
        "model_type": d.model_type, "out": str(out), "source_dir": str(Path(req.source).resolve()),
        **req.facts,
        "dtype": str(dtype).replace("torch.", ""), "lora": lora,
        "parameters": {"exported": exported["params"], "pruned": pruned["params"],
                       "unpruned": req.facts.get("params_unpruned")},
        "flops_per_token": {"exported": exported["flops_per_token"], "pruned": pruned["flops_per_token"],
                            "context_tokens": context},
        "padding": padding, "layers_pruned": d.widths, "layers": layers,
        "loads_with": _loads_with(d.format, out),
        "files": files, "greentui_version": __version__, "transformers_version": transformers.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _loads_with(fmt: str, out: Path) -> str:
    if fmt in CUSTOM_CODE:
        return f"AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)"
    return f"AutoModelForCausalLM.from_pretrained({str(out)!r})"


# ------------------------------------------------------------------------------------ the check
def verify(folder: Path, d: Decision, text: str, ids: list[int], reference, *, pipeline: bool = False,
           timeout: float = 900) -> dict[str, Any]:
    """Load ``folder`` in a fresh interpreter (``check_load.py``: transformers and torch only) and
    compare its logits on ``text`` with ``reference``; the child's findings as a dict."""
    import torch
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="greentui-check-") as work:
        ref_file = Path(work) / "reference.safetensors"
        save_file({"logits": reference.contiguous()}, str(ref_file))
        request = Path(work) / "request.json"
        request.write_text(json.dumps({"text": text, "ids": ids, "reference": str(ref_file),
                                       "trust_remote_code": d.trust_remote_code, "pipeline": pipeline}))
        # the check's copy of the folder's module goes to a scratch cache, not the user's ~/.cache
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), TRANSFORMERS_VERBOSITY="error",
                   TQDM_DISABLE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_MODULES_CACHE=str(Path(work) / "modules"))
        try:
            proc = subprocess.run([sys.executable, str(_HERE / "check_load.py"), str(folder), str(request)],
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=work,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise GreentuiError(f"checking the exported folder took longer than {timeout:.0f} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
        raise GreentuiError(f"checking the exported folder failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def tolerance(fmt: str, dtype) -> float:
    """Largest |logit difference| (relative to the largest |logit|) a format may show: none for plain
    and remote-code (the same modules on the same weights), round-off for the zero-padded formats."""
    import torch

    if fmt in ("plain", "remote-code"):
        return 0.0
    return 1e-5 if dtype == torch.float32 else 2e-2


def _judge(check: dict[str, Any], fmt: str, dtype) -> None:
    if check.get("error"):
        raise GreentuiError(f"the exported folder does not load with stock transformers: {check['error']}")
    if check.get("greentui_imported"):
        raise GreentuiError("the load check imported greentui; the folder is not self-contained")
    if not check.get("shape_match"):
        raise GreentuiError("the exported model's logits have another shape than greentui's")
    if check.get("pipeline_generated") is False:
        raise GreentuiError("pipeline('text-generation') did not generate from the exported folder")
    if not check.get("tokenizer_ids_match"):
        raise GreentuiError("the exported tokenizer encodes the check text differently from the source's")
    allowed = tolerance(fmt, dtype) * max(1.0, check["max_abs_logit"])
    check["tolerance"] = allowed
    if check["max_abs_diff"] > allowed:
        raise GreentuiError(f"the exported model's logits differ from greentui's loader by up to "
                            f"{check['max_abs_diff']:.3g} (allowed {allowed:.3g} for {fmt})")
