"""LoRA recovery after pruning (peft), the study's LLM-Pruner recipe in a plain AdamW loop.

Defaults follow the study: r=8, alpha=16, dropout 0.05 on every q/k/v/o/gate/up/down projection
present (or Phi-3's fused ``qkv_proj``/``gate_up_proj``), Alpaca prompts, cutoff 256 tokens, the
prompt masked out of the loss. Pruned models with different widths per layer are fine: peft wraps
each ``nn.Linear`` with whatever shape it has.

``finetune_lora`` mutates the model it is given (peft injects its layers in place), writes the
adapter in PEFT format to ``out_dir/adapter`` (reload with ``PeftModel.from_pretrained(base, dir)``
on a base of the same shapes) and returns the merged model, or the ``PeftModel`` when
``spec.merge`` is off. fp32 on CPU; bf16 autocast only on a CUDA device that supports it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from backend.errors import GreentuiError
from backend.stages.lora.data import RECORD_SUFFIXES, load_examples, read_records, resolve_source

KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj",
                 "gate_proj", "up_proj", "down_proj", "gate_up_proj")
DEFAULT_STEPS = 200


#: LoraSpec field -> the RunConfig setting it is: the one place the LoRA view's names are mapped.
RUN_FIELDS: dict[str, str] = {
    "r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "steps": "lora_steps", "epochs": "lora_epochs",
    "lr": "lora_lr", "batch_size": "lora_batch_size", "cutoff_len": "lora_cutoff_len", "data": "lora_data",
    "seed": "seed",
}


@dataclass
class LoraSpec:
    """The LoRA view of a run's config (``LoraSpec.of(cfg)``): every field that is a run setting is
    derived from ``RunConfig`` and checked by the run schema's rules alone; the others (target modules,
    micro-batches, held-out items, warmup, merging) are how this stage is driven, not run settings."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None   # None: every known projection present in the model
    steps: int | None = None                  # exactly one of steps/epochs; neither: DEFAULT_STEPS
    epochs: float | None = None
    lr: float = 3e-4
    batch_size: int = 8                       # examples per optimizer step
    micro_batch_size: int | None = None       # examples per forward (gradient accumulation); None: batch
    cutoff_len: int = 256
    eval_items: int = 100                     # held-out examples (capped at a fifth of the data); 0: none
    eval_every: int | None = None             # also evaluate every N steps (before/after always)
    warmup_steps: int | None = None           # None: min(100, steps // 10); then linear decay to 0
    weight_decay: float = 0.0
    train_on_inputs: bool = False             # False: prompt tokens masked out of the loss (LLM-Pruner)
    data: str | None = None                   # .jsonl/.json/.txt path or HF dataset id; None: shipped set
    seed: int = 0
    merge: bool = True
    save_merged: bool = False                 # also save_pretrained the merged model to out_dir/merged

    @classmethod
    def of(cls, run, **options) -> "LoraSpec":
        """The LoRA view of a run's config (``RunConfig``); ``options`` are the fields that are not run
        settings (``merge``, ``eval_items``…)."""
        return cls(**{name: getattr(run, setting) for name, setting in RUN_FIELDS.items()}, **options)

    def total_steps(self, n_train: int) -> int:
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * n_train / self.batch_size))
        return self.steps if self.steps is not None else DEFAULT_STEPS

    def micro(self) -> int:
        return self.micro_batch_size or self.batch_size

    def validate(self) -> "LoraSpec":
        """The run schema's rules for the run settings (``SettingError`` naming the setting), then the
        options that are not run settings, then the data source (local record files parsed once)."""
        from backend.schema.runconfig import RunConfig
        from backend.schema.settings import SettingError

        def bad(msg: str):
            raise GreentuiError(f"LoRA: {msg}")

        settings = {setting: getattr(self, name) for name, setting in RUN_FIELDS.items()}
        if self.steps is None and self.epochs is None:
            settings["lora_steps"] = DEFAULT_STEPS
        problems = RunConfig(model="(LoRA)", **settings).problems()
        for name in settings:  # in the view's order: the first refused setting is named
            if name in problems:
                raise SettingError(name, problems[name])
        if self.micro() <= 0:
            bad("micro_batch_size must be positive")
        if self.batch_size % self.micro():
            bad(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro()}")
        if self.eval_items < 0 or (self.eval_every is not None and self.eval_every <= 0):
            bad("eval_items must be >= 0 and eval_every positive")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            bad("warmup_steps must be >= 0")
        if self.target_modules is not None and not self.target_modules:
            bad("target_modules is empty; omit it to target every projection present")
        check_data(self.data)
        return self


