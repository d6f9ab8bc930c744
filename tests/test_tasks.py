"""The study task registry and local (offline) copies of lm-eval's built-in tasks."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml

from backend.errors import GreentuiError
from backend.schema.tasks import LOCAL_PREFIX, STUDY_TASKS, TASKS, bundled_data_dir, resolve_tasks, validate_task_file
from backend.stages.lm_tasks import build_local_task_dir, builtin_yaml


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


def test_resolve_tasks_aliases_order_and_duplicates():
    assert resolve_tasks("all") == list(STUDY_TASKS)
    assert resolve_tasks(["study"]) == list(STUDY_TASKS)
    assert len(STUDY_TASKS) == 7
    assert resolve_tasks("piqa, BoolQ,piqa") == ["piqa", "boolq"]
    assert resolve_tasks(["winogrande", "arc_easy"]) == ["winogrande", "arc_easy"]


def test_unknown_task_lists_valid_names():
    with pytest.raises(GreentuiError) as err:
        resolve_tasks(["arc_easy", "mmlu"])
    msg = str(err.value)
    assert "'mmlu'" in msg
    for name in STUDY_TASKS:
        assert name in msg
    with pytest.raises(GreentuiError, match="no task given"):
        resolve_tasks(" , ")


def test_specs_metric_keys():
    assert TASKS["boolq"].metric_keys == ("acc", "acc_stderr")
    assert TASKS["winogrande"].metric_keys == ("acc", "acc_stderr")
    assert TASKS["hellaswag"].metric_keys == ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
    assert {TASKS[t].split for t in STUDY_TASKS} == {"test", "validation"}
    for t in STUDY_TASKS:
        assert builtin_yaml(t).is_file()


def test_bundled_sample_is_complete_and_valid():
    data = bundled_data_dir()
    assert (data / "SOURCES.md").is_file()
    for t in STUDY_TASKS:
        assert validate_task_file(data / f"{t}.jsonl", t) == 50


def _copy_data(tmp_path: Path, tasks) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for t in tasks:
        shutil.copy(bundled_data_dir() / f"{t}.jsonl", d / f"{t}.jsonl")
    return d


def test_missing_task_file_is_named(tmp_path):
    d = _copy_data(tmp_path, ["piqa"])
    with pytest.raises(GreentuiError) as err:
        build_local_task_dir(d, ["piqa", "boolq"], tmp_path / "work")
    assert str(d / "boolq.jsonl") in str(err.value)


def test_malformed_line_names_file_and_line(tmp_path):
    d = _copy_data(tmp_path, ["piqa"])
    f = d / "piqa.jsonl"
    lines = f.read_text().splitlines()
    lines[2] = lines[2][:-5]  # truncated JSON on line 3
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(GreentuiError) as err:
        build_local_task_dir(d, ["piqa"], tmp_path / "work")
    assert f"{f}:3:" in str(err.value)


def test_missing_field_names_file_line_and_field(tmp_path):
    d = _copy_data(tmp_path, ["winogrande"])
    f = d / "winogrande.jsonl"
    lines = f.read_text().splitlines()
    doc = json.loads(lines[4])
    del doc["option2"]
    lines[4] = json.dumps(doc)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(GreentuiError) as err:
        build_local_task_dir(d, ["winogrande"], tmp_path / "work")
    assert f"{f}:5:" in str(err.value) and "option2" in str(err.value)


def test_data_dir_must_exist(tmp_path):
    with pytest.raises(GreentuiError, match="does not exist"):
        build_local_task_dir(tmp_path / "nope", ["piqa"], tmp_path / "work")


def test_generated_yaml_includes_builtin_and_overrides_only_the_data(tmp_path):
    d = _copy_data(tmp_path, ["hellaswag"])
    out = build_local_task_dir(d, ["hellaswag"], tmp_path / "work")
    cfg = yaml.safe_load((out / f"{LOCAL_PREFIX}hellaswag.yaml").read_text())
    assert Path(cfg["include"]).is_absolute() and Path(cfg["include"]) == builtin_yaml("hellaswag")
    assert cfg["task"] == f"{LOCAL_PREFIX}hellaswag" and cfg["tag"] == []
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"]["data_files"] == {"test": str((d / "hellaswag.jsonl").resolve())}
    assert cfg["test_split"] == "test" and cfg["fewshot_split"] == "test"
    assert set(cfg) == {"include", "task", "tag", "dataset_path", "dataset_name", "dataset_kwargs",
                        "training_split", "validation_split", "test_split", "fewshot_split"}


def _render(field, doc):
    """Apply a built-in YAML's doc_to_* field the way its definition says (independent of Task)."""
    from lm_eval.utils import apply_template

    if callable(field):
        return field(doc)
    if isinstance(field, str):
        if "{{" in field:
            return apply_template(field, doc)
        if field in doc:
            return doc[field]
        return field
    return field


def _as_target(value):
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def test_local_tasks_reproduce_lm_eval_prompts(tmp_path):
    """For every study task, the local task renders the same prompt, choices and target as the
    built-in YAML's own definitions do on the same raw item."""
    import datasets
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval uses for task YAMLs

    out = build_local_task_dir(bundled_data_dir(), list(STUDY_TASKS), tmp_path / "work")
    tm = TaskManager(include_path=str(out), include_defaults=False)
    local = tm.load([TASKS[t].local_name for t in STUDY_TASKS])["tasks"]
    assert any((tmp_path / "work" / ".cache" / "datasets").iterdir())
    for name in STUDY_TASKS:
        task = local[TASKS[name].local_name]
        raw = json.loads((bundled_data_dir() / f"{name}.jsonl").read_text().splitlines()[0])
        cfg = load_yaml(builtin_yaml(name))
        doc = raw
        if callable(cfg.get("process_docs")):
            doc = cfg["process_docs"](datasets.Dataset.from_list([raw]))[0]
        local_doc = list(task.test_docs())[0]
        assert local_doc == doc, name
        assert task.doc_to_text(local_doc) == _render(cfg["doc_to_text"], doc), name
        choices = _render(cfg["doc_to_choice"], doc)
        if isinstance(choices, str):  # a Jinja template rendering a Python list literal
            choices = ast.literal_eval(choices)
        assert task.doc_to_choice(local_doc) == list(choices), name
        assert _as_target(task.doc_to_target(local_doc)) == _as_target(_render(cfg["doc_to_target"], doc)), name
        assert task.config.metric_list == cfg["metric_list"] or [m["metric"] for m in task.config.metric_list] == \
            [m["metric"] for m in cfg["metric_list"]], name
