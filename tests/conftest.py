"""Shared fixtures: an isolated workspace, tiny demo models built once per session, CLI runners.

Every test runs offline (no hub) with caches inside pytest's tmp dirs, so nothing leaks into ~.

The fast tier's budget (``scripts/test``, 2 minutes on 2 cores) is kept by paying each expensive
thing once: the demo tokenizer is trained once per session (``_one_demo_tokenizer``), demo models are
built once per architecture (``demo_model_dir``), and CLI argument/error checks run in-process
(``cli``, ~ms) instead of in a fresh interpreter that imports torch (~5 s each). ``cli_subprocess``
is for the end-to-end tests in the slow tier, where the separate process is the point.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    os.environ["HF_HOME"] = str(cache)
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_demo_tokenizer():
    """Train the demo BPE tokenizer once per vocabulary size and hand out independent copies.

    Training on the shipped text takes seconds and gives the same tokenizer every time; tests build
    dozens of demo models. ``backend.stages.demo`` itself is imported only when a test builds a model.
    """
    import backend.stages.demo as demo

    real, trained = demo.build_tokenizer, {}

    def build_tokenizer(vocab_size: int):
        if vocab_size not in trained:
            trained[vocab_size] = real(vocab_size)
        return copy.deepcopy(trained[vocab_size])

    demo.build_tokenizer = build_tokenizer
    yield
    demo.build_tokenizer = real


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setenv("GREENTUI_HOME", str(ws))
    return ws


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """Factory: build (once per session) and return the directory of a tiny demo model of ``arch``
    (``attention="mha"``: the multi-head variant of its shape, kv heads == query heads)."""
    built: dict[tuple[str, int, str], Path] = {}

    def make(arch: str = "llama", seed: int = 0, attention: str = "gqa") -> Path:
        key = (arch, seed, attention)
        if key not in built:
            from backend.stages.demo import build_demo_model
            out = tmp_path_factory.mktemp(f"demo-{arch}-{seed}-{attention}")
            build_demo_model(out, arch=arch, size="tiny", seed=seed, overwrite=True, attention=attention)
            built[key] = out
        return built[key]

    return make


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m backend ARGS`` (the greentui console script) in a subprocess (slow tier)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=str(ROOT))
    if check and proc.returncode != 0:
        raise AssertionError(f"greentui {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli_subprocess():
    """The console script in its own interpreter: for end-to-end tests (kills, runners, imports)."""
    return run_cli


@pytest.fixture
def cli(capsys):
    """``greentui ARGS`` in this process (``backend.cli.main``): exit code, stdout and stderr.

    Returns a ``CompletedProcess`` like ``run_cli`` does, so a test can switch between the two.
    argparse's own errors (``SystemExit``) become the exit code, as in the console script.
    """
    def call(*args: str, check: bool = False, env: dict[str, str] | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
        from backend.cli.main import main

        del timeout  # accepted for run_cli compatibility; an in-process call cannot be killed
        capsys.readouterr()  # drop anything printed before this call
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        on_term = signal.getsignal(signal.SIGTERM)  # `run` installs its own handler
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            signal.signal(signal.SIGTERM, on_term)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        out = capsys.readouterr()
        proc = subprocess.CompletedProcess(["greentui", *args], code, out.out, out.err)
        if check and code != 0:
            raise AssertionError(f"greentui {' '.join(args)} failed ({code}):\n{out.err}")
        return proc

    return call


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` s."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def require_plugin(name: str) -> None:
    """Fail (never skip) when the test plugin ``tests/plugins/NAME`` is not installed: scripts/bootstrap
    installs every one, so a missing plugin is a broken set-up, not a reason to pass quietly."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(name)
    except PackageNotFoundError:
        pytest.fail(f"tests/plugins/{name} is not installed (scripts/bootstrap installs it: "
                    f"pip install -e tests/plugins/{name})")


def tiered(values, fast) -> list:
    """Parametrize values with all but ``fast`` in the slow tier.

    The fast tier keeps a representative case or two (e.g. Llama and Phi-3's fused projections) so
    every code path is exercised in minutes; CI's slow tier runs the whole matrix.
    """
    return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]


async def pause_until(pilot, predicate, timeout: float = 5.0, what: str = "the screen"):
    """The Pilot twin of ``wait_for``: let the app run until ``predicate()`` is truthy.

    One ``pilot.pause()`` is enough on a quiet machine but not on a loaded one (widgets mount over
    several refreshes), so tests that read freshly mounted widgets poll instead of pausing once.
    """
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------ CPU time per test
# On a shared machine wall times say little; the CPU a test burns (this process and the children
# it waited for) is what it will cost on a quiet 2-core machine. `pytest --cpu-durations=N` lists
# the N most expensive tests by CPU seconds, next to pytest's own --durations (wall).
_CPU: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="show the N tests that used the most CPU time (setup + call + teardown)")


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = _cpu_now()
    try:
        return (yield)
    finally:
        _CPU[item.nodeid] = _cpu_now() - start


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.getoption("--cpu-durations")
    if n is None or not _CPU:
        return
    tr = terminalreporter
    tr.section(f"CPU time per test (top {n or len(_CPU)}; all: {sum(_CPU.values()):.1f} s)")
    for nodeid, cpu in sorted(_CPU.items(), key=lambda kv: -kv[1])[: n or None]:
        tr.write_line(f"{cpu:7.2f}s cpu  {nodeid}")
