"""Calibration text, token batches, accumulated gradients and per-layer hidden states.

Text comes from a local file, an HF dataset id (online only; ``name:config`` picks a config), or
the Tiny Shakespeare text shipped with the package. Samples are windows of ``seq_len`` tokens at
seeded random offsets, so the same seed gives the same calibration set.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from backend.errors import GreentuiError
from backend.workspace import PACKAGE_DATA

if TYPE_CHECKING:  # for annotations only: torch is imported inside the functions that run it
    import torch

SHIPPED_TEXT = PACKAGE_DATA / "text" / "tinyshakespeare.txt"
MAX_CALIB_CHARS = 64 * 2**20


def calibration_text(calib_file=None, calib_dataset=None, min_chars: int = 200_000) -> tuple[str, str]:
    """Return (text, source description)."""
    if calib_file:
        p = Path(calib_file).expanduser()
        try:
            if not p.is_file():  # /dev/zero or a FIFO would be read forever
                raise GreentuiError(f"calibration file {p} is not a regular file")
            with p.open(encoding="utf-8", errors="replace") as fh:
                text = fh.read(MAX_CALIB_CHARS)  # far more than any calibration set needs
        except OSError as exc:
            raise GreentuiError(f"cannot read calibration file {p}: {exc.strerror or exc}") from exc
        if not text.strip():
            raise GreentuiError(f"calibration file {p} is empty")
        return text, f"file:{p}"
    if calib_dataset:  # online path; not reachable on offline machines
        try:
            from datasets import load_dataset

            name, _, subset = calib_dataset.partition(":")
            ds = load_dataset(name, subset or None, split="train")
        except Exception as exc:  # noqa: BLE001 - any hub/network failure is a user-facing problem
            raise GreentuiError(f"cannot load calibration dataset {calib_dataset!r}: {exc}; use "
                                "--calib-file for offline calibration") from exc
        column = "text" if "text" in ds.column_names else ds.column_names[0]
        parts, size = [], 0
        for row in ds:
            parts.append(str(row[column]))
            size += len(parts[-1])
            if size >= min_chars:
                break
        return "\n".join(parts), f"dataset:{calib_dataset}"
    return SHIPPED_TEXT.read_text(encoding="utf-8"), f"shipped:{SHIPPED_TEXT.name}"


def calibration_batches(tokenizer, text: str, samples: int, seq_len: int, seed: int):
    """A ``[samples, seq_len]`` LongTensor of token windows."""
    import torch

    budget = max(200_000, samples * seq_len * 16)
    ids = tokenizer(text[:budget], add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < seq_len + 1:
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < seq_len:
        raise GreentuiError(f"calibration text has {len(ids)} tokens, fewer than --calib-seq-len {seq_len}")
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - seq_len + 1) for _ in range(samples)]
    return torch.tensor([ids[s:s + seq_len] for s in starts], dtype=torch.long)


def scored_parameters(layers) -> list[torch.nn.Parameter]:
    """The parameters Taylor importance reads gradients of: every weight and bias of the attention
    and MLP projections (``nn.Linear``) of the layers that will be pruned. Nothing else needs one."""
    import torch

    params: list[torch.nn.Parameter] = []
    for layer in layers:
        for part in (layer.self_attn, layer.mlp):
            for module in part.modules():
                if isinstance(module, torch.nn.Linear):
                    params.extend(p for p in module.parameters(recurse=False))
    return params


def accumulate_gradients(model, batches, device, progress: Callable[[float], None] | None = None,
                         params: list | None = None) -> float:
    """Sum LM-loss gradients over ``batches`` (one sample at a time); returns the mean loss.

    With ``params`` only those parameters get a ``.grad`` (every other one is frozen for the
    duration and restored after): a full set of gradients is as big as the model, and Taylor scoring
    reads only the pruned layers' projections. Their gradient values are the same either way
    (backward still flows through the frozen layers above them; below the first scored layer it
    stops, which also saves the activations kept there).
    """
    model.zero_grad(set_to_none=True)
    model.train(False)
    frozen: list = []
    if params is not None:
        wanted = {id(p) for p in params}
        for p in model.parameters():
            if p.requires_grad and id(p) not in wanted:
                p.requires_grad_(False)
                frozen.append(p)
    total = 0.0
    try:
        for i in range(len(batches)):
            x = batches[i:i + 1].to(device)
            out = model(input_ids=x, labels=x, use_cache=False)
            out.loss.backward()
            total += float(out.loss.detach())
            del out
            if progress:
                progress((i + 1) / len(batches))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return total / len(batches)


def block_influence(model, layers, batches, device, progress=None) -> list[float]:
    """ShortGPT block influence per layer: 1 - mean cosine(input, output) over calibration tokens."""
    import torch

    sums = [0.0] * len(layers)
    count = 0
    captured: dict[int, tuple] = {}

    def hook(idx):
        def _h(module, args, kwargs, output):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            captured[idx] = (h_in.detach(), h_out.detach())
        return _h

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for b in range(len(batches)):
                x = batches[b:b + 1].to(device)
                model(input_ids=x, use_cache=False)
                for i, (h_in, h_out) in captured.items():
                    cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
                    sums[i] += float((1 - cos).sum())
                count += x.numel()
                captured.clear()
                if progress:
                    progress((b + 1) / len(batches))
    finally:
        for h in handles:
            h.remove()
    return [s / count for s in sums]
