"""Studies in the store (issue #20): queueing a grid with one shared baseline, idempotent re-runs, the
refusals that record nothing, and the study's answer on a store with known results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.errors import GreentuiError
from backend.results.study import study_answer
from backend.schema.study import StudyError, parse
from backend.service.studies import queue_fingerprint, run_study, study_grid
from backend.store import Store

TASKS = ["boolq", "piqa"]


def study_text(model, name="grid", extra=""):
    return (f'[study]\nname = "{name}"\nmodels = ["{model}"]\n[grid]\nimportance = ["taylor", "l1"]\n'
            f'prune_ratio = ["1/7", "2/7"]\n[run]\ntasks = {json.dumps(TASKS)}\nlimit = 4\nignore_first = 1\n'
            f'ignore_last = 1\n{extra}')


@pytest.fixture
def store(workspace):
    s = Store(workspace / "greentui.db")
    yield s
    s.close()


SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "backend" / "data" / "demo-model" / "config.json"


@pytest.fixture
def model(tmp_path):
    """A model folder holding only the shipped demo model's config.json: a study is checked and queued
    from config.json alone (no weights are loaded before a runner takes a cell)."""
    d = tmp_path / "six-layers"
    d.mkdir()
    shutil.copy(SHIPPED_CONFIG, d / "config.json")
    return str(d)


def test_a_grid_queues_one_shared_baseline_first_and_its_cells_wait_for_it(workspace, store, model):
    done = run_study(workspace, store, parse(study_text(model)), start=False)
    assert len(done.queued) == 5 and not done.settled
    runs = [store.runs.get(i) for i in done.queued]
    base = runs[0]
    assert base["kind"] == "baseline" and base["config"]["no_prune"] and base["config"]["tasks"] == TASKS
    assert [r["after_run_id"] for r in runs[1:]] == [base["id"]] * 4
    assert [r["config"]["importance"] for r in runs[1:]] == ["taylor", "taylor", "l1", "l1"]
    # the runner sees only the baseline until it is over
    assert [c["id"] for c in store.queue.candidates()] == [base["id"]]
    store.runs.finish(base["id"], "done")
    assert [c["id"] for c in store.queue.candidates()] == done.queued[1:]
    _, cells = study_grid(store, "grid")
    assert [(c.label, c.status) for c in cells] == [("vanilla", "done"), ("taylor 1/7", "queued"),
                                                    ("taylor 2/7", "queued"), ("l1 1/7", "queued"),
                                                    ("l1 2/7", "queued")]


def test_running_it_again_queues_only_the_cells_without_a_finished_or_pending_run(workspace, store, model):
    spec = parse(study_text(model))
    first = run_study(workspace, store, spec, start=False)
    again = run_study(workspace, store, parse(study_text(model)), start=False)
    assert again.queued == [] and again.settled == {"queued": 5}
    base, t17, t27, l17, l27 = first.queued
    for rid in (base, t17, l17):
        store.runs.finish(rid, "done")
    store.runs.finish(t27, "failed", "boom")
    store.runs.finish(l27, "cancelled")
    third = run_study(workspace, store, parse(study_text(model)), start=False)
    assert len(third.queued) == 2 and third.settled == {"done": 3}
    assert [store.runs.get(i)["config"]["prune_ratio"] for i in third.queued] == [2 / 7, 2 / 7]
    assert all(store.runs.get(i)["after_run_id"] is None for i in third.queued)  # the baseline is done
    _, cells = study_grid(store, "grid")
    assert [c.run_id for c in cells] == [base, t17, third.queued[0], l17, third.queued[1]]


def test_a_finished_baseline_in_the_store_is_reused_not_queued(workspace, store, model):
    spec = parse(study_text(model))
    first = run_study(workspace, store, spec, start=False)
    base = first.queued[0]
    cfg = store.runs.get(base)["config"]
    from backend.schema.runconfig import RunConfig
    store.runs.update(base, baseline_key=RunConfig.from_dict(cfg).baseline_key(store.runs.get(base)["model_ref"], "cpu"))
    store.results.save_task_results(base, [{"variant": "vanilla", "task": t, "acc": 0.5} for t in TASKS])
    store.runs.finish(base, "done")
    base_cfg = RunConfig.from_dict(cfg)
    # the fingerprint the pipeline records with a baseline (GPU facts and CUDA besides, which the queue
    # cannot know): this machine, these libraries, this data
    store.results.save_metric(base, "run", "fingerprint", None, dict(queue_fingerprint(base_cfg), cuda=None))
    other = run_study(workspace, store, parse(study_text(model, name="other", extra="seed = 0\n")), start=False)
    assert other.reused_baselines == [base] and len(other.queued) == 4
    assert all(store.runs.get(i)["after_run_id"] is None for i in other.queued)

    # #18.4 at queue time too: a baseline older than baseline_max_age_days, or measured on another node
    # or with other library versions, is not this study's baseline: a fresh one is queued
    from backend.store.tables import now
    store.runs.update(base, finished_at=now() - 8 * 86400)
    aged = run_study(workspace, store, parse(study_text(model, name="aged", extra="seed = 0\n")), start=False)
    assert aged.reused_baselines == [] and len(aged.queued) == 5
    store.runs.update(base, finished_at=now())
    for field, value in (("node", "another-node"), ("torch", "1.0.0"), ("data", "another-digest")):
        store.results.save_metric(base, "run", "fingerprint", None, dict(queue_fingerprint(base_cfg), **{field: value}))
        moved = run_study(workspace, store, parse(study_text(model, name=f"moved-{field}", extra="seed = 0\n")),
                          start=False)
        assert moved.reused_baselines == [], field


def test_a_refused_cell_records_nothing(workspace, store, model):
    with pytest.raises(StudyError, match=r"study.models \(cell 1: vanilla\)"):
        run_study(workspace, store, parse(study_text(str(workspace / "no-such-model"))), start=False)
    assert store.runs.count() == 0 and store.studies.list() == []
    with pytest.raises(StudyError, match=r"run.data_dir"):
        parse(study_text(model, extra=f'data_dir = "{workspace / "missing"}"\n'))
    assert store.runs.count() == 0


def test_the_cli_refuses_an_unknown_key_in_one_line_and_queues_nothing(cli, workspace, model, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(study_text(model).replace("limit = 4", "limt = 4"))
    proc = cli("study", "run", str(f))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "greentui: error: run.limt: unknown key; did you mean limit? (a study key is a run setting: see "
        "greentui queue --help)"]
    assert not (workspace / "greentui.db").exists() or Store(workspace / "greentui.db").runs.count() == 0


def test_dry_run_shows_cells_and_planned_sizes_and_queues_nothing(cli, workspace, model, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(study_text(model))
    proc = cli("study", "run", str(f), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "dry run: nothing queued" in out and "5 of 5 cells would be queued (1 shared vanilla baseline)" in out
    for label in ("vanilla", "taylor 1/7", "taylor 2/7", "l1 1/7", "l1 2/7"):
        assert label in out
    from backend.stages.pruning.plan import plan, read_spec
    from backend.stages.pruning.spec import PruneConfig
    spec, _ = read_spec(model)
    after = plan(spec, PruneConfig(ratio=2 / 7, ignore_first=1, ignore_last=1))["params_after"]
    from backend.results.fmt import params
    assert params(after) in out
    assert not (workspace / "greentui.db").exists()


def test_the_greenpruning_preset_plans_offline_beside_the_papers_sizes(cli, workspace):
    """The study's seven models (the registry's one list), planned from their shipped config.json
    files with no hub and no weights, each beside the size the paper prints."""
    from backend.results.fmt import params
    from backend.schema.study_models import STUDY_MODELS
    from backend.service.studies import load_study, plan_study
    proc = cli("study", "run", "--preset", "greenpruning", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "14 of 14 cells would be queued (7 shared vanilla baselines)" in proc.stdout
    plan = plan_study(None, load_study(preset="greenpruning"))
    pruned = {cp.cell.model: cp for cp in plan.cells if not cp.cell.baseline}
    assert list(pruned) == [m.hf_id for m in STUDY_MODELS]
    for m in STUDY_MODELS:
        cp = pruned[m.hf_id]
        assert cp.params_before == m.params and cp.plan_note == "shipped config"
        assert cp.cell.config.prune_ratio == 2 / 7 and (cp.cell.config.ignore_first, cp.cell.config.ignore_last) == (4, 4)
        row = next(line for line in proc.stdout.splitlines() if m.hf_id in line and "pruned" in line)
        assert params(cp.params_after) in row and f"{m.paper_pruned_params / 1e9:.1f}B" in row
    assert params(pruned["meta-llama/Llama-3.1-8B"].params_after) == "6.42B"


# ------------------------------------------------------------------------------ the answer

def _fill(store, run_id, variant, accs, whs, *, se=0.01, tokens=1000, items=10):
    store.results.save_task_results(run_id, [
        {"variant": variant, "task": t, "acc": a, "acc_stderr": se, "energy_kwh": w / 1000, "tokens": tokens,
         "n_samples": items, "meter": "codecarbon (estimate)"} for t, a, w in zip(TASKS, accs, whs)])
    store.runs.finish(run_id, "done")


@pytest.fixture
def known(workspace, store, model):
    """The 2×2 study with known results: vanilla avg acc .65 and 0.010 Wh per task; cells
    taylor 1/7 (.645, .009), taylor 2/7 (.61, .007), l1 1/7 (.64, .0085), l1 2/7 (.51, .011)."""
    base, t17, t27, l17, l27 = run_study(workspace, store, parse(study_text(model)), start=False).queued
    _fill(store, base, "vanilla", [0.60, 0.70], [0.010, 0.010])
    figures = {t17: ([0.63, 0.66], [0.009, 0.009]), t27: ([0.60, 0.62], [0.007, 0.007]),
               l17: ([0.63, 0.65], [0.0085, 0.0085]), l27: ([0.50, 0.52], [0.011, 0.011])}
    for rid, (accs, whs) in figures.items():
        store.runs.update(rid, parent_run_id=base)
        _fill(store, rid, "pruned", accs, whs)
        store.results.save_metric(rid, "pruned", "prune_energy_kwh", 1e-6)
        store.results.save_metric(rid, "pruned", "lora_energy_kwh", 2e-6)
    store.results.save_efficiency(l17, "vanilla", [{"batch_size": b, "j_per_token": j} for b, j in
                                                   ((1, 0.1), (8, 0.05), (32, 0.02))])
    store.results.save_efficiency(l17, "pruned", [{"batch_size": b, "j_per_token": j} for b, j in
                                                  ((1, 0.12), (8, 0.045), (32, 0.018))])
    return base, t17, t27, l17, l27


def test_the_energy_optimal_cell_under_the_floor_and_each_cells_distance(store, known):
    base, t17, t27, l17, l27 = known
    ans = study_answer(store, "grid")
    m = ans.models[0]
    assert m.floor == pytest.approx(0.95 * 0.65)
    by = {c.run_id: c for c in m.cells}
    assert m.optimal == by[l17].cell and "l1 1/7" in m.verdict
    assert [by[i].qualifies for i in (t17, t27, l17, l27)] == [True, False, True, False]
    assert by[t27].floor_gap == pytest.approx(0.6175 - 0.61)
    assert by[t17].vs_optimal == pytest.approx(0.009 / 0.0085)
    assert by[l17].acc_ratio.value == pytest.approx(0.64 / 0.65)
    assert by[l17].acc_ratio.lo < by[l17].acc_ratio.value < by[l17].acc_ratio.hi
    assert by[l17].wh_ratio.text() == "0.850 (n=1)"  # one energy pass: no interval, and it says so
    stricter = study_answer(store, "grid", accuracy_floor=1.0).models[0]
    assert stricter.optimal is None
    assert stricter.verdict.startswith("none qualifies") and "taylor 1/7, 0.005 short" in stricter.verdict


def test_break_even_and_crossover_on_known_results(store, known):
    base, t17, t27, l17, l27 = known
    by = {c.run_id: c for c in study_answer(store, "grid").models[0].cells}
    cost = by[l17].cost
    assert cost.cost_wh == pytest.approx(0.003)
    # vanilla 0.036 J/token, pruned 0.0306: 0.0054 J saved per token pays 10.8 J back after 2000 tokens
    assert cost.saved_j_per_token == pytest.approx(0.0054)
    assert cost.break_even_tokens == pytest.approx(2000)
    assert cost.break_even_requests == pytest.approx(20)
    assert by[l27].cost.break_even_tokens is None and "never pays back" in by[l27].cost.text()
    assert by[l17].crossover.batch == 8 and "from batch 8" in by[l17].crossover.text()
    assert by[t17].crossover is None


def test_the_pareto_front_counts_dominance_beyond_noise(store, known):
    base, t17, t27, l17, l27 = known
    ans = study_answer(store, "grid")
    cell = {c.run_id: c.cell for c in ans.models[0].cells}
    model = ans.models[0].model
    assert set(ans.pareto_wh) == {(model, cell[t27]), (model, cell[l17])}


def test_study_show_json_and_markdown(cli, store, known):
    proc = cli("study", "show", "grid", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["cells"] == 5 and doc["cells_done"] == 5 and len(doc["models"][0]["cells"]) == 4
    md = cli("study", "show", "grid").stdout
    assert "## The answer" in md and "Table 1" in md and "Table 2" in md
    assert "0.850 (n=1)" in md
    with pytest.raises(GreentuiError, match="no study named 'nope'"):
        store.studies.require("nope")


# ------------------------------------------------------------------------------ the report

@pytest.mark.slow  # matplotlib figures: ~1.5 s
def test_study_report_writes_markdown_svg_png_csv_and_latex(cli, workspace, store, known, tmp_path):
    import csv
    import xml.etree.ElementTree as ET

    from PIL import Image
    out = tmp_path / "report"
    proc = cli("study", "report", "grid", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = {Path(p).relative_to(out).as_posix() for p in proc.stdout.split()}
    model_name = Path(store.runs.get(known[0])["model_ref"]).name
    for stem in (f"radar-{model_name}", "bars-accuracy", "bars-energy", "pareto-wh", "pareto-jpt"):
        assert {f"figures/{stem}.svg", f"figures/{stem}.png"} <= written
        root = ET.parse(out / "figures" / f"{stem}.svg").getroot()
        assert root.tag.endswith("svg")
        with Image.open(out / "figures" / f"{stem}.png") as img:
            img.verify()
        with Image.open(out / "figures" / f"{stem}.png") as img:
            assert img.format == "PNG" and img.size[0] > 300
    md = (out / "report.md").read_text()
    assert f"![radar-{model_name}](figures/radar-{model_name}.svg)" in md
    assert "## Measurement quality" in md and "## Provenance" in md and "[study]" in md
    for table in ("table1-accuracy", "table2-energy"):
        rows = list(csv.DictReader((out / "tables" / f"{table}.csv").open()))
        assert [r["Cell"] for r in rows] == ["vanilla", "2: taylor 1/7", "3: taylor 2/7", "4: l1 1/7", "5: l1 2/7"]
        tex = (out / "tables" / f"{table}.tex").read_text()
        assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\\") >= 6
        for label in ("taylor 1/7", "taylor 2/7", "l1 1/7", "l1 2/7"):
            assert label in md and label in tex
    answer = json.loads((out / "answer.json").read_text())
    assert answer["models"][0]["optimal_cell"] == 4


def test_a_report_of_a_study_without_results_says_so(cli, workspace, store, model, tmp_path):
    run_study(workspace, store, parse(study_text(model)), start=False)
    proc = cli("study", "report", "grid", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "has no finished results yet" in proc.stderr
    proc = cli("study", "report", "nope", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "no study named 'nope'" in proc.stderr


def test_a_report_never_writes_into_a_run_folder_or_a_folder_of_other_files(cli, workspace, store, known, tmp_path):
    run_folder = workspace / f"run-{known[1]:05d}"
    run_folder.mkdir(exist_ok=True)
    proc = cli("study", "report", "grid", "--out", str(run_folder / "report"))
    assert proc.returncode == 2 and "inside the run folder" in proc.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    proc = cli("study", "report", "grid", "--out", str(busy))
    assert proc.returncode == 2 and "holds other files (no report.md); pass --force" in proc.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


@pytest.mark.slow  # fast-tier budget; the report itself: the other report tests in this file (fast)
def test_the_report_sets_an_imported_papers_rows_beside_the_reproduction(cli, workspace, store, known, tmp_path):
    table = tmp_path / "paper.csv"
    table.write_text("model,variant,BoolQ,PIQA\nSix-Layers,vanilla,61.0,71.0\nSix-Layers,pruned,58.0,69.0\n")
    proc = cli("import", "--table", str(table), "--metric", "acc", "--source", "Paper T1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    assert cli("study", "report", "grid", "--out", str(out)).returncode == 0
    import csv
    rows = list(csv.DictReader((out / "tables" / "table1-accuracy.csv").open()))
    paper = [r for r in rows if r["Cell"].startswith("paper:")]
    assert [(r["Cell"], r["BoolQ"], r["PIQA"]) for r in paper] == [("paper: vanilla", "0.610", "0.710"),
                                                                   ("paper: pruned", "0.580", "0.690")]
    assert paper[1]["Ratio (95 % CI)"].startswith("0.962")
    assert rows.index(paper[0]) < next(i for i, r in enumerate(rows) if r["Cell"] == "vanilla")
