"""Issue #18, the measurement side: the paired protocol's stopping rule, its designs, the windows it stores,
baseline reuse only under the same fingerprint, and the acceptance test (the same experiment three times ->
three energy-ratio intervals that overlap pairwise)."""

from __future__ import annotations

import json
import math
import time

import pytest

from backend.measure.stats import paired_ratio_interval, t975
from backend.schema.runconfig import RunConfig
from backend.schema.tasks import bundled_data_dir
from backend.stages.paired import choose_design
from backend.store import Store

GIB = 1024 ** 3


def test_paired_ratio_interval_is_the_t_interval_of_the_mean_log_ratio():
    pairs = [(1.0, 0.90), (2.0, 1.90), (1.0, 0.85), (4.0, 3.70)]
    logs = [math.log(b / a) for a, b in pairs]
    m = sum(logs) / 4
    sd = math.sqrt(sum((x - m) ** 2 for x in logs) / 3)
    ci = paired_ratio_interval(pairs)
    assert ci.n == 4 and ci.ratio == pytest.approx(math.exp(m))
    assert ci.low == pytest.approx(math.exp(m - t975(3) * sd / 2))
    assert ci.high == pytest.approx(math.exp(m + t975(3) * sd / 2))
    assert ci.half_width == pytest.approx((ci.high - ci.low) / 2 / ci.ratio)
    swapped = paired_ratio_interval([(b, a) for a, b in pairs])  # B/A and A/B are each other's reciprocals
    assert swapped.low == pytest.approx(1 / ci.high) and swapped.high == pytest.approx(1 / ci.low)
    one = paired_ratio_interval([(1.0, 0.5), (None, 1.0), (0.0, 1.0)])  # unusable pairs are left out
    assert (one.n, one.ratio, one.low, one.half_width) == (1, 0.5, None, None)
    assert paired_ratio_interval([]) is None


def test_the_design_follows_the_memory_estimate():
    assert choose_design("paired", GIB, 4 * GIB, 64 * GIB)[0] == "paired"
    design, why = choose_design("paired", 16 * GIB, 7 * GIB, 128 * GIB)  # 8B bf16 loaded, 7 of 24 GB left
    assert design == "blocked" and "do not fit together" in why
    assert choose_design("blocked", GIB, 80 * GIB, 64 * GIB)[0] == "blocked"  # asked for
    assert choose_design("paired", 16 * GIB, 8 * GIB, 8 * GIB)[0] == "sequential"


def test_repeats_auto_and_the_design_are_run_settings():
    from backend.schema.runconfig import SETTING
    cfg = RunConfig(model="m")
    assert (cfg.repeats, cfg.energy_design, cfg.paired_energy(), cfg.fixed_repeats()) == ("auto", "paired", True, None)
    assert SETTING["repeats"].from_text("Auto") == "auto" and SETTING["repeats"].from_text("4") == 4
    assert RunConfig(model="m", repeats=4).vanilla_passes() == 1  # the paired windows carry the repeats
    assert RunConfig(model="m", repeats=4, energy_design="sequential").vanilla_passes() == 4
    assert not RunConfig(model="m", measure_energy=False).paired_energy()
    assert RunConfig(model="m", repeats="often").problems()["repeats"].startswith("repeats must be 'auto'")


def _baseline(s: Store, mid: int, key: str, fp: dict | None, finished_ago: float = 0.0) -> int:
    rid = s.runs.create(mid, "baseline", RunConfig(model="x", no_prune=True).to_dict(), status="running",
                        baseline_key=key)
    s.results.save_task_result(rid, "vanilla", "piqa", {"acc": 0.5, "n_samples": 10, "energy_kwh": 1e-5})
    if fp is not None:
        s.results.save_metric(rid, "run", "fingerprint", None, fp)
    s.runs.finish(rid, "done")
    s.conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time() - finished_ago, rid))
    return rid