def check_data(data: str | None) -> list[dict] | None:
    """The LoRA data source, checked without a model: a local record file parsed (each record's
    fields; returned), a hub dataset only when the hub is reachable. One-line ``GreentuiError`` naming
    the file."""
    kind, where = resolve_source(data)
    if kind == "file" and Path(where).suffix.lower() in RECORD_SUFFIXES:
        return read_records(Path(where))
    if kind == "hub":
        from backend.workspace import hub_reachable

        if not hub_reachable():
            raise GreentuiError(f"LoRA: dataset {where!r} is on the Hugging Face hub, which is not reachable; "
                                "pass a local .jsonl/.json/.txt file (omit the data option for the shipped "
                                "instruction set)")
    return None


def target_modules_for(model, requested: list[str] | None = None) -> list[str]:
    """Leaf names of the projections to adapt; requested ones must exist in the model."""
    import torch

    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)}
    if requested:
        missing = [t for t in requested if t not in present]
        if missing:
            raise GreentuiError(f"LoRA target modules {missing} are not in the model; it has "
                                f"{sorted(present - {'lm_head'})}")
        return list(requested)
    found = [t for t in KNOWN_TARGETS if t in present]
    if not found:
        raise GreentuiError(f"no known projection ({', '.join(KNOWN_TARGETS)}) in the model; pass "
                            "target_modules explicitly")
    return found


def load_training_data(spec_or_path: LoraSpec | str | Path | None, tokenizer, *, cutoff_len: int = 256,
                       train_on_inputs: bool = False) -> tuple[list[dict], dict]:
    """Tokenized ``{input_ids, labels}`` examples and a description (source, counts)."""
    if isinstance(spec_or_path, LoraSpec):
        return load_examples(spec_or_path.data, tokenizer, spec_or_path.cutoff_len,
                             spec_or_path.train_on_inputs)
    return load_examples(spec_or_path, tokenizer, cutoff_len, train_on_inputs)


def _collate(batch: list[dict], pad_id: int, device):
    import torch

    width = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def _loss_sum(model, batch, pad_id, device, autocast):
    """Summed next-token cross entropy over labelled tokens, the label count, the input tokens."""
    import torch

    ids, labels, mask = _collate(batch, pad_id, device)
    with autocast():
        logits = model(input_ids=ids, attention_mask=mask).logits
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum()), int(mask.sum())


