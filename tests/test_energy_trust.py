"""Issue #11: repeats with CI and CV, energy above idle, J/token, the efficiency stage, GPU hygiene
paths with NVML absent, the quality badge. Real lm-eval and CodeCarbon on a tiny model."""

from __future__ import annotations

import math

import pytest

from backend.errors import GreentuiError
from backend.measure.energy import EnergySession, Nvml, cooldown_gate
from backend.measure.energy.window import window_flags
from backend.measure.stats import spread, t975, within_noise
from backend.schema.tasks import bundled_data_dir

HAS_NVML = Nvml().available


@pytest.fixture(scope="module")
def tiny(demo_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    d = demo_model_dir("llama")
    return AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)


@pytest.mark.slow  # importing scipy.stats takes ~3 s
def test_t_quantiles_match_scipy():
    from scipy.stats import t

    for df in (1, 2, 3, 4, 9, 29, 30):
        assert t975(df) == pytest.approx(t.ppf(0.975, df), abs=6e-4)
    assert t975(200) == pytest.approx(1.96, abs=0.02)


def test_spread_ci_cv_and_noise_rule():
    s = spread([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == 2.0 and s.sd == pytest.approx(1.0)
    assert s.ci95 == pytest.approx(4.303 / math.sqrt(3)) and s.cv == pytest.approx(0.5)
    assert "±" in s.label(2) and "CV 50.0 %" in s.label(2)
    one = spread([5.0, None])
    assert one.n == 1 and one.ci95 is None and one.label(1) == "5.0 (n=1)"
    assert spread([None]) is None
    # within noise: same rule as accuracy, |Δ| <= 2·sqrt(se_a² + se_b²)
    a, b = spread([10.0, 10.2, 9.8]), spread([10.1, 9.9, 10.0])
    delta, band, noise = within_noise(a, b)
    assert noise and band == pytest.approx(2 * math.sqrt(a.se ** 2 + b.se ** 2))
    far = spread([20.0, 20.1, 19.9])
    assert within_noise(far, b)[2] is False
    assert within_noise(one, b) is None  # n=1 cannot say


def test_repeats_measure_each_task_n_times_accuracy_once(tiny, tmp_path):
    from backend.stages.evaluate import evaluate_model

    model, tok = tiny
    session = EnergySession(measure_power_secs=0.5)
    (row,) = evaluate_model(model, tok, "piqa", limit=2, data_dir=bundled_data_dir(), out_dir=tmp_path,
                            repeats=3, session=session)
    passes = row["repeats"]
    assert [p["repeat"] for p in passes] == [1, 2, 3]
    assert all(p["energy_kwh"] > 0 and p["seconds"] > 0 and p["tokens"] == row["tokens"] for p in passes)
    assert all(p["acc_identical"] for p in passes[1:])  # the same requests each pass
    assert row["energy_kwh"] == pytest.approx(sum(p["energy_kwh"] for p in passes) / 3)
    assert row["seconds"] == pytest.approx(sum(p["seconds"] for p in passes) / 3)
    assert row["provenance"]["repeats"] == 3
    # one tracker for the run, through CodeCarbon's task API
    assert passes[0]["provenance"]["tracker"] == "one per run (task API)"
    if not HAS_NVML:  # nothing faked: no counter, no GPU state, CUDA sync only if CUDA ran
        assert row["nvml_joules"] is None and "gpu_state" not in passes[0]["provenance"]
        assert "short_window" not in passes[0]["provenance"]
    with pytest.raises(GreentuiError, match="--repeats"):
        evaluate_model(model, tok, "piqa", limit=2, out_dir=tmp_path, repeats=0)


def test_hygiene_paths_without_nvml():
    # a window below 1 s is flagged only when it was taken on the NVML counter
    assert "short_window" in window_flags(0.4, on_counter=True, synced=True)
    assert "short_window" not in window_flags(0.4, on_counter=False, synced=False)
    assert "short_window" not in window_flags(1.5, on_counter=True, synced=True)
    gate = cooldown_gate(60.0, max_s=5, poll_s=0.1)
    if not HAS_NVML:
        assert gate["waited_s"] == 0.0 and "NVML" in gate["skipped"]  # no wait, and it says why
    assert cooldown_gate(None, use_nvml=False)["skipped"] == "NVML not in use"


@pytest.mark.slow
def test_efficiency_points_tokens_per_s_and_j_per_token(tiny):
    import copy

    from backend.stages.efficiency import measure_efficiency
    from backend.stages.prune import PruneConfig, prune_model

    model, tok = tiny
    session = EnergySession(measure_power_secs=0.5).prepare()
    pruned = copy.deepcopy(model)
    prune_model(pruned, tok, PruneConfig(method="l2", ratio=0.5, ignore_first=0, ignore_last=0, round_to=1))
    points = {}
    for name, m in (("vanilla", model), ("pruned", pruned)):
        points[name] = measure_efficiency(m, tok, [1, 4], seq_len=32, session=session, min_window_s=0.2,
                                          variant=name)
    for name, rows in points.items():
        assert [r["batch_size"] for r in rows] == [1, 4]
        for r in rows:
            assert r["tokens"] == r["forwards"] * r["batch_size"] * 32 and r["seconds"] >= 0.2
            assert r["tokens_per_s"] > 0 and r["j_per_token"] > 0 and r["meter"]
            assert r["window"]["window_s"] >= 0.2
    assert points["pruned"][0]["params"] < points["vanilla"][0]["params"]
    assert points["pruned"][0]["flops_per_token"] < points["vanilla"][0]["flops_per_token"]


def test_store_keeps_each_pass_and_the_badge_reads_them(tmp_path):
    from backend.measure.trust import quality_badge, task_energy
    from backend.store import Store

    s = Store(tmp_path / "g.db")
    a = s.runs.create(None, "baseline", {"no_prune": True}, status="running", device="cpu")
    b = s.runs.create(None, "experiment", {}, status="running", device="cpu")   # overlaps a on cpu
    s.results.save_metric(a, "run", "idle_power_w", 10.0, {"source": "codecarbon-estimate"})
    passes = [{"repeat": k, "seconds": 2.0 + k / 10, "tokens": 100, "energy_kwh": 1e-5 * (1 + k / 100),
               "meter": "cpu-time-estimate+codecarbon:cpu_load-estimate+ram-estimate",
               "provenance": {"window_s": 2.0, "machine_load": {"other_cores": 0.5 * k, "cores": 2}}}
              for k in (1, 2, 3)]
    row = {"acc": 0.5, "n_samples": 4, "seconds": 2.2, "tokens": 100, "energy_kwh": 1.02e-5,
           "meter": passes[0]["meter"], "repeats": passes}
    s.results.save_task_result(a, "vanilla", "piqa", row)
    assert [p["repeat"] for p in s.results.energy_repeats(a)] == [1, 2, 3]
    assert s.results.energy_repeats(a)[0]["detail"]["provenance"]["window_s"] == 2.0
    te = task_energy(s, a, "vanilla")["piqa"]
    assert te.repeats == 3 and te.wh_spread.n == 3 and te.wh_spread.ci95 > 0 and 0 < te.wh_spread.cv < 0.02
    assert te.j_per_token == pytest.approx(1.02e-5 * 3.6e6 / 100)
    assert te.j_per_correct == pytest.approx(1.02e-5 * 3.6e6 / 2)
    assert te.above_idle_wh == pytest.approx(1.02e-2 - 10.0 * 2.2 / 3600)
    badge = quality_badge(s, a)
    assert badge.meter == "estimate" and badge.repeats == 3 and badge.shortest_window_s == pytest.approx(2.1)
    assert badge.idle_w == 10.0 and badge.temp_drift_c is None and badge.shared_device == [b]
    assert "shared with run #" in badge.label() and "n/a (no NVML)" in badge.label()
    # the machine's other load beside the windows (recorded per window) is in the badge
    assert badge.label().endswith("other load ≤1.5 cores (mean 1.0) of 2")
    s.results.save_task_result(a, "vanilla", "piqa", dict(row, repeats=passes[:2]))  # a rerun replaces the passes
    assert len(s.results.energy_repeats(a)) == 2
    s.runs.finish(a, "done")
    s.runs.finish(b, "done")
    assert s.runs.delete([a]) == 1 and s.results.energy_repeats(a) == []


@pytest.mark.slow
def test_repeats_and_efficiency_through_the_cli(workspace, demo_model_dir, capsys):
    """The issue's acceptance: a --repeats 3 run stores 3 passes per task and shows CI and CV; the
    efficiency stage gives tokens/s and J/token of both variants at each batch size; Table 3."""
    from backend.cli.main import main
    from backend.store import open_store

    model = str(demo_model_dir("llama"))
    assert main(["run", model, "--tasks", "piqa", "--limit", "2", "--data-dir", str(bundled_data_dir()),
                 "--ppl-limit", "0", "--lora-steps", "1", "--repeats", "3", "--energy-design", "sequential",
                 "--efficiency-batches", "1,2", "--efficiency-seq-len", "16"]) == 0
    capsys.readouterr()
    with open_store(workspace) as s:
        exp = next(r for r in s.runs.list() if r["kind"] == "experiment")
        base = exp["parent_run_id"]
        for rid, variant in ((exp["id"], "pruned"), (base, "vanilla")):
            assert [p["repeat"] for p in s.results.energy_repeats(rid, variant)] == [1, 2, 3]
        points = s.results.efficiency(exp["id"])
        assert sorted((p["variant"], p["batch_size"]) for p in points) == [
            ("pruned", 1), ("pruned", 2), ("vanilla", 1), ("vanilla", 2)]
        assert all(p["tokens_per_s"] > 0 and p["j_per_token"] > 0 for p in points)
    assert main(["show", str(exp["id"])]) == 0
    out = capsys.readouterr().out
    assert "95 % CI, CV" in out and "n=3" in out and "above idle" in out and "J/token" in out
    assert "within noise" in out or "beyond noise" in out
    assert main(["export", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "Table 3" in md and "Measurement quality" in md and "±" in md
