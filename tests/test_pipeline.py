"""The study through the CLI: run, baseline reuse, seed, export, import, kills and bad input.

Fast tier: one-task ``--limit 2`` runs through ``backend.cli.main`` in this process. Slow tier (CI):
the same through the console script in its own process, the seven-task acceptance run, and SIGKILLs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.results.ratios import METHOD_PAIRED
from backend.results.report import study_tables
from backend.schema.runconfig import STUDY_TASKS
from backend.schema.tasks import bundled_data_dir
from backend.store import Store

from .conftest import ROOT, wait_for

DATA = str(bundled_data_dir())
QUICK = ["--tasks", "boolq,piqa", "--limit", "4", "--data-dir", DATA, "--ppl-limit", "128",
         "--lora-steps", "2", "--lora-batch-size", "2", "--calib-samples", "2"]


def _assert_paired_windows(s: Store, run: dict, tasks: list[str], pairs: int | None = None) -> None:
    """The paired protocol (the default, issue #18): both variants' windows are the run's own rows, one
    pair per repeat index, measured A B B A (v p, p v, v p, ...) task by task, each after a warm-up;
    ``pairs`` fixed by --repeats N, else (auto) at least 3."""
    windows = sorted(s.results.energy_repeats(run["id"]), key=lambda w: w["position"])
    assert sorted({w["task"] for w in windows}) == sorted(tasks)
    for task in tasks:
        mine = [(w["variant"][0], w["repeat"]) for w in windows if w["task"] == task]
        n = len(mine) // 2
        assert n == pairs if pairs is not None else n >= 3, mine
        abba = [x for k in range(1, n + 1) for x in ((("v", k), ("p", k)) if k % 2 else (("p", k), ("v", k)))]
        assert mine == abba
    assert all(w["energy_kwh"] > 0 and w["warmup_s"] > 0 and w["passes"] >= 1 for w in windows)
    assert run["config"]["energy_design"] == "paired"
    for row in s.results.task_results(run["id"], "pruned"):  # the order measured, A = vanilla, B = pruned
        mine = [w["variant"] for w in windows if w["task"] == row["task"]]
        assert row["provenance"]["energy_protocol"]["order"] == "".join("A" if v == "vanilla" else "B" for v in mine)
        assert row["provenance"]["energy_protocol"]["order"].startswith("ABBA")


def _store(ws: Path) -> Store:
    return Store(ws / "greentui.db")


def _assert_whole_rows(rows):
    for r in rows:
        assert 0.0 <= r["acc"] <= 1.0
        assert r["n_samples"] and r["seconds"] is not None and r["tokens"]
        assert r["energy_kwh"] is not None and r["energy_kwh"] > 0
        assert r["meter"] and "estimate" in r["meter"]  # this machine has no RAPL, no GPU


def test_one_task_run_in_process_seed_baseline_reuse_export(cli, workspace, demo_model_dir):
    """The whole pipeline on one task, two items: the seed reaches lm-eval and LoRA and is recorded;
    a second run with the same evaluation settings reuses the vanilla baseline."""
    model = str(demo_model_dir("llama"))
    proc = cli("run", model, "--tasks", "boolq", "--limit", "2", "--data-dir", DATA, "--ppl-limit", "64",
               "--lora-steps", "2", "--lora-batch-size", "2", "--calib-samples", "2", "--seed", "7",
               "--repeats", "2", "--window-s", "0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = int(proc.stdout.strip().splitlines()[-1])
    assert "Table 1" in proc.stdout
    with _store(workspace) as s:
        run = s.runs.get(run_id)
        assert run["status"] == "done" and run["params_after"] < run["params_before"]
        assert run["config"]["seed"] == 7
        base = run["parent_run_id"]
        rows = s.results.task_results(base, "vanilla") + s.results.task_results(run_id, "pruned")
        assert [r["task"] for r in rows] == ["boolq", "boolq"] and all(r["n_samples"] == 2 for r in rows)
        _assert_whole_rows(rows)
        assert {r["provenance"]["seed"] for r in rows} == {7}
        assert {m["name"] for m in s.results.metrics(run_id)} >= {"ppl_wikitext2"}
        # the paired protocol (the default, issue #18): both variants' windows are this run's own rows,
        # one pair per repeat index, measured A B B A, each after a warm-up
        _assert_paired_windows(s, run, ["boolq"], pairs=2)
    for rid in (base, run_id):  # what lm-eval itself says it was seeded with
        lm = json.loads((workspace / f"run-{rid:05d}" / "lm_eval" / "boolq.json").read_text())["config"]
        assert (lm["random_seed"], lm["numpy_seed"], lm["torch_seed"], lm["fewshot_seed"]) == (7, 7, 7, 7)
    lora = json.loads((workspace / f"run-{run_id:05d}" / "lora_report.json").read_text())
    assert lora["spec"]["seed"] == 7 and lora["steps"] == 2
    saved = json.loads((workspace / f"run-{run_id:05d}" / "model" / "greentui_prune_report.json").read_text())
    assert saved["lora_merged"] is False  # the model as pruning left it; export-model --merge-lora merges the adapter
    assert (workspace / f"run-{run_id:05d}" / "lora" / "adapter" / "adapter_model.safetensors").exists()

    again = cli("run", model, "--tasks", "boolq", "--limit", "2", "--data-dir", DATA, "--ppl-limit", "64",
                "--importance", "l2", "--no-lora", "--repeats", "1", "--window-s", "0.05", "--seed", "7")
    assert again.returncode == 0, again.stderr[-3000:]
    run2 = int(again.stdout.strip().splitlines()[-1])
    with _store(workspace) as s:
        assert s.runs.get(run2)["parent_run_id"] == base  # same evaluation settings: reused
        reuse = next(m for m in s.results.metrics(run2) if m["name"] == "baseline_reuse")
        assert reuse["value"] == base and '"applies_to": "accuracy"' in reuse["detail"]
        assert s.runs.count(statuses=["done"]) == 3
        assert len(s.results.task_results(base)) == 1  # nothing re-measured
    with _store(workspace) as s:
        acc_v, acc_p = study_tables(s, [run_id])["accuracy"]
    md = cli("export", str(run_id), check=True).stdout
    assert re.search(rf"\|\s+{acc_p.avg:.3f} \|", md) and re.search(rf"\|\s+{acc_v.avg:.3f} \|", md)
    assert "\\begin{tabular}" in cli("export", "--format", "latex", check=True).stdout
    data = json.loads(cli("export", str(run_id), "--format", "json", check=True).stdout)
    assert data["runs"][0]["results"][0]["meter"] and data["accuracy"][0]["stderr"]
    csv_text = cli("export", str(run_id), "--format", "csv", check=True).stdout
    assert csv_text.splitlines()[0].startswith("model,run_id,variant,task,acc,acc_stderr")


@pytest.mark.slow
def test_a_paired_tasks_row_is_written_after_its_windows_and_ratio(cli, workspace, demo_model_dir):
    """The pruned task row marks a task finished for a resumed run: written last, a kill between the
    writes re-measures the task instead of keeping a row without its windows and interval."""
    from backend.execution.pipeline import execute_run
    from backend.execution.sinks import StoreRecorder

    calls: list[tuple[str, str]] = []

    class Watched(StoreRecorder):
        def save_energy_windows(self, run_id, task, windows):
            calls.append(("windows", task))
            super().save_energy_windows(run_id, task, windows)

        def save_metric(self, run_id, variant, name, value, detail=None):
            if name.startswith("paired_energy_ratio:"):
                calls.append(("ratio", name.split(":", 1)[1]))
            super().save_metric(run_id, variant, name, value, detail)

        def save_task_result(self, run_id, variant, task, result):
            if variant == "pruned":
                calls.append(("row", task))
            super().save_task_result(run_id, variant, task, result)

    queued = cli("queue", str(demo_model_dir("llama")), "--tasks", "boolq,piqa", "--limit", "2", "--data-dir", DATA,
                 "--ppl-limit", "64", "--no-lora", "--repeats", "2", "--window-s", "0.05", "--no-start", check=True)
    run_id = int(queued.stdout.split()[-1])
    with _store(workspace) as s:
        s.runs.mark_started(run_id)
        assert execute_run(Watched(s), workspace, run_id) == "done"
    assert calls == [(w, t) for t in ("boolq", "piqa") for w in ("windows", "ratio", "row")]


@pytest.mark.slow
def test_run_quick_then_reuse_baseline_and_export(cli_subprocess, workspace, demo_model_dir):
    """The console script end to end, two tasks, CodeCarbon on every task (slow: three processes)."""
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    first = cli("run", model, *QUICK)
    assert first.returncode == 0, first.stderr[-3000:]
    run_id = int(first.stdout.strip().splitlines()[-1])
    assert "Table 1" in first.stdout and "Table 2" in first.stdout
    with _store(workspace) as s:
        run = s.runs.get(run_id)
        assert run["status"] == "done" and run["kind"] == "experiment"
        assert run["params_after"] < run["params_before"]
        base = run["parent_run_id"]
        vanilla, pruned = s.results.task_results(base, "vanilla"), s.results.task_results(run_id, "pruned")
        assert sorted(r["task"] for r in vanilla) == sorted(r["task"] for r in pruned) == ["boolq", "piqa"]
        _assert_whole_rows(vanilla + pruned)
        assert {m["name"] for m in s.results.metrics(run_id)} >= {"ppl_wikitext2"}
        # the paired protocol (the default, issue #18): both variants' windows are this run's own rows,
        # one pair per repeat index, measured A B B A, each after a warm-up
        _assert_paired_windows(s, run, ["boolq", "piqa"])  # --repeats auto: 3 to 10 pairs per task
    folder = workspace / f"run-{run_id:05d}"
    assert (folder / "events.jsonl").exists() and (folder / "model" / "config.json").exists()
    assert (folder / "lora" / "adapter" / "adapter_config.json").exists()

    second = cli("run", model, *QUICK)
    assert second.returncode == 0, second.stderr[-3000:]
    run2 = int(second.stdout.strip().splitlines()[-1])
    with _store(workspace) as s:
        assert s.runs.get(run2)["parent_run_id"] == base  # the baseline was reused, not re-measured
        assert s.runs.count(statuses=["done"]) == 3

    md = cli("export", str(run_id), check=True).stdout
    with _store(workspace) as s:
        tables = study_tables(s, [run_id])
        acc_v, acc_p = tables["accuracy"]
        expect_avg = sum(acc_p.values.values()) / 2
        assert acc_p.avg == pytest.approx(expect_avg)
        ratio = acc_p.ratio.value if acc_p.ratio else None  # the Ratio carries its interval too
        assert ratio == pytest.approx(acc_p.avg / acc_v.avg if acc_v.avg else None)
    assert re.search(rf"\|\s+{acc_p.avg:.3f} \|", md)
    data = json.loads(cli("export", "--format", "json", check=True).stdout)
    assert data["accuracy"][0]["stderr"] and data["runs"][0]["results"][0]["meter"]
    csv_text = cli("export", "--format", "csv", check=True).stdout
    assert csv_text.splitlines()[0].startswith("model,run_id,variant,task,acc,acc_stderr")
    assert "\\begin{tabular}" in cli("export", "--format", "latex", check=True).stdout


@pytest.mark.slow
def test_study_run_seven_tasks(cli_subprocess, workspace, demo_model_dir):
    """The issue's acceptance command: seven tasks, --lora-steps 5 --limit 8, local data."""
    model = str(demo_model_dir("qwen2"))
    proc = cli_subprocess("run", model, "--lora-steps", "5", "--limit", "8", "--data-dir", DATA,
               "--lora-batch-size", "4", "--ppl-limit", "256")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = int(proc.stdout.strip().splitlines()[-1])
    with _store(workspace) as s:
        run = s.runs.get(run_id)
        for variant, rid in (("vanilla", run["parent_run_id"]), ("pruned", run_id)):
            rows = s.results.task_results(rid, variant)
            assert sorted(r["task"] for r in rows) == sorted(STUDY_TASKS)
            assert all(r["n_samples"] == 8 for r in rows)
            _assert_whole_rows(rows)
        tables = study_tables(s, [run_id])
    for key in ("accuracy", "energy"):
        v, p = tables[key]
        assert v.avg == pytest.approx(sum(v.values.values()) / 7)
        if key == "accuracy":
            assert p.ratio.value == pytest.approx(p.avg / v.avg)  # with its interval (backend/results/ratios.py)
        else:  # paired (the default): the pairs' mean log-ratio, a geometric mean, near the averages' quotient
            assert p.ratio.method == METHOD_PAIRED and p.ratio.value == pytest.approx(p.avg / v.avg, rel=0.02)


def test_bad_input_is_refused_and_store_untouched(cli, workspace, demo_model_dir, tmp_path):
    model = str(demo_model_dir("llama"))
    with _store(workspace) as s:  # something already recorded, which a refused command must keep
        mid = s.models.upsert("org/m", name="org/m")
        done = s.runs.create(mid, "baseline", {"model": "org/m"}, status="done")
        s.results.save_task_results(done, [{"variant": "vanilla", "task": "boolq", "acc": 0.5, "n_samples": 2}])
    with _store(workspace) as s:
        before = (s.runs.count(), s.conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0])

    def refused(*args: str) -> str:
        proc = cli(*args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr.strip().splitlines()[-1]

    assert "unknown task" in refused("run", model, "--tasks", "boolq,mmlu", "--data-dir", DATA)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(Path(DATA) / "boolq.jsonl", partial / "boolq.jsonl")
    assert "piqa.jsonl is missing" in refused("run", model, "--tasks", "boolq,piqa", "--data-dir", str(partial))
    lines = (Path(DATA) / "piqa.jsonl").read_text().splitlines()
    lines[2] = '{"goal": "broken'
    (partial / "piqa.jsonl").write_text("\n".join(lines) + "\n")
    assert f"{partial / 'piqa.jsonl'}:3" in refused("run", model, "--tasks", "piqa", "--data-dir", str(partial))
    assert "limit must be 1 or more" in refused("run", model, "--limit", "0")
    bogus = tmp_path / "notlmeval.json"
    bogus.write_text(json.dumps({"hello": "world"}))
    assert "not an lm-eval results file" in refused("import", str(bogus))
    (tmp_path / "garbage.json").write_text("{not json")
    assert "is not JSON" in refused("import", str(tmp_path / "garbage.json"))
    with _store(workspace) as s:
        after = (s.runs.count(), s.conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0])
        assert after == before
        assert s.integrity_check() == "ok"


