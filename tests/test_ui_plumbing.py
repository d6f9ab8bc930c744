"""Typed UI plumbing and the direction of imports: store changes arrive as a signal, a failing thread
worker ends as a notification (never a crash), the UI never imports the CLI. Pilot on a real store;
no mocks (a real subprocess times out, a real corrupt file is read)."""

from __future__ import annotations

import ast
import json
import struct
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable

from backend.store import Store
from backend.workspace import db_path
from greentui.app import GreentuiApp
from greentui.screens.runs import RunsScreen
from greentui.signals import StoreChange

REPO = Path(__file__).resolve().parent.parent
SIZE = (120, 40)


def notes(app: GreentuiApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def settle(app: GreentuiApp, pilot, rounds: int = 40) -> None:
    for _ in range(rounds):
        await pilot.pause(0.05)
        if not any(w.is_running for w in app.workers):
            break
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_demo_builder_timeout_is_a_notification_and_the_app_keeps_running(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws, manage_runner=False)
    app.DEMO_SHIPPED_MODEL = None  # a trimmed install: the random model is built in a subprocess…
    app.DEMO_BUILD_TIMEOUT_S = 0.05  # …that cannot finish in time
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        await settle(app, pilot, rounds=200)
        assert app.is_running and isinstance(app.screen, RunsScreen)
        assert any("timed out" in n for n in notes(app)), notes(app)
        assert app.demo_busy is False  # the key works again
        assert app.store.runs.count() == 0


async def test_corrupt_safetensors_header_on_models_screen_is_a_notification(tmp_path: Path, monkeypatch) -> None:
    """A model in the HF cache whose safetensors header is not JSON: described in a worker, it fails."""
    cache = tmp_path / "hub"
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--broken"
    snap = repo / "snapshots" / rev
    for d in (repo / "refs", snap, repo / "blobs"):
        d.mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    files = {"config.json": json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                        "num_hidden_layers": 2, "num_attention_heads": 4,
                                        "hidden_size": 64}).encode(),
             "model.safetensors": struct.pack("<Q", 64) + b"this is not a JSON header" + b"\0" * 64}
    for i, (name, data) in enumerate(files.items()):
        blob = repo / "blobs" / f"{i:040x}"
        blob.write_bytes(data)
        (snap / name).symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws, manage_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        keys = [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]
        assert "acme/broken" in keys
        table.move_cursor(row=keys.index("acme/broken"))
        await settle(app, pilot)
        assert app.is_running and app.screen.query_one(DataTable) is table
        assert any("not a readable safetensors file" in n for n in notes(app)), notes(app)  # one line, named
        await pilot.press("1")  # still a working app
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_store_changes_arrive_as_a_typed_signal(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    app = GreentuiApp(ws, manage_runner=False)
    got: list[StoreChange] = []
    async with app.run_test(size=SIZE) as pilot:
        app.store_changed.subscribe(app.screen, got.append, immediate=True)
        with Store(db_path(ws)) as other:  # another process's connection, like the runner's
            mid = other.models.upsert("org/m", name="org/m")
            other.runs.create(mid, "experiment", {"model": "org/m"}, status="queued")
        app.poll_store()
        await pilot.pause()
        assert got and got[-1].tables_changed and got[-1].token.runs == 1 and got[-1].token.models == 1
        assert app.screen.query_one(DataTable).row_count == 1  # the Runs screen reloaded on the signal


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_imports_point_from_the_ui_to_the_backend_only():
    for f in (REPO / "greentui").rglob("*.py"):
        bad = {m for m in _imports(f) if m.startswith(("backend.cli.commands", "backend.cli"))}
        assert not bad, f"{f.relative_to(REPO)} imports the CLI: {bad}"
    for f in (REPO / "backend").rglob("*.py"):
        ui = {m for m in _imports(f) if m.split(".")[0] == "greentui"}
        if f.relative_to(REPO) != Path("backend/cli/main.py"):  # the composition root opens the workbench
            assert not ui, f"{f.relative_to(REPO)} imports the UI: {ui}"


def test_a_fresh_ui_process_loads_neither_torch_nor_the_cli(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from greentui.app import GreentuiApp\n"
        "import greentui.screens.new_run, greentui.screens.run_detail, greentui.screens.compare\n"
        "import greentui.screens.models, greentui.screens.queue, greentui.screens.studies\n"
        "import greentui.screens.new_study\n"
        f"GreentuiApp(Path({str(tmp_path)!r}), manage_runner=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'lm_eval', 'peft',"
        " 'torch_pruning', 'codecarbon', 'datasets', 'matplotlib') or m.startswith(('backend.cli.commands', "
        "'backend.cli'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_one_list_each():
    from backend.results import report
    from backend.schema import catalog
    from backend.schema.tasks import TASK_LABELS
    from backend.stages import demo, models, prune
    from backend.stages.pruning import spec
    from greentui.widgets import bars
    assert demo.ARCHITECTURES is models.SUPPORTED_ARCHS is prune.SUPPORTED_ARCHITECTURES is catalog.ARCHITECTURES
    assert spec.METHODS is catalog.METHODS
    assert report.SHORT is bars.TASK_ABBREV is TASK_LABELS and TASK_LABELS["arc_challenge"] == "ARC-c"