def test_the_vanilla_energy_a_paired_run_measured_itself_has_its_per_task_figures(tmp_path):
    """Under the paired protocol the run's vanilla energy lives only in its own windows (its accuracy is
    the baseline run's): Compare's Energy tab and the exports showed "—" for Wh, J/token and J/correct of
    that vanilla row. They are the windows' means, with the baseline's accuracy for J/correct."""
    from backend.measure.trust import averages, energy_noise, task_energy
    s = Store(tmp_path / "greentui.db")
    mid = s.models.upsert("/m")
    base = _baseline(s, mid, "k", None)
    run = s.runs.create(mid, "experiment", RunConfig(model="/m").to_dict(), parent_run_id=base)
    s.results.save_task_result(run, "pruned", "piqa", {"acc": 0.4, "n_samples": 10, "energy_kwh": 2e-6,
                                                       "seconds": 1.0, "tokens": 500})
    s.results.save_energy_windows(run, "piqa", [
        {"variant": v, "repeat": i, "energy_kwh": e * 1e-6, "seconds": e / 2, "tokens": 500, "meter": "cpu-time"}
        for i, (v, e) in enumerate([("vanilla", 4.0), ("pruned", 2.0), ("pruned", 2.2), ("vanilla", 3.6)], 1)])
    vanilla = task_energy(s, run, "vanilla")["piqa"]
    assert vanilla.wh == pytest.approx(3.8e-3) and vanilla.seconds == pytest.approx(1.9)
    assert vanilla.j_per_token == pytest.approx(3.8e-3 * 3600 / 500)
    assert vanilla.j_per_correct == pytest.approx(3.8e-3 * 3600 / (0.5 * 10))  # the baseline's accuracy
    assert vanilla.repeats == 2 and averages({"piqa": vanilla})["wh"] == pytest.approx(3.8e-3)
    pruned = task_energy(s, run, "pruned")
    assert [n["task"] for n in energy_noise(pruned, {"piqa": vanilla})] == ["piqa"]
    # `show`'s energy Δ is against the run's own vanilla windows (n=2 a side), not its baseline's one pass
    from backend.results.run_energy import run_energy_doc
    doc = run_energy_doc(s, s.runs.get(run))
    (noise,) = doc["energy_noise"]
    assert noise["delta_wh"] == pytest.approx(2.1e-3 - 3.8e-3) and noise["verdict"] != "needs --repeats ≥ 2"
    assert doc["energy"]["vanilla"]["avg"]["wh"] == pytest.approx(3.8e-3)
    s.close()


def test_a_baseline_under_another_fingerprint_or_too_old_is_not_reused(tmp_path):
    """Two recorded fingerprints in a real store: the run's own machine reuses only its own baseline."""
    from backend.measure.machine import FINGERPRINT_FIELDS  # fingerprint() itself imports torch: 2 s
    here = dict({f: None for f in FINGERPRINT_FIELDS}, cpu="AMD EPYC 7B13", node="login-1", torch="2.13.0",
                data="d1", seed=0)
    other_gpu = dict(here, gpu=["NVIDIA A100-SXM4-80GB"], gpu_count=1, driver="550.54", node="gpu-07")
    with Store(tmp_path / "greentui.db") as s:
        mid = s.models.upsert("x")
        key = RunConfig(model="x").baseline_key("x", "cpu")
        elsewhere = _baseline(s, mid, key, other_gpu)
        why: list[str] = []
        assert s.results.find_baseline(key, ["piqa"], fingerprint=here, why_not=why) is None
        assert why == [f"run {elsewhere}: driver, gpu, gpu_count, node differ"]
        assert s.results.find_baseline(key, ["piqa"], fingerprint=dict(here, torch="0.0")) is None
        mine = _baseline(s, mid, key, here)
        elsewhere2 = _baseline(s, mid, key, other_gpu)  # newer, but measured elsewhere
        assert s.results.find_baseline(key, ["piqa"], fingerprint=here)["id"] == mine
        assert s.results.find_baseline(key, ["piqa"])["id"] == elsewhere2  # the key alone would take it
        assert s.results.find_baseline(key, ["piqa"], fingerprint=dict(here, data="d2")) is None  # other items
        old = _baseline(s, mid, key, here, finished_ago=8 * 86400)
        s.conn.execute("UPDATE runs SET finished_at = 0 WHERE id = ?", (mine,))  # both older than 7 days
        why = []
        assert s.results.find_baseline(key, ["piqa"], fingerprint=here, max_age_s=7 * 86400, why_not=why) is None
        assert f"run {old}: older than 7 days" in why
        legacy = _baseline(s, mid, key, None)  # recorded before fingerprints: never reused under the rule
        assert s.results.find_baseline(key, ["piqa"], fingerprint=here)["id"] != legacy


