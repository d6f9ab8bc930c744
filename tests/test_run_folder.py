"""A run folder planted as a symlink before the run starts is refused, never followed (#22 2.6)."""

from __future__ import annotations

from backend.execution.events import EventSink
from backend.execution.pipeline import execute_run
from backend.schema.runconfig import RunConfig
from backend.store import open_store
from backend.workspace import run_dir


def test_a_symlinked_run_folder_fails_the_run_and_nothing_goes_through_it(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with open_store(workspace) as store:
        cfg = RunConfig(model=str(tmp_path / "some-model"), tasks=["boolq"], limit=1).to_dict()
        run_id = store.runs.create(None, "experiment", cfg, status="running")
        folder = run_dir(workspace, run_id)
        folder.symlink_to(elsewhere, target_is_directory=True)
        sink = EventSink(store, run_id, folder)           # what `greentui run` makes before the pipeline
        assert execute_run(store, workspace, run_id, sink, device="cpu") == "failed"
        run = store.runs.require(run_id)
        assert "is a symbolic link" in run["error"] and str(folder) in run["error"]
        assert any(e["kind"] == "error" for e in store.events.list(run_id))   # the store still has the story
    assert list(elsewhere.iterdir()) == []                 # no config.json, events.jsonl, model, log
    assert folder.is_symlink()
