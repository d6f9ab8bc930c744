"""Child process of P2: start an app headless, report when its first frame was drawn, then quit.

``python bench/ui_probe.py greentui WORKSPACE`` runs the real ``greentui`` console entry point
(``backend.cli.main`` → argument parsing → ``GreentuiApp(...).run()``); ``python bench/ui_probe.py
bare`` runs a bare Textual app (Header, a Static, Footer). Both go through the same patched
``App.run``: headless, 160×48, and a handler of Textual's ``Ready`` event — which Textual posts "when
the DOM is ready and the first frame has been displayed" (the first compositor refresh of the first
screen). That is what "first frame" means here: for greentui, the Runs screen with its first page of
runs already queried from SQLite (it loads synchronously in ``on_mount``).

The parent stamps ``time.time()`` just before spawning, so the figure includes interpreter start and
every import. The last stdout line is JSON: wall time of the frame, the heavy modules imported by
then, and the rows of the first DataTable on screen.
"""

from __future__ import annotations

import json
import sys
import time

HEAVY = ("torch", "transformers", "lm_eval", "peft", "torch_pruning", "codecarbon", "datasets")


def main() -> int:
    kind = sys.argv[1]
    result: dict = {}

    from textual import events
    from textual.app import App

    orig_run = App.run

    def on_first_frame(app) -> None:
        if "t_frame" in result:
            return
        result["t_frame"] = time.time()
        result["heavy_modules"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})
        try:
            from textual.widgets import DataTable

            tables = list(app.screen.query(DataTable))
            result["first_table_rows"] = tables[0].row_count if tables else None
        except Exception:  # noqa: BLE001
            result["first_table_rows"] = None
        app.exit()

    def run(self, *args, **kwargs):
        kwargs.update(headless=True, size=(160, 48))
        return orig_run(self, *args, **kwargs)

    # A Ready handler on the base class (Textual dispatches ``_on_ready`` of every class in the MRO,
    # so an app's own on_ready still runs); it records the frame and quits.
    def _on_ready_base(self, event: events.Ready) -> None:
        on_first_frame(self)

    App._on_ready = _on_ready_base  # type: ignore[attr-defined]
    App.run = run  # type: ignore[method-assign]

    if kind == "greentui":
        from backend.cli.main import main as cli_main

        rc = cli_main(["--runs-dir", sys.argv[2]])
    elif kind == "bare":
        from textual.widgets import Footer, Header, Static

        class Bare(App):
            def compose(self):
                yield Header()
                yield Static("hello")
                yield Footer()

        Bare().run()
        rc = 0
    else:
        raise SystemExit(f"unknown app {kind!r}")
    result["rc"] = rc
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