@pytest.mark.slow  # ~20 s: a paired and a blocked measurement of two tasks on the tiny model
def test_paired_meter_windows_orders_and_the_blocked_design(demo_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.measure.energy import EnergySession
    from backend.stages.evaluate import counting_lm, evaluate_model
    from backend.stages.paired import PairedMeter, copy_model

    torch.set_num_threads(1)
    d = demo_model_dir("llama")
    vanilla, tok = AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    pruned = copy_model(vanilla)
    with torch.no_grad():  # a "pruned" model that does measurably less: half its layers
        pruned.model.layers = pruned.model.layers[:3]
        pruned.config.num_hidden_layers = 3
    captured = {}
    session = EnergySession().prepare()
    rows = list(evaluate_model(pruned, tok, ["piqa", "arc_easy"], data_dir=bundled_data_dir(), limit=4,
                               out_dir=tmp_path, session=session, on_requests=captured.__setitem__))
    assert [r["task"] for r in rows] == ["piqa", "arc_easy"]
    assert len(captured["piqa"]) == 8 and len(captured["arc_easy"]) == 16  # 2 and 4 choices per item

    meter = PairedMeter(vanilla, pruned, lm_of=lambda m: counting_lm(m, tok, 8, "cpu"), session=session,
                        device="cpu", design="paired", window_s=0.05, sample=6)
    got = meter.measure_task("arc_easy", captured["arc_easy"], repeats=3, ci_target=0.03, max_repeats=10,
                             budget_s=60)
    assert [(w["variant"][0], w["repeat"]) for w in got.windows] == [
        ("v", 1), ("p", 1), ("p", 2), ("v", 2), ("v", 3), ("p", 3)]
    assert [w["position"] for w in got.windows] == [1, 2, 3, 4, 5, 6]
    assert all(w["sample_n"] == 6 and w["scale"] == pytest.approx(16 / 6) and w["warmup_s"] > 0
               and w["energy_kwh"] > 0 and w["block"] is None for w in got.windows)
    ci = got.interval()
    assert ci.n == 3 and ci.low < ci.ratio < ci.high
    # both sides replay the very same requests (the same tokens); only the model differs
    assert {w["tokens"] for w in got.windows if w["variant"] == "vanilla"} == \
        {w["tokens"] for w in got.windows if w["variant"] == "pruned"}

    blocked = PairedMeter(vanilla, pruned, lm_of=lambda m: counting_lm(m, tok, 8, "cpu"), session=session,
                          device="cpu", design="blocked", window_s=0.05)
    got = blocked.measure_task("piqa", captured["piqa"], repeats=4, ci_target=0.03, max_repeats=10, budget_s=60)
    assert [(w["variant"][0], w["repeat"], w["block"]) for w in got.windows] == [
        ("v", 1, 1), ("v", 2, 1), ("p", 1, 2), ("p", 2, 2), ("p", 3, 3), ("p", 4, 3), ("v", 3, 4), ("v", 4, 4)]
    edges = [w for w in got.windows if w.get("probe_s") is not None]
    assert [w["block"] for w in edges] == [1, 2, 3, 4] and all(w["probe_s"] > 0 for w in edges)

    auto = PairedMeter(vanilla, pruned, lm_of=lambda m: counting_lm(m, tok, 8, "cpu"), session=session,
                       device="cpu", design="paired", window_s=0.05)
    got = auto.measure_task("piqa", captured["piqa"], repeats=None, ci_target=0.5, max_repeats=6, budget_s=60)
    assert 3 <= len(got.pairs()) <= 6 and got.stopped  # auto: at least 3 pairs, then the CI or the cap


@pytest.mark.slow  # three whole runs (~1 min each on a quiet 2-core machine)
def test_same_experiment_three_times_gives_overlapping_intervals(cli, workspace, demo_model_dir):
    """The issue's acceptance: the same experiment run three times on a small model on CPU gives three
    energy-ratio intervals (paired, per task) that overlap pairwise."""
    from backend.store import open_store
    model = str(demo_model_dir("llama"))
    runs = []
    for _ in range(3):
        proc = cli("run", model, "--tasks", "arc_easy", "--limit", "10", "--data-dir", str(bundled_data_dir()),
                   "--ppl-limit", "0", "--lora-steps", "1", "--repeats", "6", "--window-s", "0.3",
                   "--ignore-first", "0", "--ignore-last", "0")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(int(proc.stdout.strip().splitlines()[-1]))
    intervals = []
    with open_store(workspace) as s:
        for rid in runs:
            rows = s.results.energy_repeats(rid)
            by = {}
            for w in rows:
                by.setdefault(w["repeat"], {})[w["variant"]] = w["energy_kwh"]
            ci = paired_ratio_interval([(p["vanilla"], p["pruned"]) for _, p in sorted(by.items())])
            assert ci.n == 6 and ci.low is not None
            metric = next(m for m in s.results.metrics(rid) if m["name"] == "paired_energy_ratio:arc_easy")
            assert metric["value"] == pytest.approx(ci.ratio) and json.loads(metric["detail"])["n"] == 6
            intervals.append((ci.low, ci.high))
    for i in range(3):
        for j in range(i + 1, 3):
            (lo1, hi1), (lo2, hi2) = intervals[i], intervals[j]
            assert lo1 <= hi2 and lo2 <= hi1, intervals
