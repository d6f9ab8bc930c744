"""Every check a run's inputs can answer is made before anything is recorded or loaded (#19.2, #22 2.8).

The walk below is generated from the run schema: every setting gets the values its type can never take
(a negative count, NaN, infinity) plus the refused values listed in ``BAD`` for settings whose type says
nothing (paths, names, lists). Each is queued against the shipped demo model and must be refused at
queue time by a one-line error naming the setting's flag, with the workspace's store byte for byte as
it was. A new setting that is not a bool and has no entry in ``BAD`` fails the walk, so it cannot be
missed. In-process CLI (``cli``), a real store, the real demo model's files; nothing is loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from backend.schema.runconfig import SETTINGS
from backend.schema.settings import flag_of
from backend.store import Store
from backend.workspace import PACKAGE_DATA, db_path

DEMO = PACKAGE_DATA / "demo-model"  # 6 decoder layers, safetensors weights, tokenizer.json


def _files(tmp: Path) -> dict[str, Path]:
    """Files the walk's path settings point at (made once per test in its tmp dir)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text(" \n\t\n")
    (tmp / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 8)
    (tmp / "a-dir").mkdir(exist_ok=True)
    (tmp / "no-output.jsonl").write_text('{"instruction": "say hi"}\n')
    (tmp / "not-json.jsonl").write_text('{"instruction": "a", "output": "b"}\n{oops\n')
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    for task in ("arc_challenge", "arc_easy", "boolq", "hellaswag", "piqa", "openbookqa", "winogrande"):
        (data / f"{task}.jsonl").write_text('{"unrelated": 1}\n')
    return {"tmp": tmp}


#: Refused values of the settings whose type alone does not give one (command-line text; "{tmp}" is the
#: test's folder of files made by ``_files``). Numbers also get the generic probes of ``probes``.
BAD: dict[str, list[str]] = {
    "model": ["/no/such/model", "{tmp}/a-dir", ""],
    "importance": ["magic"],
    "prune_ratio": ["0", "1", "1.5"],
    "ignore_first": ["6"],  # an explicit value that leaves nothing of the 6 layers to prune
    "ignore_last": ["6"],
    "round_to": ["0"],
    "calib_samples": ["0"],
    "calib_seq_len": ["4"],
    "calib_file": ["{tmp}/missing.txt", "{tmp}/empty.txt", "{tmp}/blank.txt", "{tmp}/binary.txt",
                   "{tmp}/a-dir", "/dev/null"],
    "count_rule": ["magic"],
    "target_params": ["lots", "9B", "1"],  # not a count; not below the model; below what pruning can reach
    "target_ratio": ["0", "1", "0.001"],
    "lora_r": ["0"],
    "lora_alpha": ["0"],
    "lora_dropout": ["1", "5"],
    "lora_steps": ["0"],
    "lora_epochs": ["0"],
    "lora_lr": ["0"],
    "lora_batch_size": ["0"],
    "lora_cutoff_len": ["4", "32"],  # 32: the shortest shipped prompt alone is 42 demo tokens
    "lora_data": ["{tmp}/missing.jsonl", "{tmp}/no-output.jsonl", "{tmp}/not-json.jsonl", "{tmp}/a-dir",
                  "org/hub-dataset"],
    "tasks": ["nope", ""],
    "limit": ["0"],
    "num_fewshot": [],
    "batch_size": ["big", "0"],
    "data_dir": ["{tmp}/missing", "{tmp}/data"],
    "ppl_limit": ["1"],
    "device": ["tpu", "cuda:x"],
    "seed": [str(2**32)],
    "country": ["us", "France"],
    "repeats": ["0", "101", "often"],
    "energy_design": ["interleaved"],
    "ci_target": ["0", "0.9"],
    "max_repeats": ["2", "101"],
    "repeats_budget_s": ["0"],
    "energy_sample": ["0"],
    "window_s": ["0", "601"],
    "baseline_max_age_days": ["-1"],
    "efficiency_batches": ["0", "big"],
    "efficiency_seq_len": ["4"],
    "executor": ["k8s"],
    "partition": ["a b"],
    "gpus": [],
    "time_limit": ["soon", "4h"],
    "slurm_arg": ["noequals", "output=x.log"],
}
#: Settings whose refused values only make sense with another setting (the Slurm options need Slurm).
WITH = {"partition": ["--executor", "slurm"], "time_limit": ["--executor", "slurm"],
        "slurm_arg": ["--executor", "slurm"]}


def probes() -> list[tuple[str, str]]:
    """(setting, refused text) for every setting that takes a value: the generic values its type can never
    take, and ``BAD``'s. A bool is a switch and has no value of its own to refuse."""
    out = []
    for s in SETTINGS:
        if s.type == "bool":
            continue
        generic = {"int": ["-1"], "float": ["-1", "nan", "inf"], "ratio": ["-1", "nan", "inf"]}.get(s.type, [])
        assert s.name in BAD, f"setting {s.name} has no refused value in BAD: add one (the walk must cover it)"
        out += [(s.name, v) for v in generic + BAD[s.name]]
    return out


