"""Events of a run: written to the store (the TUI polls it) and to ``events.jsonl`` in the run folder.

Kinds: ``stage_start`` {stage, index, total}, ``progress`` {stage, fraction, message},
``stage_end`` {stage, seconds}, ``log`` {line}, ``loss`` {step, loss, ...}, ``result`` {variant, task,
acc, wh, meter}, ``error`` {message}, ``done`` {status}. Progress is throttled so a fast inner loop
cannot flood SQLite; stage boundaries and results are never dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.execution.sinks import RunRecorder, as_recorder
from backend.store import Store
from backend.workspace import ensure_real_folder

Listener = Callable[[str, dict[str, Any]], None]


class EventSink:
    """Fan one run's events out to the store, the JSONL file and in-process listeners (the CLI)."""

    def __init__(self, store: Store | RunRecorder, run_id: int, run_folder: Path, min_interval: float = 0.25):
        self.store = as_recorder(store)
        self.run_id = run_id
        #: the JSONL mirror of the events; None when the run folder is refused (a symlink): the
        #: events still reach the store, and the pipeline fails the run with the reason
        self.path: Path | None = run_folder / "events.jsonl"
        try:
            ensure_real_folder(run_folder)
        except GreentuiError:
            self.path = None
        self.listeners: list[Listener] = []
        self.min_interval = min_interval
        self._last_progress = 0.0
        self.stage: str | None = None
        #: called at every progress report (a safe point): the pipeline's cancel check raises there
        self.checkpoint: Callable[[], None] | None = None

    def emit(self, kind: str, **payload: Any) -> None:
        t = time.time()
        if kind == "progress":
            frac = payload.get("fraction", 0.0)
            if t - self._last_progress < self.min_interval and 0.0 < frac < 1.0:
                for fn in self.listeners:  # listeners are in-process and cheap: never throttled
                    fn(kind, payload)
                return
            self._last_progress = t
        self.store.add_event(self.run_id, kind, payload, t=t)
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps({"t": t, "kind": kind, **payload}, default=str) + "\n")
        for fn in self.listeners:
            fn(kind, payload)

    def log(self, line: str) -> None:
        self.emit("log", line=line)

    def progress_for(self, stage: str) -> Callable[[str, float], None]:
        """A ``progress(message, fraction)`` callback bound to one stage (what backend modules take)."""
        def progress(message: str, fraction: float) -> None:
            if self.checkpoint is not None:
                self.checkpoint()
            self.emit("progress", stage=stage, fraction=max(0.0, min(1.0, float(fraction))), message=message)
        return progress
