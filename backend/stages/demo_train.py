"""Train the demo model once: a ~1 M-parameter Llama that has learned English from the shipped text.

A randomly initialised model makes the demo pointless: pruning a model that knows nothing costs
nothing and LoRA recovers nothing, so every chart shows two lines at chance. This script trains the
demo model's weights from the package's own public-domain/CC0 text (Tiny Shakespeare plus the
shipped instruction set, written out in the Alpaca prompt the LoRA stage uses), so that on
WikiText-2 the vanilla model is clearly better than random, pruning visibly hurts it, and a short
LoRA recovers part of the loss. The result (safetensors, ~4.5 MB, with its tokenizer) is committed
under ``backend/data/demo-model``; the demo copies it, so a demo run never trains a base model.

Run once (about half an hour on 2 busy CPU cores)::

    python -m backend.stages.demo_train backend/data/demo-model --steps 240 --batch 12

Nothing here is imported by the UI (it needs torch).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from backend.stages.demo import MARKER_FILE, SPECIAL_TOKENS, Shape, build_config, training_text
from backend.stages.lora.data import DEFAULT_INSTRUCTIONS, alpaca_prompt

# a little wider than the random tiny Llama: still ~1 M parameters, still seconds to prune and evaluate
TRAINED_SHAPE = Shape(hidden=128, layers=6, heads=8, kv_heads=4, head_dim=16, intermediate=384, vocab=512)


def corpus() -> list[str]:
    """The training documents: Shakespeare in ~2 kB pieces and every instruction as an Alpaca prompt."""
    text = training_text().read_text(encoding="utf-8")
    docs = [text[i:i + 2000] for i in range(0, len(text), 2000)]
    for line in DEFAULT_INSTRUCTIONS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            docs.append(alpaca_prompt(rec["instruction"], rec.get("input") or "") + rec["output"])
    return docs


def build_tokenizer(docs: list[str], vocab_size: int):
    """Byte-level BPE over the training documents (never an unknown token on any benchmark text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL_TOKENS["bos"],
                                   eos_token=SPECIAL_TOKENS["eos"], pad_token=SPECIAL_TOKENS["pad"],
                                   unk_token=SPECIAL_TOKENS["unk"], model_max_length=2048)


def _save(model, tokenizer, out_dir: Path) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def train(out_dir: Path, steps: int = 1500, batch: int = 16, seq_len: int = 128, lr: float = 3e-3,
          seed: int = 0, checkpoint_every: int = 0) -> dict:
    """Train and save the demo model; return a summary (losses, seconds, parameters)."""
    import torch
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    docs = corpus()
    tokenizer = build_tokenizer(docs, TRAINED_SHAPE.vocab)
    stream: list[int] = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    data = torch.tensor(stream, dtype=torch.long)
    config = build_config("llama", TRAINED_SHAPE, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    rng = random.Random(seed)
    losses: list[float] = []
    model.train()
    for step in range(1, steps + 1):
        scale = step / warmup if step <= warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.02)
        starts = [rng.randrange(0, len(data) - seq_len - 1) for _ in range(batch)]
        x = torch.stack([data[s:s + seq_len] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == 1:
            print(f"step {step}/{steps} loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
        if checkpoint_every and step % checkpoint_every == 0 and step < steps:
            _save(model, tokenizer, out_dir.with_name(out_dir.name + f"-step{step}"))
    model.eval()
    _save(model, tokenizer, out_dir)
    summary = {"arch": "llama", "size": "demo-trained", "seed": seed, "steps": steps, "batch": batch,
               "seq_len": seq_len, "lr": lr, "tokens_in_corpus": len(stream),
               "params": sum(p.numel() for p in model.parameters()),
               "final_loss_mean50": sum(losses[-50:]) / len(losses[-50:]),
               "train_seconds": round(time.perf_counter() - t0, 1),
               "note": ("demo model: ~1 M parameters trained on the shipped text. WikiText-2 perplexity "
                        "shows what pruning costs and LoRA recovers; accuracy on the seven tasks stays "
                        "near chance at this size")}
    (out_dir / MARKER_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--checkpoint-every", type=int, default=0, help="also save OUT-stepN every N steps")
    args = ap.parse_args()
    print(json.dumps(train(args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                           checkpoint_every=args.checkpoint_every), indent=2))


if __name__ == "__main__":
    main()
