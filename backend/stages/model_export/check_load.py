"""Load an exported model the way a user would, in a fresh interpreter, and compare its logits.

Run as a script (``python check_load.py DIR REQUEST.json``), never imported by greentui: it imports
torch and transformers only and proves it by checking that no ``backend`` module is loaded. The request
holds the input ids of the fixed text, the reference logits' file (safetensors, from greentui's own
loader), whether ``trust_remote_code`` is needed, and what else to try (``pipeline``). One JSON
line on stdout says what happened; a failure to load is reported in it, not raised.
"""

from __future__ import annotations

import json
import sys


def main(folder: str, request_file: str) -> dict:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    req = json.loads(open(request_file, encoding="utf-8").read())
    trust = bool(req.get("trust_remote_code"))
    out: dict = {"trust_remote_code": trust}
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trust)
    model.eval()
    out["class"] = type(model).__name__
    out["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    out["tokenizer_ids_match"] = tokenizer(req["text"], add_special_tokens=False)["input_ids"] == req["ids"]
    ref = load_file(req["reference"])["logits"]
    with torch.no_grad():
        logits = model(torch.tensor([req["ids"]])).logits
    out["shape_match"] = list(logits.shape) == list(ref.shape)
    if out["shape_match"]:
        diff = (logits.float() - ref.float()).abs()
        out["max_abs_diff"] = float(diff.max())
        out["bit_identical"] = bool(torch.equal(logits, ref))
        out["max_abs_logit"] = float(ref.float().abs().max())
    if req.get("pipeline"):
        from transformers import pipeline

        generate = pipeline("text-generation", model=folder, trust_remote_code=trust)
        text = generate(req["text"], max_new_tokens=4, do_sample=False)[0]["generated_text"]
        out["pipeline_generated"] = isinstance(text, str) and text.startswith(req["text"])
    out["greentui_imported"] = any(name == "backend" or name.startswith("backend.") for name in sys.modules)
    return out


if __name__ == "__main__":
    try:
        result = main(sys.argv[1], sys.argv[2])
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises is the answer
        result = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
    print(json.dumps(result))
