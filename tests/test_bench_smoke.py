"""Keep bench/ from rotting: run it with tiny sizes. Benchmarks are not tests — nothing here asserts
a timing or a ratio, only that every figure is produced and the outputs are well formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")


def test_bench_run_quick_prints_all_figures(tmp_path: Path) -> None:
    results, js = tmp_path / "RESULTS.md", tmp_path / "rows.json"
    out = subprocess.run([sys.executable, "-m", "bench.run_all", "--quick", "--results", str(results),
                          "--json", str(js), "--work-dir", str(tmp_path / "work")],
                         cwd=REPO, capture_output=True, text=True, timeout=400, env=_env())
    assert out.returncode == 0, out.stderr[-4000:]
    figures = {row["figure"] for row in json.loads(js.read_text())["rows"]}
    assert {"P2", "P3", "P4", "P5", "FORM"} <= figures
    assert {f"P1{b}{k}" for b in "ab" for k in range(1, 6)} <= figures
    text = results.read_text()
    assert "bench/run --quick" in text and "| figure | A | B | ratio A/B |" in text
    assert "torch NOT imported" in out.stdout          # P2's check that the UI stays torch-free
    for line in out.stdout.splitlines():
        if line.startswith("| P"):
            assert line.count("|") == 7, line          # one row per figure, six columns


def test_gpu_bench_tiny_on_cpu(tmp_path: Path) -> None:
    js = tmp_path / "gpu.json"
    out = subprocess.run([sys.executable, "bench/gpu_bench.py", "--tiny", "--device", "cpu", "--batches", "1,2",
                          "--seq", "16", "--rounds", "2", "--window", "0.05", "--calib", "2x16",
                          "--json", str(js), "--no-append"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr[-4000:]
    data = json.loads(js.read_text())
    rows = data["rows"]
    assert {(r["variant"], r["batch"]) for r in rows} == {(v, b) for v in ("vanilla", "study", "uniform")
                                                          for b in (1, 2)}
    assert all(r["j_per_token"] is None for r in rows)  # no NVML on CPU: energy is n/a, never invented
    assert all(0 < r["param_ratio"] <= 1 for r in rows)
    study = [r for r in rows if r["variant"] == "study"][0]
    assert study["param_ratio"] < 1
    assert "n/a" in out.stdout
