"""Training data for LoRA recovery: Alpaca-style instructions or plain text, tokenized with a cutoff.

Sources, in the order they are tried:

* ``None``: the shipped CC0 instruction set (``backend/data/text/instructions.jsonl``, 2,000 items);
* a local file: ``.jsonl`` (one JSON object a line), ``.json`` (a list of objects), or ``.txt``
  (plain text, cut into ``cutoff_len``-token chunks);
* a Hugging Face dataset id (the study used ``yahma/alpaca-cleaned``), only when the hub is reachable.

A record is either Alpaca-style ``{instruction, input?, output}`` or ``{text}``. Prompts follow the
Alpaca template used by LLM-Pruner's post-training; like LLM-Pruner's default (``train_on_inputs``
off), the prompt tokens are masked out of the loss unless ``train_on_inputs`` is set, and an EOS
token ends every answer.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.workspace import PACKAGE_DATA

DEFAULT_INSTRUCTIONS = PACKAGE_DATA / "text" / "instructions.jsonl"
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".md")
RECORD_SUFFIXES = (".jsonl", ".json")
IGNORE = -100

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt (everything before the answer)."""
    if input_text and input_text.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def looks_like_hub_id(source: str) -> bool:
    """``owner/name`` (or a bare name) without a file suffix or a path prefix."""
    if source.startswith((".", "/", "~")) or "\\" in source:
        return False
    if Path(source).suffix.lower() in TEXT_SUFFIXES + RECORD_SUFFIXES:
        return False
    return source.count("/") <= 1 and bool(source.strip())


def resolve_source(data: str | Path | None) -> tuple[str, Path | str]:
    """Return ``("file", path)`` or ``("hub", id)``; raise GreentuiError for a missing file."""
    if data is None:
        return "file", DEFAULT_INSTRUCTIONS
    path = Path(data).expanduser()
    if path.is_file():
        return "file", path
    if path.exists():
        raise GreentuiError(f"LoRA data {path} is not a file; pass a .jsonl, .json or .txt file")
    if isinstance(data, str) and looks_like_hub_id(data):
        return "hub", data
    raise GreentuiError(f"LoRA data file {path} not found; pass an existing .jsonl/.json/.txt file "
                        "or a Hugging Face dataset id")


def _check_record(rec: Any, where: str) -> dict:
    if not isinstance(rec, dict):
        raise GreentuiError(f"{where}: expected a JSON object with instruction/input/output or text, "
                            f"got {type(rec).__name__}")
    if "instruction" in rec or "output" in rec:
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str):
                raise GreentuiError(f"{where}: field {key!r} is missing or not a string")
        if not isinstance(rec.get("input", ""), (str, type(None))):
            raise GreentuiError(f"{where}: field 'input' is not a string")
        return {"instruction": rec["instruction"], "input": rec.get("input") or "", "output": rec["output"]}
    if isinstance(rec.get("text"), str):
        return {"text": rec["text"]}
    raise GreentuiError(f"{where}: needs 'instruction' and 'output' (Alpaca) or 'text'; "
                        f"found keys {sorted(rec)}")


def read_records(path: Path) -> list[dict]:
    """Records of a local .jsonl/.json file, each checked; errors name the file and line. The shipped
    set is read once per process (every queued run checks it; it never changes)."""
    if path == DEFAULT_INSTRUCTIONS:
        return list(_shipped_records())
    return _read_records(path)


@functools.lru_cache(maxsize=1)
def _shipped_records() -> tuple[dict, ...]:
    return tuple(_read_records(DEFAULT_INSTRUCTIONS))


def _read_records(path: Path) -> list[dict]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GreentuiError(f"cannot read LoRA data {path}: {exc}") from exc
    records: list[dict] = []
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise GreentuiError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from exc
        if isinstance(items, dict) and isinstance(items.get("data"), list):
            items = items["data"]
        if not isinstance(items, list):
            raise GreentuiError(f"{path}: expected a JSON list of records")
        records = [_check_record(r, f"{path}, item {i}") for i, r in enumerate(items)]
    else:
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GreentuiError(f"{path}, line {lineno}: invalid JSON ({exc.msg})") from exc
            records.append(_check_record(rec, f"{path}, line {lineno}"))
    if not records:
        raise GreentuiError(f"{path} holds no records")
    return records


def _hub_records(dataset_id: str, split: str = "train") -> list[dict]:
    from backend.workspace import hub_reachable

    if not hub_reachable():
        raise GreentuiError(f"dataset {dataset_id!r} is on the Hugging Face hub, which is not reachable; "
                            "pass a local .jsonl/.json/.txt file (omit the data option for the shipped "
                            "instruction set)")
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the id is the user's input
        raise GreentuiError(f"cannot load dataset {dataset_id!r}: {exc}") from exc
    return [_check_record(dict(r), f"{dataset_id}, row {i}") for i, r in enumerate(ds)]