def state(ws: Path) -> tuple[str, list[str]]:
    """The store's content (a hash of its full SQL dump, schema and rows, read by a fresh connection)
    and the workspace's entries: what a refusal must leave as it was.

    The dump, not the file's bytes: an in-process command leaves its store to the garbage collector,
    and whenever that closes it SQLite folds the write-ahead log into the file, changing its bytes but
    not its content (a gc.collect() per probe to pin the bytes cost 0.4 s each in a worker full of
    models). The WAL's own files come and go with those connections and are left out for the same reason."""
    conn = sqlite3.connect(f"file:{db_path(ws)}?mode=ro", uri=True)
    try:
        dump = "\n".join(conn.iterdump()) + f"\nuser_version={conn.execute('PRAGMA user_version').fetchone()[0]}"
    finally:
        conn.close()
    entries = sorted(p.name for p in ws.iterdir() if not p.name.endswith(("-wal", "-shm")))
    return hashlib.sha256(dump.encode()).hexdigest(), entries


def test_the_walk_covers_every_setting():
    assert {s.name for s in SETTINGS if s.type != "bool"} == set(BAD)
    assert len(probes()) > 80


def sample(all_probes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fast tier's share of the walk: the first refused value of each kind of setting (int, float,
    ratio, str, list, ...) and each probe that names a file (the checks that stat or read); the slow
    tier walks every value of every setting."""
    kind = {s.name: s.type for s in SETTINGS}
    seen: set[str] = set()
    out = []
    for name, text in all_probes:
        if "{" in text or kind[name] not in seen:
            seen.add(kind[name])
            out.append((name, text))
    return out


@pytest.mark.slow
def test_every_bad_value_of_every_setting_is_refused_at_queue_time(cli, workspace, tmp_path):
    """The whole walk (~100 probes, ~40 s): every generic and every listed bad value."""
    _walk(cli, workspace, tmp_path, probes())


def test_every_bad_setting_is_refused_at_queue_time_and_the_store_is_untouched(cli, workspace, tmp_path):
    """Each setting's first bad value (the full walk is in the slow tier)."""
    _walk(cli, workspace, tmp_path, sample(probes()))


def _walk(cli, workspace: Path, tmp_path: Path, walk: list[tuple[str, str]]) -> None:
    """One workspace for the whole walk (a store with a run in it); after each refusal its store is byte
    for byte what it was. Every failing probe is reported at once."""
    files = _files(tmp_path / "files")
    cli("queue", str(DEMO), "--no-start", check=True)
    before = state(workspace)
    wrong = []
    for name, text in walk:
        value = text.format(**files)
        s = next(s for s in SETTINGS if s.name == name)
        args = [value] if not s.flag else [str(DEMO), f"{s.flag}={value}"]
        proc = cli("queue", *args, *WITH.get(name, []), "--no-start")
        lines = proc.stderr.strip().splitlines()
        line = lines[-1] if lines else ""
        named = flag_of(name) if s.flag else "model"
        ours, argparse_ = f"greentui: error: {named}: ", f"greentui queue: error: argument {named}: "
        # argparse's parser errors come after its usage lines; ours are one line
        after = state(workspace)
        if proc.returncode != 2 or not (line.startswith(ours) and len(lines) == 1 or line.startswith(argparse_)):
            wrong.append(f"{name}={value}: exit {proc.returncode}, {proc.stderr.strip()[-300:] or proc.stdout}")
        elif after != before:
            wrong.append(f"{name}={value}: refused, but the workspace changed ({before} -> {after})")
        before = after
    assert not wrong, "\n".join(wrong)


def test_lora_and_pruning_views_refuse_with_the_run_schemas_rule():
    """#19.1: the stage's own config is a view of RunConfig, checked by the same rule, naming the setting
    (``--lora-dropout 1`` used to pass the queue and fail only after baseline and prune)."""
    from backend.schema.runconfig import RunConfig
    from backend.schema.settings import SettingError
    from backend.stages.finetune import LoraSpec
    from backend.stages.pruning.spec import PruneConfig

    cfg = RunConfig(model="m", lora_dropout=1.0, seed=-1)
    with pytest.raises(SettingError) as lora:
        LoraSpec.of(cfg).validate()
    assert lora.value.field == "lora_dropout"
    with pytest.raises(SettingError) as prune:
        PruneConfig.of(cfg).validate(6)
    assert prune.value.field == "seed"
    with pytest.raises(SettingError) as run:
        cfg.validate()
    assert run.value.field == "lora_dropout" and str(run.value) == str(lora.value)
    ok = RunConfig(model="m")
    assert (LoraSpec.of(ok).r, LoraSpec.of(ok).steps, PruneConfig.of(ok).ratio) == (8, 200, ok.prune_ratio)