def test_import_lm_eval_results(cli, workspace, tmp_path):
    doc = {
        "results": {
            "arc_easy": {"alias": "arc_easy", "acc,none": 0.74, "acc_stderr,none": 0.009,
                         "acc_norm,none": 0.70, "acc_norm_stderr,none": 0.0094},
            "boolq": {"alias": "boolq", "acc,none": 0.81, "acc_stderr,none": 0.007, "energy_wh": 1.25},
            "mmlu": {"acc,none": 0.5},
        },
        "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}, "boolq": {"original": 3270, "effective": 3270}},
        "config": {"model": "hf", "model_args": "pretrained=meta-llama/Llama-3.1-8B,dtype=bfloat16"},
    }
    f = tmp_path / "results_2026.json"
    f.write_text(json.dumps(doc))
    proc = cli("import", str(f), check=True)
    run_id = int(proc.stdout.strip().splitlines()[-1])
    with _store(workspace) as s:
        rows = {r["task"]: r for r in s.results.task_results(run_id)}
        assert set(rows) == {"arc_easy", "boolq"}
        assert rows["arc_easy"]["acc"] == 0.74 and rows["arc_easy"]["n_samples"] == 2376
        assert rows["arc_easy"]["energy_kwh"] is None and rows["arc_easy"]["meter"] is None  # missing, not 0
        assert rows["boolq"]["energy_kwh"] == pytest.approx(0.00125)
        assert s.runs.get(run_id)["model_ref"] == "meta-llama/Llama-3.1-8B"
    md = cli("export", str(run_id), check=True).stdout
    assert re.search(r"\|\s+0\.740 \|", md) and re.search(r"\|\s+— \|", md)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cli-run", "runner"])