def _evaluate(model, examples, micro, pad_id, device, autocast) -> float | None:
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), micro):
            loss, n, _ = _loss_sum(model, examples[i:i + micro], pad_id, device, autocast)
            total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def finetune_lora(model, tokenizer, spec: LoraSpec, out_dir: Path, *, device: str = "cpu",
                  progress: Callable[[str, float], None] | None = None,
                  on_loss: Callable[[dict], None] | None = None):
    """Train a LoRA adapter on ``spec.data``; save it; return (model, report). See module docstring."""
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    spec.validate()
    t0 = time.perf_counter()
    say = progress or (lambda msg, frac: None)
    emit = on_loss or (lambda event: None)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GreentuiError(f"device {device!r} asked for, but CUDA is not available")
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    if dev.type == "cpu" and next(model.parameters()).dtype != torch.float32:
        model = model.float()   # half-precision training on CPU is slow and lossy
    if len(set((getattr(model, "hf_device_map", None) or {}).values())) <= 1:
        model.to(dev)  # a model spread over several GPUs (--gpus N) stays where accelerate put it
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16
                else contextlib.nullcontext)

    say("LoRA: tokenizing data", 0.0)
    examples, data_info = load_training_data(spec, tokenizer)
    gen = torch.Generator().manual_seed(spec.seed)
    order = torch.randperm(len(examples), generator=gen).tolist()
    # Held-out loss costs two forward passes over the eval set: keep it at most ~half the training
    # examples, so a 10-step demo does not spend most of its time evaluating.
    planned = spec.steps * spec.batch_size if spec.steps else len(examples)
    n_eval = min(spec.eval_items, len(examples) // 5, max(8, planned // 2))
    eval_set = [examples[i] for i in order[:n_eval]]
    train_set = [examples[i] for i in order[n_eval:]]
    steps = spec.total_steps(len(train_set))
    warmup = spec.warmup_steps if spec.warmup_steps is not None else min(100, steps // 10)
    micro = spec.micro()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    targets = target_modules_for(model, spec.target_modules)
    torch.manual_seed(spec.seed)
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in peft_model.parameters())
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    # The study's recipe (LLM-Pruner through the HF Trainer): linear warmup from 0, then linear decay
    # to 0, stepped once per optimizer step, so step k (1-based) trains at lr * lambda(k - 1).
    schedule = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=steps)

    eval_before = _evaluate(peft_model, eval_set, micro, pad_id, dev, autocast)
    if eval_before is not None:
        emit({"step": 0, "eval_loss": eval_before})
    peft_model.train()
    losses: list[float] = []
    tokens = 0
    cursor, epoch_order = 0, torch.randperm(len(train_set), generator=gen).tolist()
    t_train = time.perf_counter()
    for step in range(1, steps + 1):
        batch: list[dict] = []
        while len(batch) < spec.batch_size:
            if cursor == len(epoch_order):
                cursor, epoch_order = 0, torch.randperm(len(train_set), generator=gen).tolist()
            batch.append(train_set[epoch_order[cursor]])
            cursor += 1
        n_labels = sum(sum(1 for x in e["labels"][1:] if x != -100) for e in batch)
        lr = schedule.get_last_lr()[0]
        step_loss = 0.0
        for i in range(0, len(batch), micro):
            loss, _, n_tok = _loss_sum(peft_model, batch[i:i + micro], pad_id, dev, autocast)
            (loss / n_labels).backward()
            step_loss += loss.item() / n_labels
            tokens += n_tok
        if not math.isfinite(step_loss):
            raise GreentuiError(f"LoRA loss became {step_loss} at step {step}; lower the learning rate")
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        emit({"step": step, "loss": step_loss, "lr": lr, "tokens": tokens})
        say(f"LoRA step {step}/{steps} loss {step_loss:.3f}", step / steps)
        if spec.eval_every and step % spec.eval_every == 0 and step != steps and eval_set:
            emit({"step": step, "eval_loss": _evaluate(peft_model, eval_set, micro, pad_id, dev, autocast)})
    train_seconds = time.perf_counter() - t_train
    peft_model.eval()
    eval_after = _evaluate(peft_model, eval_set, micro, pad_id, dev, autocast)
    if eval_after is not None:
        emit({"step": steps, "eval_loss": eval_after})

    out_dir = Path(out_dir)
    adapter_dir = out_dir / "adapter"
    try:
        adapter_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)
    except OSError as exc:
        raise GreentuiError(f"cannot write the LoRA adapter to {adapter_dir}: {exc.strerror or exc}") from exc
    result: torch.nn.Module = peft_model  # the peft wrapper, or the plain model merged out of it
    merged_dir = None
    if spec.merge:
        result = peft_model.merge_and_unload()
        result.eval()
        if spec.save_merged:
            merged_dir = out_dir / "merged"
            # peft annotates merge_and_unload as returning nn.Module; it returns the wrapped transformers model
            result.save_pretrained(str(merged_dir), safe_serialization=True)  # type: ignore[operator]
            tokenizer.save_pretrained(str(merged_dir))
    say("LoRA: done", 1.0)
    k = min(5, len(losses))
    report = {
        "steps": steps, "examples_train": len(train_set), "examples_eval": len(eval_set),
        "data": data_info, "tokens": tokens, "seconds": round(time.perf_counter() - t0, 3),
        "train_seconds": round(train_seconds, 3),
        "first_loss": losses[0], "last_loss": losses[-1],
        "first_loss_mean5": sum(losses[:k]) / k, "last_loss_mean5": sum(losses[-k:]) / k,
        "eval_loss_before": eval_before, "eval_loss_after": eval_after,
        "trainable_params": trainable, "total_params": total_params, "target_modules": targets,
        "dtype": "bf16-autocast" if bf16 else str(next(peft_model.parameters()).dtype).replace("torch.", ""),
        "device": str(dev), "warmup_steps": warmup, "prompt_masked": not spec.train_on_inputs,
        "adapter_path": str(adapter_dir), "merged": spec.merge,
        "merged_path": str(merged_dir) if merged_dir else None, "spec": asdict(spec),
    }
    return result, report


def merge_adapter(model, adapter_dir: Path):
    """``model`` with the peft LoRA adapter in ``adapter_dir`` merged into its weights (peft's
    ``merge_and_unload``): what a run evaluated, rebuilt from its saved pruned model and adapter."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, OSError) as exc:
        raise GreentuiError(f"the LoRA adapter in {adapter_dir} does not fit this model: "
                            f"{str(exc).strip().splitlines()[-1][:300]}") from None
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged
