"""WikiText-2 perplexity, computed the way LLM-Pruner reports it.

LLM-Pruner (``LLMPruner/evaluator/ppl.py`` + ``datasets/ppl_dataset.py``) joins the test rows of
``wikitext-2-raw-v1`` with ``"\\n\\n"``, tokenizes the whole text once, cuts it into
**non-overlapping** windows of ``seq_len`` tokens (128 in its tables), and reports
``exp(mean token NLL)`` over every predicted token of every window. ``stride < seq_len`` gives the
sliding-window variant instead (each window re-reads ``seq_len - stride`` tokens of context and
scores only its last ``stride`` tokens), which is not comparable to LLM-Pruner's numbers.

Offline the text is ``backend/data/text/wikitext2_test.raw`` (one HF row per line; see its
SOURCES.md). ``max_tokens`` caps the tokens scored so that CPU runs stay quick: the first
``max_tokens`` tokens of the test text, the same for every variant of a model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.workspace import PACKAGE_DATA

DEFAULT_TEXT = PACKAGE_DATA / "text" / "wikitext2_test.raw"


def wikitext2_rows(path: str | Path | None = None) -> list[str]:
    """The test rows as the HF dataset holds them: text rows end in "\\n", blank rows are ""."""
    p = Path(path) if path is not None else DEFAULT_TEXT
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GreentuiError(f"cannot read the perplexity text {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise GreentuiError(f"{p} is not UTF-8 text ({exc.reason})") from exc
    return [line + "\n" if line.strip() else "" for line in lines]


def _token_ids(tokenizer, text: str, max_tokens: int | None) -> list[int]:
    """Token ids of ``text`` (no special tokens), only as much of it as ``max_tokens`` needs."""
    if max_tokens is None:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    chars = max(4096, max_tokens * 8)
    while True:
        ids = tokenizer(text[:chars], add_special_tokens=False, verbose=False)["input_ids"]
        # keep slack so the last kept token is never split by the prefix cut
        if len(ids) > max_tokens + 16 or chars >= len(text):
            return ids[:max_tokens] if len(ids) > max_tokens else ids
        chars *= 2


def perplexity(model, tokenizer, text_path: str | Path | None = None, max_tokens: int | None = 4096,
               seq_len: int = 128, stride: int | None = None, batch_size: int = 8,
               device: str | None = None) -> dict[str, Any]:
    """Perplexity of ``model`` on WikiText-2 test; returns {ppl, tokens, windows, seconds, ...}.

    ``tokens`` is the number of tokens scored (predicted), ``max_tokens`` caps the tokens read.
    """
    import torch

    if max_tokens is not None and max_tokens < 2:
        raise GreentuiError(f"--ppl-limit must be at least 2 tokens, got {max_tokens}")
    if seq_len < 2:
        raise GreentuiError(f"the perplexity window must be at least 2 tokens, got {seq_len}")
    stride = seq_len if stride is None else stride
    if not 1 <= stride <= seq_len:
        raise GreentuiError(f"stride must be between 1 and seq_len ({seq_len}), got {stride}")
    t0 = time.perf_counter()
    text = "\n\n".join(wikitext2_rows(text_path))
    ids = _token_ids(tokenizer, text, max_tokens)
    if len(ids) < 2:
        raise GreentuiError("the perplexity text is empty after tokenization")
    seq_len = min(seq_len, len(ids))

    # windows: (start, end, number of scored targets at the end of the window)
    windows: list[tuple[int, int, int]] = []
    if stride == seq_len:
        n = len(ids) // seq_len   # LLM-Pruner drops the ragged tail
        windows = [(i * seq_len, (i + 1) * seq_len, seq_len - 1) for i in range(n)]
    else:
        prev_end = 0
        for begin in range(0, len(ids), stride):
            end = min(begin + seq_len, len(ids))
            scored = end - prev_end if prev_end else end - begin - 1
            windows.append((begin, end, min(scored, end - begin - 1)))
            prev_end = end
            if end == len(ids):
                break

    dev = torch.device(device) if device else next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll_sum = 0.0
    scored_tokens = 0
    try:
        with torch.inference_mode():
            for b in range(0, len(windows), batch_size):
                group = windows[b:b + batch_size]
                width = max(e - s for s, e, _ in group)
                batch = torch.zeros((len(group), width), dtype=torch.long)
                mask = torch.zeros((len(group), width), dtype=torch.long)
                for row, (s, e, _) in enumerate(group):
                    batch[row, : e - s] = torch.tensor(ids[s:e])
                    mask[row, : e - s] = 1
                logits = model(input_ids=batch.to(dev), attention_mask=mask.to(dev)).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                targets = batch[:, 1:].to(dev)
                tok_nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                for row, (s, e, k) in enumerate(group):
                    length = e - s - 1
                    nll_sum += float(tok_nll[row, length - k:length].sum())
                    scored_tokens += k
    finally:
        if was_training:
            model.train()
    if scored_tokens == 0:
        raise GreentuiError(f"no token to score: raise --ppl-limit above the window ({seq_len})")
    mean_nll = nll_sum / scored_tokens
    return {
        "ppl": math.exp(mean_nll) if mean_nll < 700 else float("inf"),
        "mean_nll": mean_nll,
        "tokens": scored_tokens,
        "tokens_read": len(ids),
        "windows": len(windows),
        "seq_len": seq_len,
        "stride": stride,
        "seconds": time.perf_counter() - t0,
        "text": str(Path(text_path) if text_path is not None else DEFAULT_TEXT),
        "method": "LLM-Pruner (non-overlapping windows)" if stride == seq_len else "sliding window",
    }
