"""Energy meters: real CodeCarbon (offline) on this machine, NVML/RAPL paths where they exist."""

from __future__ import annotations

import time

import pytest

from backend.errors import GreentuiError
from backend.measure import energy
from backend.measure.energy import PowerSampler, Rapl, TaskEnergyMeter, idle_power, nvml

HAS_NVML = energy.Nvml().available
HAS_RAPL = Rapl().available


def _burn(seconds: float) -> int:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += sum(range(1000))
    return x


@pytest.mark.slow  # a real CodeCarbon window; the fast tier meters windows through test_meters
def test_task_meter_on_this_machine(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    with TaskEnergyMeter(country="FRA", measure_power_secs=0.5) as meter:
        _burn(0.6)
    r = meter.result
    prov = r["provenance"]
    assert r["energy_kwh"] > 0
    assert r["energy_cpu_kwh"] > 0 and r["energy_ram_kwh"] > 0
    parts = [r[k] for k in ("energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh") if r[k] is not None]
    assert r["energy_kwh"] == pytest.approx(sum(parts))
    assert "codecarbon:" in r["meter"] and prov["meters"]["codecarbon"]["joules"] > 0  # the study's meter ran
    assert r["seconds"] >= 0.6
    assert prov["country"] == "FRA" and prov["tracking_mode"] == "process"
    assert "ram" in prov["estimated_parts"] and r["is_estimate"]
    assert prov["machine_load"]["own_cpu_s"] > 0.3 and prov["machine_load"]["cores"] >= 1
    if not (HAS_RAPL or HAS_NVML):
        # no counter here: the total is the CPU estimate charged from this process's own CPU time, and
        # CodeCarbon's load model is kept beside it, both named as estimates
        assert r["cpu_mode"] == "cpu_load" and prov["total_meter"] == "cpu-time"
        assert r["meter"] == "cpu-time-estimate+codecarbon:cpu_load-estimate+ram-estimate"
        assert r["energy_kwh"] * 3.6e6 == pytest.approx(prov["own_cpu_s"] * prov["w_per_cpu_second"])
    if not HAS_NVML:
        assert r["nvml_joules"] is None and "nvml" in prov["missing"]
    # quiet: no files in cwd, no codecarbon log lines
    assert list(tmp_path.iterdir()) == []
    assert "codecarbon" not in capfd.readouterr().err


@pytest.mark.slow  # fast-tier budget; the default meter path: the other tests in this file (fast)
def test_machine_mode_is_selectable():
    with TaskEnergyMeter(tracking_mode="machine", measure_power_secs=0.5) as meter:
        _burn(0.2)
    assert meter.result["energy_kwh"] > 0
    assert meter.result["provenance"]["tracking_mode"] == "machine"
    with pytest.raises(ValueError):
        TaskEnergyMeter(tracking_mode="socket")


def test_bad_country_is_a_user_error():
    with pytest.raises(GreentuiError, match="3-letter"):
        TaskEnergyMeter(country="France")


def test_meter_failure_is_recorded_not_raised(monkeypatch):
    from backend.measure.energy.codecarbon_meter import CodeCarbonMeter

    def broken(self, window):
        raise RuntimeError("no hardware detected")

    monkeypatch.setattr(CodeCarbonMeter, "make_tracker", broken)
    ran = []
    with TaskEnergyMeter() as meter:
        ran.append(True)
    r = meter.result
    assert ran == [True]
    assert "no hardware detected" in r["provenance"]["missing"]["codecarbon"]
    assert "codecarbon" not in (r["meter"] or "")  # the other meters still give the figure
    assert r["provenance"]["meters"]["codecarbon"]["joules"] is None


def test_meter_result_exists_when_body_raises():
    with pytest.raises(KeyError):
        with TaskEnergyMeter(measure_power_secs=0.5) as meter:
            raise KeyError("boom")
    assert meter.result is not None and meter.result["energy_kwh"] is not None


def test_power_sampler_emits_labelled_samples():
    samples = []
    with PowerSampler(lambda t, w, src, lim: samples.append((t, w, src, lim)), interval=0.2) as s:
        deadline = time.monotonic() + 15   # the first start detects the CPU (~2 s, slower under load)
        while len(samples) < 3 and time.monotonic() < deadline:
            _burn(0.05)
            time.sleep(0.05)
    assert len(samples) >= 3
    t, w, src, lim = samples[-1]
    assert abs(t - time.time()) < 5 and w > 0
    expected = "nvml" if HAS_NVML else "rapl" if HAS_RAPL else "cpu-time"
    assert {x[2] for x in samples} == {expected} and s.source == expected
    if expected == "cpu-time":
        assert lim is None
    assert s._thread is None  # stopped and joined


def test_power_sampler_survives_a_failing_callback():
    calls = []

    def bad(*args):
        calls.append(args)
        raise ValueError("UI gone")

    s = PowerSampler(bad, interval=0.1).start()
    deadline = time.monotonic() + 15
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    s.stop()
    assert len(calls) >= 2 and s.errors == len(calls) and "UI gone" in s.last_error


def test_idle_power():
    idle = idle_power(0.5, interval=0.1)
    assert idle["watts"] >= 0 and idle["samples"] >= 3
    if not (HAS_NVML or HAS_RAPL):
        # the CPU-time estimate has no idle floor: a sleeping process draws (almost) nothing
        assert idle["source"] == "cpu-time" and idle["is_estimate"] and idle["watts"] < 2.0


def test_rapl_counter_deltas_and_wraparound(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("5000000\n")
    sub = tmp_path / "intel-rapl:0:0"  # a sub-domain (core) must not be double counted
    sub.mkdir()
    (sub / "energy_uj").write_text("7\n")
    (sub / "max_energy_range_uj").write_text("9\n")
    rapl = Rapl(tmp_path)
    assert rapl.available and len(rapl.files) == 1
    before = rapl.read_uj()
    (zone / "energy_uj").write_text("3500000\n")
    assert rapl.delta_j(before, rapl.read_uj()) == pytest.approx(2.5)
    assert rapl.delta_j([4_500_000], [500_000]) == pytest.approx(1.0)  # wrapped
    assert not Rapl(tmp_path / "none").available


def test_visible_gpu_mapping_follows_cuda_visible_devices(monkeypatch):
    uuids = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
    monkeypatch.setattr(nvml, "torch_cuda", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvml._visible_nvml_indices(uuids) == [0, 1, 2]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert nvml._visible_nvml_indices(uuids) == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bb")
    assert nvml._visible_nvml_indices(uuids) == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")  # CUDA stops at the first invalid ordinal
    assert nvml._visible_nvml_indices(uuids) == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert nvml._visible_nvml_indices(uuids) == []


@pytest.mark.skipif(not HAS_NVML, reason="needs an NVIDIA GPU with NVML")
def test_nvml_counter_on_gpu():
    import torch

    x = torch.randn(4096, 4096, device="cuda")
    with TaskEnergyMeter(measure_power_secs=0.5) as meter:
        for _ in range(50):
            x = x @ x
            x = x / x.norm()
    r = meter.result
    assert r["nvml_joules"] is not None and r["nvml_joules"] > 0
    assert r["meter"].startswith("nvml+codecarbon:") and "gpu-nvml" in r["meter"]
    assert r["energy_gpu_kwh"] > 0