def _encode(tokenizer, texts: list[str], special: bool) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=special)["input_ids"] if texts else []


def tokenize_records(records: list[dict], tokenizer, cutoff_len: int,
                     train_on_inputs: bool = False) -> tuple[list[dict], int]:
    """Examples ``{input_ids, labels}`` of at most ``cutoff_len`` tokens; and how many were dropped.

    Alpaca: prompt ids (with the tokenizer's own special tokens, e.g. BOS) + answer ids + EOS, the
    prompt labelled ``-100`` unless ``train_on_inputs``. Text records are chunked like a .txt file.
    An example whose answer is cut off entirely carries no loss and is dropped.
    """
    alpaca = [r for r in records if "instruction" in r]
    texts = [r["text"] for r in records if "text" in r]
    prompts = _encode(tokenizer, [alpaca_prompt(r["instruction"], r["input"]) for r in alpaca], True)
    answers = _encode(tokenizer, [r["output"] for r in alpaca], False)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    examples, dropped = [], 0
    for p, a in zip(prompts, answers):
        ids = (p + a + eos)[:cutoff_len]
        labels = (list(ids) if train_on_inputs else [IGNORE] * len(p) + (a + eos))[:cutoff_len]
        if all(x == IGNORE for x in labels[1:]):
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": labels})
    if texts:
        examples.extend(chunk_text("\n\n".join(texts), tokenizer, cutoff_len))
    return examples, dropped


def chunk_text(text: str, tokenizer, cutoff_len: int) -> list[dict]:
    """Consecutive ``cutoff_len``-token chunks of ``text`` (a shorter tail is kept if >= 8 tokens)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = [ids[i:i + cutoff_len] for i in range(0, len(ids), cutoff_len)]
    return [{"input_ids": c, "labels": list(c)} for c in chunks if len(c) >= min(8, cutoff_len)]


def cutoff_problem(data: str | Path | None, tokenizer_json: Path, cutoff_len: int,
                   records: list[dict] | None = None) -> str | None:
    """Why no training example would survive ``cutoff_len`` tokens, or None when one does (or when it
    cannot be told without the data: a hub dataset, a text file).

    Checked before a run is queued with the model's own ``tokenizer.json`` (the ``tokenizers``
    library, no torch): an Alpaca example survives when its answer (and EOS) starts before the cutoff,
    exactly the rule of :func:`tokenize_records`. The shortest prompts are tried first, so a usable
    cutoff costs a few encodings, and only a hopeless one encodes every prompt."""
    kind, where = resolve_source(data)
    if kind != "file" or Path(where).suffix.lower() not in RECORD_SUFFIXES:
        return None
    records = read_records(Path(where)) if records is None else records
    if any("text" in r for r in records):
        return None  # text is cut into chunks of the cutoff length: any 8 tokens make one
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    records = sorted(records, key=lambda r: len(r["instruction"]) + len(r["input"]))
    shortest = None
    for start in range(0, len(records), 64):
        batch = records[start:start + 64]
        prompts = tokenizer.encode_batch([alpaca_prompt(r["instruction"], r["input"]) for r in batch],
                                         add_special_tokens=True)
        answers = tokenizer.encode_batch([r["output"] for r in batch], add_special_tokens=False)
        for p, a in zip(prompts, answers):
            n = len(p.ids)
            shortest = n if shortest is None else min(shortest, n)
            if max(1, n) < min(cutoff_len, n + len(a.ids) + 1):  # +1: the EOS that ends every answer
                return None
    return (f"no training example of {Path(where).name} fits in {cutoff_len} tokens: the shortest prompt "
            f"alone is {shortest} tokens; raise the LoRA cutoff above it")


def load_examples(data: str | Path | None, tokenizer, cutoff_len: int,
                  train_on_inputs: bool = False) -> tuple[list[dict], dict]:
    """Tokenized examples from any supported source, plus a description for the report."""
    kind, where = resolve_source(data)
    if kind == "hub":
        records = _hub_records(str(where))
    elif Path(where).suffix.lower() in RECORD_SUFFIXES:
        records = read_records(Path(where))
    else:
        try:
            text = Path(where).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GreentuiError(f"cannot read LoRA text {where}: {exc}") from exc
        records = [{"text": text}]
    examples, dropped = tokenize_records(records, tokenizer, cutoff_len, train_on_inputs)
    if not examples:
        hint = (f"; all {dropped} prompts fill the cutoff: raise cutoff_len or train on inputs"
                if dropped else "")
        raise GreentuiError(f"LoRA data {where} gives no training examples at cutoff length "
                            f"{cutoff_len}{hint}")
    info = {"source": str(where), "kind": kind, "records": len(records), "examples": len(examples),
            "dropped_too_long": dropped}
    return examples, info