def test_killed_run_leaves_no_partial_rows(cli_subprocess, workspace, demo_model_dir, how):
    """SIGKILL mid-evaluation: whole task rows only, integrity ok; a killed runner's run is interrupted."""
    cli = cli_subprocess
    model = str(demo_model_dir("llama"))
    args = ["--no-prune", "--tasks", "boolq,piqa,arc_easy,hellaswag", "--limit", "6", "--data-dir", DATA,
            "--ppl-limit", "0"]
    env = dict(os.environ, GREENTUI_HOME=str(workspace))
    if how == "cli-run":
        proc = subprocess.Popen([sys.executable, "-m", "backend", "run", model, *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = proc.pid
    else:
        cli("queue", model, *args, check=True)
        with _store(workspace) as s:
            pid = wait_for(lambda: (s.runs.running() or [{}])[0].get("pid"), 120, "the runner to claim the run")
    with _store(workspace) as s:
        wait_for(lambda: s.conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0] >= 1, 300,
                  "a first task result")
    os.kill(pid, signal.SIGKILL)
    if how == "cli-run":
        proc.wait(timeout=30)
    else:
        time.sleep(1.0)
    cli("ls", check=True)  # the next start recovers stale runs
    with _store(workspace) as s:
        assert s.integrity_check() == "ok"
        run = s.runs.list(limit=1)[0]
        assert run["status"] == "interrupted"
        assert s.queue.paused()
        rows = s.results.task_results(run["id"])
        assert 1 <= len(rows) < 4
        _assert_whole_rows(rows)