def _copy_demo(tmp_path: Path, name: str, **config) -> Path:
    out = tmp_path / name
    shutil.copytree(DEMO, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(config)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_a_model_with_no_decoder_layer_is_refused_at_queue_time(cli, workspace, tmp_path):
    """config.json says 0 decoder layers: refused by the layers rule before a baseline is evaluated."""
    cfg_only = tmp_path / "zero"
    cfg_only.mkdir()
    cfg = json.loads((DEMO / "config.json").read_text())
    (cfg_only / "config.json").write_text(json.dumps(dict(cfg, num_hidden_layers=0)))
    proc = cli("queue", str(cfg_only), "--no-start")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("greentui: error: model: config.json says the model has 0 decoder layers: "
                                   "there is nothing to prune")
    with_weights = _copy_demo(tmp_path, "zero-w", num_hidden_layers=0)
    proc = cli("queue", str(with_weights), "--no-start")
    assert proc.returncode == 2 and "config.json says the model has 0 layers" in proc.stderr
    with Store(db_path(workspace)) as store:
        assert store.runs.count() == 0 and store.models.list() == []


def test_weights_that_do_not_match_config_json_are_one_line_before_loading(cli, workspace, tmp_path):
    """#22 2.8: the safetensors headers against config.json, at queue time and in ``greentui prune``; a
    load that fails anyway is one line naming the model, not transformers' report."""
    bad = _copy_demo(tmp_path, "wide", intermediate_size=768)
    want = ("model.safetensors: model.layers.0.mlp.down_proj.weight has shape [128, 384], config.json says "
            "[128, 768]")
    proc = cli("queue", str(bad), "--no-start")
    assert proc.returncode == 2 and proc.stderr.startswith(f"greentui: error: model: {want}")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("prune", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and want in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    layers = _copy_demo(tmp_path, "deeper", num_hidden_layers=8)
    proc = cli("queue", str(layers), "--no-start")
    assert "the weights hold 6 decoder layers, config.json says 8" in proc.stderr

    from backend.errors import GreentuiError
    from backend.stages.model_io import load_model
    with pytest.raises(GreentuiError) as exc:
        load_model(bad)
    assert str(exc.value).startswith(f"cannot load model {bad}: {want}") and "\n" not in str(exc.value)


def test_the_cutoff_check_is_the_trainers_rule(tmp_path):
    """The queue-time cutoff check (tokenizer.json, no torch) agrees with the trainer's tokenization at
    the boundary: one token less than the first cutoff it accepts drops every example."""
    from transformers import AutoTokenizer

    from backend.errors import GreentuiError
    from backend.stages.lora.data import DEFAULT_INSTRUCTIONS, cutoff_problem, load_examples
    data = tmp_path / "some.jsonl"
    data.write_text("".join(DEFAULT_INSTRUCTIONS.read_text().splitlines(keepends=True)[:20]))
    tokenizer = DEMO / "tokenizer.json"
    boundary = next(c for c in range(8, 512) if cutoff_problem(data, tokenizer, c) is None)
    assert f"fits in {boundary - 1} tokens" in cutoff_problem(data, tokenizer, boundary - 1)
    tok = AutoTokenizer.from_pretrained(DEMO)
    with pytest.raises(GreentuiError, match="gives no training examples"):
        load_examples(data, tok, boundary - 1)
    assert len(load_examples(data, tok, boundary)[0]) >= 1
    assert "the shortest prompt alone is 42 tokens" in cutoff_problem(None, tokenizer, 32)  # the shipped set


def test_a_local_device_that_is_not_here_is_refused_at_queue_time(cli, workspace):
    """Executor availability: a local run asking for a GPU on a machine without one is refused when queued,
    not left waiting for a device that will never come."""
    from backend.execution.devices import cuda_devices
    if cuda_devices():
        pytest.skip("this machine has a GPU")
    proc = cli("queue", str(DEMO), "--device", "cuda", "--no-start")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "greentui: error: --device: device 'cuda': no CUDA device is visible on this machine"


def test_the_layers_clamp_is_said_by_queue_and_plan_alike(cli, workspace):
    """#22 3.4 on the CLI: the study's 4/4 on the 6-layer demo model is clamped and said so, by queue and
    by plan, in the same words; an explicit 3/3 is refused by both in the same words."""
    note = ("warning: the model has 6 layers: the study's ignore first/last of 4 is clamped to 2 so that layers "
            "are left to prune")
    queued = cli("queue", str(DEMO), "--no-start", check=True)
    planned = cli("plan", str(DEMO), check=True)
    assert note in queued.stderr and note in " ".join(planned.stdout.split())
    refusal = ("--ignore-first: ignore first 3 + ignore last 3 leave none of the model's 6 layers: nothing would "
               "be left to prune")
    for command in ("queue", "plan"):
        proc = cli(command, str(DEMO), "--ignore-first", "3", "--ignore-last", "3",
                   *(["--no-start"] if command == "queue" else []))
        assert proc.returncode == 2 and proc.stderr.strip() == f"greentui: error: {refusal}", proc.stderr
